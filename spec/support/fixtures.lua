-- Fixture discovery and framing for the specs.
--
-- Fixtures live outside the repository (they are never copied in): $LLM_FIXTURES, else
-- <repo>/../shared/fixtures. Specs list a folder's files at run time, so a new fixture
-- file is a new test.

local json = require("llm.json")

local M = {}

local root = os.getenv("LLM_ROOT") or "."

--- The fixture folder, or nil when it is absent.
function M.dir()
  local d = os.getenv("LLM_FIXTURES")
  if d == nil or d == "" then d = root .. "/../shared/fixtures" end
  local f = io.open(d .. "/README.md", "rb")
  if f then f:close(); return d end
  -- a folder without the README still counts if it can be listed
  local p = io.popen("ls -1 '" .. d:gsub("'", "'\\''") .. "' 2>/dev/null")
  local any = p and p:read("*l")
  if p then p:close() end
  if any then return d end
  return nil
end

--- Sorted file names in dir/sub (empty when the folder is missing).
function M.list(dir, sub)
  local names = {}
  local p = io.popen("ls -1 '" .. (dir .. "/" .. sub):gsub("'", "'\\''") .. "' 2>/dev/null")
  if not p then return names end
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- Decoded JSON file, or nil when the file is missing.
function M.read_json(path)
  local s = M.read(path)
  if not s then return nil end
  return assert(json.decode(s))
end

--- status and a lower-case header map from a `.headers.json` file (nil when missing).
function M.headers(path)
  local h = M.read_json(path)
  if not h then return nil, nil end
  local map = {}
  for _, pair in ipairs(h.headers or {}) do
    map[pair[1]:lower()] = pair[2]
  end
  return h.status, map
end

---------------------------------------------------------------------------------------
-- SSE framing
---------------------------------------------------------------------------------------

-- FALLBACK ONLY: a small WHATWG-style SSE framer with the interface of the C framer
-- (`llm.core.framer("sse")`, docs/internals.md). It exists so the provider specs can run
-- before the C core is built; whenever `require("llm.core")` succeeds the C framer is used
-- and the specs print which one ran.
local LuaFramer = { __name = "spec.LuaSSEFramer" }
LuaFramer.__index = LuaFramer

local function new_lua_framer()
  return setmetatable({ buf = "", data = nil, name = nil, last_id = nil, started = false,
                        comments = 0, events = 0, partial = 0 }, LuaFramer)
end

function LuaFramer:_line(line, out)
  if line == "" then
    if self.data then
      out[#out + 1] = { name = self.name, data = table.concat(self.data, "\n"), id = self.last_id }
      self.events = self.events + 1
    end
    self.data, self.name = nil, nil
    return
  end
  if line:byte(1) == 58 then self.comments = self.comments + 1; return end
  local field, value = line:match("^([^:]*):(.*)$")
  if not field then field, value = line, "" end
  if value:byte(1) == 32 then value = value:sub(2) end
  if field == "data" then
    self.data = self.data or {}
    self.data[#self.data + 1] = value
  elseif field == "event" then
    self.name = value
  elseif field == "id" and not value:find("\0", 1, true) then
    self.last_id = value
  end
end

function LuaFramer:_run(final)
  local out, buf, pos = {}, self.buf, 1
  if not self.started and #buf >= 3 then
    if buf:sub(1, 3) == "\239\187\191" then pos = 4 end
    self.started = true
  end
  while true do
    local k = buf:find("[\r\n]", pos)
    if not k then break end
    if buf:byte(k) == 13 and k == #buf and not final then break end -- maybe CRLF split
    self:_line(buf:sub(pos, k - 1), out)
    if buf:byte(k) == 13 and buf:byte(k + 1) == 10 then pos = k + 2 else pos = k + 1 end
  end
  self.buf = buf:sub(pos)
  return out
end

function LuaFramer:feed(bytes)
  self.buf = self.buf .. bytes
  return self:_run(false)
end

function LuaFramer:finish()
  local out = self:_run(true)
  self.partial = #self.buf + (self.data and 1 or 0)
  self.buf, self.data, self.name = "", nil, nil
  return out
end

--- A new SSE framer and which implementation it is ("C" or "Lua fallback").
local core_checked, core
function M.framer()
  if not core_checked then
    -- looked up once: a failing require searches the whole path every time
    core_checked = true
    local ok, mod = pcall(require, "llm.core")
    if ok and type(mod) == "table" and mod.framer then core = mod end
  end
  if core then return core.framer("sse"), "C (llm.core)" end
  return new_lua_framer(), "Lua fallback (llm.core not built)"
end

--- Frames `chunks` (a list of byte strings) into a list of { name, data, id } events.
function M.frame(chunks)
  local f = M.framer()
  local all = {}
  for _, c in ipairs(chunks) do
    local evs, err = f:feed(c)
    assert(err == nil, err and err.message)
    for _, e in ipairs(evs or {}) do all[#all + 1] = e end
  end
  for _, e in ipairs(f:finish() or {}) do all[#all + 1] = e end
  return all
end

--- `count` seeded random 2- or 3-way splits of `bytes` (lists of chunks).
function M.splits(bytes, count, seed)
  math.randomseed(seed or 1)
  local out = {}
  local len = #bytes
  for i = 1, count do
    local ways = (i % 2 == 0) and 3 or 2
    local cuts = {}
    for _ = 1, ways - 1 do cuts[#cuts + 1] = math.random(0, len) end
    table.sort(cuts)
    local chunks, prev = {}, 0
    for _, c in ipairs(cuts) do
      chunks[#chunks + 1] = bytes:sub(prev + 1, c)
      prev = c
    end
    chunks[#chunks + 1] = bytes:sub(prev + 1)
    out[i] = chunks
  end
  return out
end

--- Runs a provider over framed events: the response (or nil, err), every normalized event,
--- and a list of per-event problems. Problems are looked for only as `opts` asks:
--- opts.every_event, each framed event gives at least one normalized event;
--- opts.raw_names, a set of event names that must give exactly one "raw" event each.
function M.run_stream(P, events, req, opts)
  local state = P.new_stream_state(req or {})
  local all, problems = {}, {}
  local every, raw_names = opts and opts.every_event, opts and opts.raw_names
  for i, ev in ipairs(events) do
    local out = P.decode_event(state, ev)
    if every and #out == 0 then
      problems[#problems + 1] = "event " .. i .. " (" .. tostring(ev.name) .. ") dropped"
    end
    if raw_names and ev.name and raw_names[ev.name] and (#out ~= 1 or out[1].type ~= "raw") then
      problems[#problems + 1] = "event " .. i .. " (" .. ev.name .. ") is not raw"
    end
    for _, ne in ipairs(out) do all[#all + 1] = ne end
  end
  local resp, err = P.finish_stream(state)
  return resp, err, all, problems
end

--- Deep equality that ignores metatables (decoded tables carry array/object markers) and
--- treats integer and float values as equal only when they are the same number.
function M.same(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  if a == json.null or b == json.null then return false end
  for k, v in pairs(a) do if not M.same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- Shared checks of normalized responses and event sequences against .expect.json facts,
-- used by the provider-level and the client-level fixture specs.
local assert = require("luassert")
local null = json.null
local function v(x) if x == null then return nil end return x end

--- The cache and reasoning counts a recorded `raw_usage` reports, read here from each
--- provider's own field names (written from the API references, not from the client):
--- OpenAI Chat `prompt_tokens_details.cached_tokens` / `completion_tokens_details.reasoning_tokens`,
--- Responses `input_tokens_details` / `output_tokens_details`, Anthropic
--- `cache_read_input_tokens` / `cache_creation_input_tokens` (message_delta over
--- message_start), Gemini `cachedContentTokenCount` / `thoughtsTokenCount`.
function M.raw_usage_facts(raw)
  local out = {}
  if type(raw) ~= "table" then return out end
  local function num(x) if type(x) == "number" then return x end end
  local function sub(t, k) t = type(t) == "table" and t[k] or nil; return type(t) == "table" and t or {} end
  if raw.message_start or raw.message_delta then          -- Anthropic stream
    local s, d = sub(raw, "message_start"), sub(raw, "message_delta")
    out.cached_input_tokens = num(d.cache_read_input_tokens) or num(s.cache_read_input_tokens)
    out.cache_creation_input_tokens = num(d.cache_creation_input_tokens) or num(s.cache_creation_input_tokens)
  elseif raw.prompt_tokens ~= nil then                      -- Chat Completions
    out.cached_input_tokens = num(sub(raw, "prompt_tokens_details").cached_tokens)
    out.cache_creation_input_tokens = num(sub(raw, "prompt_tokens_details").cache_write_tokens)   -- OpenRouter
    out.reasoning_tokens = num(sub(raw, "completion_tokens_details").reasoning_tokens)
  elseif raw.input_tokens_details or raw.output_tokens_details then   -- Responses
    out.cached_input_tokens = num(sub(raw, "input_tokens_details").cached_tokens)
    out.reasoning_tokens = num(sub(raw, "output_tokens_details").reasoning_tokens)
  elseif raw.promptTokenCount ~= nil then                   -- Gemini
    out.cached_input_tokens = num(raw.cachedContentTokenCount)
    out.reasoning_tokens = num(raw.thoughtsTokenCount)
  else                                                      -- Anthropic, not streamed
    out.cached_input_tokens = num(raw.cache_read_input_tokens)
    out.cache_creation_input_tokens = num(raw.cache_creation_input_tokens)
  end
  return out
end

-- Checks a normalized response against the expect facts.
function M.check_response(resp, exp)
  assert.are.equal(exp.text or "", resp.text)
  local calls = exp.tool_calls or {}
  assert.are.equal(#calls, #resp.tool_calls)
  for i, ec in ipairs(calls) do
    local c = resp.tool_calls[i]
    -- a call recorded without an id gets call_<n> (API §12: generated ids replay anywhere)
    assert.are.equal(v(ec.id) or ("call_" .. i), c.id)
    assert.are.equal(ec.name, c.name)
    if ec.arguments_invalid_json then
      assert.is_nil(c.arguments)
      assert.are.equal(ec.arguments_raw, c.arguments_json)
    else
      assert.is_true(M.same(ec.arguments, c.arguments), "arguments of call " .. i)
    end
    assert.are.equal("string", type(c.arguments_json))
  end
  assert.are.equal(v(exp.finish_reason), resp.finish_reason)
  if exp.raw_finish_reason ~= nil then
    assert.are.equal(v(exp.raw_finish_reason), resp.raw_finish_reason)
  end
  assert.are.equal("table", type(resp.usage))
  local eu = exp.usage or {}
  assert.are.equal(v(eu.input_tokens), resp.usage.input_tokens)
  assert.are.equal(v(eu.output_tokens), resp.usage.output_tokens)
  if eu.reasoning_tokens ~= nil then
    assert.are.equal(v(eu.reasoning_tokens), resp.usage.reasoning_tokens)
  end
  local ru = M.raw_usage_facts(exp.raw_usage)
  for _, k in ipairs{ "cached_input_tokens", "cache_creation_input_tokens", "reasoning_tokens" } do
    if ru[k] ~= nil then assert.are.equal(ru[k], resp.usage[k], "usage." .. k) end
  end
  for k, n in pairs(resp.usage) do
    assert.are.equal("integer", require("support.version").math_type(n), "usage." .. k)
  end
  assert.are.equal(exp.reasoning_text, resp.reasoning)
  assert.are.equal(exp.refusal, resp.refusal)
  if exp.choices then
    assert.are.equal(#exp.choices, #resp.choices)
    for i, ec in ipairs(exp.choices) do
      local c = resp.choices[i]
      assert.are.equal(ec.index, c.index)
      assert.are.equal(ec.text or "", c.text)
      assert.are.equal(v(ec.finish_reason), c.finish_reason)
      assert.are.equal(#(ec.tool_calls or {}), #c.tool_calls)
    end
  else
    assert.is_nil(resp.choices)
  end
  -- the message is ready to append: assistant role, same calls
  assert.are.equal("assistant", resp.message.role)
  if #resp.tool_calls > 0 then assert.are.equal(resp.tool_calls, resp.message.tool_calls) end
  -- the message's text and reasoning parts say what the response says
  local content = resp.message.content
  if type(content) == "string" then
    assert.are.equal(resp.text, content)
    assert.is_nil(resp.reasoning)
  else
    local text, reasoning = {}, {}
    for _, p in ipairs(content) do
      if p.type == "text" then text[#text + 1] = p.text end
      if p.type == "reasoning" then reasoning[#reasoning + 1] = p.text end
    end
    assert.are.equal(resp.text, table.concat(text))
    assert.are.equal(resp.reasoning or "", table.concat(reasoning))
  end
end

-- Checks the normalized event sequence against the final response. Per-event checks are
-- plain comparisons collected into one list (luassert per event would dominate the run
-- time of 50 splits per fixture).
-- opts.usage_may_drop: the provider's cumulative usage can go down between chunks (Gemini).
function M.check_events(evs, resp, opts)
  local problems = {}
  local function bad(msg) problems[#problems + 1] = msg end
  local text, reasoning, refusal, args, done = {}, {}, {}, {}, {}
  local prev_usage, last_usage
  for i, e in ipairs(evs) do
    if e.raw == nil then bad("event " .. i .. " (" .. tostring(e.type) .. ") has no raw") end
    if e.type == "done" then bad("provider emitted done") end
    if e.type == "text" then
      text[#text + 1] = e.text
    elseif e.type == "reasoning" then
      reasoning[#reasoning + 1] = e.text
    elseif e.type == "refusal" then
      refusal[#refusal + 1] = e.text
    elseif e.type == "tool_call" then
      local call = resp.tool_calls[e.index]
      if not call then
        bad("tool_call event with unknown index " .. tostring(e.index))
      else
        if not args[e.index] then
          args[e.index] = {}
          if e.name ~= call.name then bad("first tool_call delta lacks the name") end
        elseif e.name ~= nil then
          bad("tool name repeated after the first delta")
        end
        if e.id ~= call.id then bad("tool_call id differs") end
        table.insert(args[e.index], e.arguments_delta)
      end
    elseif e.type == "tool_call_done" then
      done[#done + 1] = e.call
    elseif e.type == "usage" then
      -- cumulative: a fresh table each time, counts never going down
      if prev_usage == e.usage then bad("usage event reuses its table") end
      if prev_usage and not (opts and opts.usage_may_drop) then
        for _, k in ipairs({ "input_tokens", "output_tokens" }) do
          if prev_usage[k] and e.usage[k] and e.usage[k] < prev_usage[k] then
            bad("usage went down")
          end
        end
      end
      prev_usage, last_usage = e.usage, e.usage
    elseif e.type == "error" then
      bad("error event in a good stream")
    end
  end
  assert.are.same({}, problems)
  assert.are.equal(resp.text, table.concat(text))
  assert.are.equal(resp.reasoning or "", table.concat(reasoning))
  assert.are.equal(resp.refusal or "", table.concat(refusal))
  assert.are.equal(#resp.tool_calls, #done)
  for i, call in ipairs(resp.tool_calls) do
    assert.are.equal(call.arguments_json, table.concat(args[i] or {}))
    assert.are.equal(call.id, done[i].id)
    assert.are.equal(call.name, done[i].name)
    assert.is_true(M.same(call.arguments, done[i].arguments))
  end
  if last_usage then
    assert.is_true(M.same(last_usage, resp.usage))
  else
    assert.is_nil(next(resp.usage))
  end
end

--- Runs a provider over a framed stream and checks it against the expect facts: the error
--- of a failing stream, else the response and the events (`opts` as for run_stream and
--- check_events; any per-event problem fails). Returns the response and the events.
function M.check_stream(P, events, exp, opts)
  local resp, err, evs, problems = M.run_stream(P, events, {}, opts)
  assert.are.same({}, problems)
  if exp.error then
    assert.is_nil(resp)
    assert.are.equal(exp.error.message, err.message)
    return
  end
  assert.is_nil(err, err and err.message)
  M.check_response(resp, exp)
  M.check_events(evs, resp, opts)
  return resp, evs
end

-- The kind of an HTTP error by the fixture's status.
local EXPECTED_KIND = { [400] = "bad_request", [401] = "auth", [403] = "permission",
  [404] = "not_found", [413] = "bad_request", [422] = "bad_request", [429] = "rate_limit",
  [500] = "server", [502] = "server", [503] = "server", [529] = "overloaded" }

--- Decodes an error body fixture and checks it against the expect facts: kind, message,
--- type, code and param (when expected), status, request id (the expected one, else the
--- headers') and the decoded body. Returns the error fields.
function M.check_error(P, exp, status, headers, text)
  local e = P.decode_error(status, headers or {}, text)
  assert.are.equal(EXPECTED_KIND[status], e.kind)
  assert.are.equal(exp.error.message, e.message)
  assert.are.equal(v(exp.error.type), e.type)
  if exp.error.code ~= nil then assert.are.equal(v(exp.error.code), e.code) end
  if exp.error.param ~= nil then assert.are.equal(v(exp.error.param), e.param) end
  assert.are.equal(status, e.status)
  local rid = exp.error.request_id
    or (headers and (headers["x-request-id"] or headers["request-id"]))
  assert.are.equal(rid, e.request_id)
  assert.are.equal("table", type(e.body))
  return e
end

local function is_fixture(name)
  return not name:find("%.expect%.json$") and not name:find("%.headers%.json$")
end

--- Registers a test for every fixture of `folders` (a list of { folder, provider module }),
--- one `describe` per folder, with busted's `describe` and `it` (a module does not see
--- them): a stream whole and in `splits` seeded random 2-3-way byte splits, an error body,
--- or a success body. `checks` are the spec's own:
---   checks.stream(P, folder, events, exp)          a framed stream (whole, then each split)
---   checks.error_body(P, folder, exp, status, headers, text)
---   checks.response_body(P, folder, exp, body)
--- Without the fixture folder nothing is registered.
function M.describe_fixtures(describe, it, title, folders, splits, checks)
  local dir = M.dir()
  if not dir then          -- run directly without fixtures: register nothing
    print("fixtures absent")
    return
  end
  describe(title, function()
    local _, which = M.framer()
    local count = 0
    for _, pair in ipairs(folders) do
      for _, name in ipairs(M.list(dir, pair[1])) do
        if is_fixture(name) then count = count + 1 end
      end
    end
    print(("%d fixtures at %s (SSE framer: %s)"):format(count, dir, which))

    for _, pair in ipairs(folders) do
      local folder, P = pair[1], require(pair[2])
      describe(folder, function()
        for _, name in ipairs(M.list(dir, folder)) do
          local path = dir .. "/" .. folder .. "/" .. name
          local base = name:match("^(.*)%.sse$") or name:match("^(.*)%.json$")
          if base and is_fixture(name) then
            local stem = dir .. "/" .. folder .. "/" .. base
            local exp = M.read_json(stem .. ".expect.json")
            if name:find("%.sse$") then
              it(name .. " (whole body)", function()
                assert.is_not_nil(exp, "missing " .. base .. ".expect.json")
                checks.stream(P, folder, M.frame({ M.read(path) }), exp)
              end)
              it(name .. " (" .. splits .. " random 2-3-way splits)", function()
                local bytes = M.read(path)
                local whole = M.frame({ bytes })
                for i, chunks in ipairs(M.splits(bytes, splits, #bytes)) do
                  local evs = M.frame(chunks)
                  assert.are.equal(#whole, #evs, "split " .. i)
                  checks.stream(P, folder, evs, exp)
                end
              end)
            elseif exp and exp.error then
              it(name .. " (error body)", function()
                local status, headers = M.headers(stem .. ".headers.json")
                checks.error_body(P, folder, exp, status or exp.http_status, headers, M.read(path))
              end)
            else
              it(name .. " (response body)", function()
                assert.is_not_nil(exp, "missing " .. base .. ".expect.json")
                local body = assert(json.decode(M.read(path)))
                checks.response_body(P, folder, exp, body)
              end)
            end
          end
        end
      end)
    end
  end)
end

return M
