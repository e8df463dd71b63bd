-- One-input entry points of the fuzz targets that run Lua: the JSON decoder and each
-- provider's stream decoder (bytes -> core framer -> decode_event -> finish_stream), plus the
-- provider's one-shot decoder. `run(target, data)` returns normally when every oracle holds
-- and raises otherwise: the libFuzzer harness (tests/fuzz/fuzz_lua.c) aborts on a raise, and
-- spec/fuzz_corpus_spec.lua replays the kept corpus (tests/fuzz/corpus/<target>/) through it.
--
-- Oracles
-- * json: core.json_decode never raises; it accepts exactly what the exact Lua decoder
--   (spec/support/json_oracle.lua) accepts and both give the same value (strings are compared
--   when both are valid UTF-8); an accepted value re-encodes, to the text the Lua encoder
--   (the core encoder's oracle) writes, and decode(encode(v)) encodes to the same text (a
--   fixed point).
-- * stream_<provider>: no Lua error escapes the decoders; the result is a normalized
--   response or an llm.Error; every event is well formed; feeding the body whole or cut into
--   small pieces gives the same events and the same result.
-- * The first input bytes of a stream target pick the variant (a stream, a one-shot body or
--   an HTTP error body; a small event cap; response_format) and the piece size (or status).
local core = require("llm.core")
local json = require("llm.json")
local oracle = require("support.json_oracle")
local errors = require("llm.errors")

local M = {}

local type, pairs, ipairs, tostring, byte, sub, concat, sort =
  type, pairs, ipairs, tostring, string.byte, string.sub, table.concat, table.sort
local null = json.null

local function fail(fmt, ...)
  error("fuzz oracle: " .. string.format(fmt, ...), 0)
end

-- A deterministic text for any value: sorted keys, cycles and shared tables marked. Keys
-- in `skip` are left out at the top level.
local function dump(v, seen, out, skip)
  local t = type(v)
  if t == "string" then out[#out + 1] = string.format("%q", v)
  elseif t == "number" then
    out[#out + 1] = math.type(v) .. ":" .. (v ~= v and "nan" or string.format("%.17g", v))
  elseif t ~= "table" then out[#out + 1] = tostring(t == "function" and t or v)
  elseif v == null then out[#out + 1] = "null"
  elseif seen[v] then out[#out + 1] = "<seen>"
  else
    seen[v] = true
    local mt = getmetatable(v)
    out[#out + 1] = (mt == json.ARRAY_MT and "A{") or (mt == json.OBJECT_MT and "O{") or "{"
    local keys = {}
    for k in pairs(v) do
      if not (skip and skip[k]) then keys[#keys + 1] = k end
    end
    sort(keys, function(a, b)
      local ta, tb = type(a), type(b)
      if ta ~= tb then return ta < tb end
      if ta == "number" or ta == "string" then return a < b end
      return tostring(a) < tostring(b)
    end)
    for _, k in ipairs(keys) do
      dump(k, seen, out); out[#out + 1] = "="; dump(v[k], seen, out); out[#out + 1] = ","
    end
    out[#out + 1] = "}"
    seen[v] = nil
  end
  return out
end
local function text_of(v, skip) return concat(dump(v, {}, {}, skip)) end
M.dump = text_of
local NO_RAW = { raw = true }   -- an event's raw is the decoded record itself

---------------------------------------------------------------------------------------
-- JSON
---------------------------------------------------------------------------------------

local function valid_utf8(s) return utf8.len(s) ~= nil end

-- The core replaces invalid UTF-8 with U+FFFD when it decodes '"\xff"' to it.
local core_replaces = core.json_decode('"\255"', json.ARRAY_MT, json.OBJECT_MT, null) == "\u{FFFD}"

-- Same value from both decoders. Strings that are not valid UTF-8 on either side are not
-- compared (replacement policies may differ); the core's own strings are checked apart.
local function same(a, b, path)
  local ta, tb = type(a), type(b)
  if ta ~= tb then fail("decoders disagree at %s: %s vs %s", path, ta, tb) end
  if ta == "string" then
    if a ~= b and valid_utf8(a) and valid_utf8(b) then fail("decoders disagree at %s: %q vs %q", path, a, b) end
  elseif ta == "number" then
    if math.type(a) ~= math.type(b) or (a ~= b and (a == a or b == b)) then
      fail("decoders disagree at %s: %s vs %s", path, text_of(a), text_of(b))
    end
  elseif ta == "table" then
    if (a == null) ~= (b == null) then fail("decoders disagree at %s: null", path) end
    if getmetatable(a) ~= getmetatable(b) then fail("decoders disagree at %s: array vs object", path) end
    for k, x in pairs(a) do
      if b[k] == nil then fail("decoders disagree at %s: key %s only in core", path, tostring(k)) end
      same(x, b[k], path .. "." .. tostring(k))
    end
    for k in pairs(b) do
      if a[k] == nil then fail("decoders disagree at %s: key %s only in Lua", path, tostring(k)) end
    end
  elseif a ~= b then
    fail("decoders disagree at %s", path)
  end
end

local function depth_of(s)   -- brackets open at once, an upper bound of the nesting
  local d, max = 0, 0
  for c in s:gmatch("[%[%]{}]") do
    if c == "[" or c == "{" then d = d + 1; if d > max then max = d end else d = d - 1 end
  end
  return max
end

local function all_strings_valid(v, seen)
  if type(v) == "string" then
    if not valid_utf8(v) then fail("core decoded a string that is not valid UTF-8: %q", v) end
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do all_strings_valid(k, seen); all_strings_valid(x, seen) end
  end
end

local function has_nonfinite(v)
  if type(v) == "number" then return v ~= v or v == math.huge or v == -math.huge end
  if type(v) == "table" then
    for _, x in pairs(v) do if has_nonfinite(x) then return true end end
  end
  return false
end

function M.json(data)
  local v, err = core.json_decode(data, json.ARRAY_MT, json.OBJECT_MT, null)
  if v == nil and type(err) ~= "string" then fail("json_decode: no value and no message") end
  if core_replaces and v ~= nil then all_strings_valid(v, {}) end
  -- the exact Lua decoder has no nesting limit and recurses; keep it to moderate depth
  if depth_of(data) < 150 then
    local r = oracle.exact(data)
    if (v == nil) ~= (r == nil) then
      fail("core %s, Lua decoder %s", v == nil and ("rejects (" .. err .. ")") or "accepts",
           r == nil and "rejects" or "accepts")
    end
    if v ~= nil then same(v, r, "$") end
  end
  if v == nil or has_nonfinite(v) then return end   -- JSON cannot express inf / nan
  local ok, s1 = pcall(json.encode, v)
  if not ok then fail("a decoded value does not encode: %s", tostring(s1)) end
  if depth_of(data) < 150 then   -- the Lua encoder (the core's oracle) recurses too
    local ok2, o1 = pcall(oracle.encode, v)
    if not ok2 or o1 ~= s1 then fail("core and Lua encoders differ:\n%q\n%q", s1, tostring(o1)) end
  end
  local v2, err2 = core.json_decode(s1, json.ARRAY_MT, json.OBJECT_MT, null)
  if v2 == nil then fail("encoded text does not decode: %s: %q", err2, s1) end
  local s2 = json.encode(v2)
  if s1 ~= s2 then fail("encode(decode(encode(v))) differs:\n%q\n%q", s1, s2) end
end

---------------------------------------------------------------------------------------
-- Provider decoders
---------------------------------------------------------------------------------------

local PROVIDERS = {
  openai = "llm.providers.openai", anthropic = "llm.providers.anthropic",
  gemini = "llm.providers.gemini", ollama = "llm.providers.ollama",
  responses = "llm.providers.openai_responses",
}

local FINISH = { stop = true, length = true, tool_calls = true, content_filter = true, error = true }
local KINDS = { connection = true, timeout = true, auth = true, permission = true, not_found = true,
                bad_request = true, rate_limit = true, quota = true, server = true,
                overloaded = true, protocol = true, cancelled = true }

local function check_error(e, where)
  if not errors.is(e) then fail("%s: not an llm.Error: %s", where, text_of(e)) end
  if not KINDS[e.kind] then fail("%s: unknown error kind %s", where, tostring(e.kind)) end
  if e.message ~= nil and type(e.message) ~= "string" then fail("%s: message is a %s", where, type(e.message)) end
  if type(tostring(e)) ~= "string" then fail("%s: tostring", where) end
end

local function check_usage(u, where)
  if u == nil then return end
  if type(u) ~= "table" then fail("%s: usage is a %s", where, type(u)) end
  for _, k in ipairs({ "input_tokens", "output_tokens", "total_tokens" }) do
    local x = u[k]
    if x ~= nil and math.type(x) ~= "integer" then fail("%s: usage.%s is %s", where, k, text_of(x)) end
  end
end

local function check_response(r, where)
  if type(r) ~= "table" then fail("%s: response is a %s", where, type(r)) end
  if type(r.text) ~= "string" then fail("%s: text is a %s", where, type(r.text)) end
  if type(r.tool_calls) ~= "table" then fail("%s: tool_calls is a %s", where, type(r.tool_calls)) end
  for i, c in ipairs(r.tool_calls) do
    -- arguments: the decoded table, or nil when arguments_json is not valid JSON (API §9)
    if type(c) ~= "table" or type(c.arguments_json) ~= "string"
       or (c.arguments ~= nil and type(c.arguments) ~= "table") then
      fail("%s: tool_calls[%d] is %s", where, i, text_of(c))
    end
    if c.name ~= nil and type(c.name) ~= "string" then fail("%s: tool_calls[%d].name", where, i) end
  end
  if r.finish_reason ~= nil and not FINISH[r.finish_reason] then
    fail("%s: finish_reason %s", where, tostring(r.finish_reason))
  end
  if r.reasoning ~= nil and type(r.reasoning) ~= "string" then fail("%s: reasoning is a %s", where, type(r.reasoning)) end
  if type(r.message) ~= "table" then fail("%s: message is a %s", where, type(r.message)) end
  check_usage(r.usage, where)
end

local TEXT_EVENTS = { text = true, reasoning = true, refusal = true }

local function check_event(ev, where)
  if type(ev) ~= "table" or type(ev.type) ~= "string" then fail("%s: event %s", where, text_of(ev)) end
  if TEXT_EVENTS[ev.type] and type(ev.text) ~= "string" then fail("%s: %s event without text", where, ev.type) end
  if ev.type == "tool_call" and math.type(ev.index) ~= "integer" then fail("%s: tool_call without index", where) end
  if ev.type == "usage" then check_usage(ev.usage, where) end
  if ev.type == "error" and type(ev.error) ~= "table" then fail("%s: error event without error", where) end
end

-- As the client does (Stream:pull): an error field set becomes an llm.Error.
local function stream_error(fields)
  local f = {}
  for k, v in pairs(fields) do f[k] = v end
  f.kind = f.kind or "server"
  f.status = nil
  return errors.new(f)
end

local function make_req(opt)
  local req = { model = "m", messages = { { role = "user", content = "hi" } }, stream = true }
  if math.floor(opt / 4) % 2 == 1 then req.response_format = { type = "json_schema", schema = { type = "object" } } end
  return req
end

-- Runs a streamed body through the framer and the decoders, `step` bytes at a time. Returns
-- the list of normalized events and the outcome (response or error), as texts.
local function run_stream(P, req, body, step, cap)
  local keep = {}
  for _, n in ipairs(P.keepalive_events or {}) do keep[n] = true end
  local f = core.framer(P.framing or "sse", cap)
  local state = P.new_stream_state(req)
  local seen = {}
  local outcome
  local texts = { text = {}, reasoning = {} }   -- deltas as delivered, for the final check
  local function take(raws)
    for _, raw in ipairs(raws) do
      if not (raw.name and keep[raw.name]) then
        local evs = P.decode_event(state, raw)
        if type(evs) ~= "table" then fail("decode_event returned a %s", type(evs)) end
        for _, ev in ipairs(evs) do
          check_event(ev, "stream")
          seen[#seen + 1] = text_of(ev, NO_RAW)
          local tx = texts[ev.type]
          if tx then tx[#tx + 1] = ev.text end
          if ev.type == "error" then
            local e = stream_error(ev.error)
            check_error(e, "stream error event")
            return "error " .. text_of(e)
          end
        end
      end
    end
  end
  local pos = 1
  while pos <= #body and not outcome do
    local raws, ferr, before = f:feed(sub(body, pos, pos + step - 1))
    pos = pos + step
    if raws then outcome = take(raws)
    else
      outcome = take(before) or ("framer " .. text_of(ferr))
    end
  end
  if not outcome then
    local raws, ferr, before = f:finish()
    if raws then outcome = take(raws) else outcome = take(before) or ("framer " .. text_of(ferr)) end
  end
  f:close()
  if not outcome then
    local resp, ferr = P.finish_stream(state)
    if resp then
      check_response(resp, "finish_stream")
      -- what was streamed is what the response says (the Responses API takes its final
      -- response from the terminal event instead, so it is not held to this)
      if P.name ~= "responses" and P.name ~= "openai_responses" then
        if concat(texts.text) ~= resp.text then
          fail("streamed text %q, response text %q", concat(texts.text), resp.text)
        end
        if concat(texts.reasoning) ~= (resp.reasoning or "") then
          fail("streamed reasoning %q, response reasoning %q", concat(texts.reasoning), tostring(resp.reasoning))
        end
      end
      outcome = "response " .. text_of(resp)
    else
      local e = stream_error(ferr or { kind = "protocol", message = "stream ended early" })
      check_error(e, "finish_stream")
      outcome = "error " .. text_of(e)
    end
  end
  return concat(seen, "\n"), outcome
end

-- The one-shot path, as Client:chat does it.
local function run_body(P, req, body)
  local v = json.decode(body)
  if getmetatable(v) ~= json.OBJECT_MT then return end   -- refused before decoding, as chat does
  local resp = P.decode_response(v, req)
  check_response(resp, "decode_response")
end

-- The error path, as Client:http_error does it: the body of an HTTP error status.
local function run_error(P, status, body)
  local f = P.decode_error(status, {}, body)
  if type(f) ~= "table" then fail("decode_error returned a %s", type(f)) end
  local fields = {}
  for k, v in pairs(f) do fields[k] = v end
  fields.kind = f.kind or errors.kind_for_status(status)
  fields.status = status
  local e = errors.new(fields)
  check_error(e, "decode_error")
  local ra = e.retry_after
  if ra ~= nil and (type(ra) ~= "number" or ra ~= ra or ra < 0 or ra == math.huge) then
    fail("decode_error: retry_after %s", text_of(ra))
  end
end

local function stream_target(name)
  local P = require(PROVIDERS[name])
  return function(data)
    local opt, step = byte(data, 1) or 0, byte(data, 2) or 0
    local body = sub(data, 3)
    local req = make_req(opt)
    if opt % 2 == 1 then
      if math.floor(opt / 2) % 2 == 1 then return run_error(P, 400 + step % 200, body) end
      req.stream = false
      return run_body(P, req, body)
    end
    local cap = (math.floor(opt / 2) % 2 == 1) and 256 or nil
    step = step % 61 + 1
    local ev1, out1 = run_stream(P, req, body, #body + 1, cap)
    local ev2, out2 = run_stream(P, req, body, step, cap)
    if ev1 ~= ev2 then fail("events differ, whole vs %d-byte pieces:\n%s\n--\n%s", step, ev1, ev2) end
    if out1 ~= out2 then fail("outcome differs, whole vs %d-byte pieces:\n%s\n--\n%s", step, out1, out2) end
  end
end

M.targets = { json = M.json }
for name in pairs(PROVIDERS) do M.targets["stream_" .. name] = stream_target(name) end

--- Runs one input through a target; raises when an oracle fails or a decoder raises.
function M.run(target, data)
  local fn = M.targets[target]
  if not fn then error("no fuzz target " .. tostring(target), 2) end
  return fn(data)
end

return M
