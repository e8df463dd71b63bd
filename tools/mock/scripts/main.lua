-- The request handler: routing, the x-mock-* control protocol and the /__mock/ endpoints.
-- C calls the returned function once per request and executes the plan it returns.
local core = require "mock.core"
local json = require "mock.json"
local util = require "mock.util"
local faults = require "mock.faults"
local fixtures = require "mock.fixtures"
local batches = require "mock.batches"
local media = require "mock.media"
local ratelimit = require "mock.ratelimit"
local endpoints = require "mock.endpoints"

local O, A = json.O, json.A

local P = {
  openai_chat = require "mock.providers.openai_chat",
  openai_responses = require "mock.providers.openai_responses",
  anthropic = require "mock.providers.anthropic",
  gemini = require "mock.providers.gemini",
  ollama = require "mock.providers.ollama",
}
-- Fixture folders whose in-stream fault shapes come from a provider.
local FIXTURE_PROVIDER = { openai_compat = "openai_chat" }

local log = {}    -- requests since the last reset
local counts = {} -- per-key counters for x-mock-sequence and x-mock-script
local queue = { first = 1, last = 0 }   -- replies pushed with POST /__mock/push, served in order

local function bump(key)
  local n = (counts[key] or 0) + 1
  counts[key] = n
  return n
end

local function route(path)
  path = path:gsub("^/openai/v1/", "/v1/")   -- Azure OpenAI's v1 API
  if path == "/v1/chat/completions" or path == "/chat/completions" then return { provider = "openai_chat" } end
  if path == "/v1/responses" or path == "/responses" then return { provider = "openai_responses" } end
  if path == "/v1/messages" then return { provider = "anthropic" } end
  if path == "/api/chat" then return { provider = "ollama" } end
  local model, method = path:match("^/v1[%w]*/models/([^/:]+):(%a+)$")
  if model and (method == "generateContent" or method == "streamGenerateContent") then
    return { provider = "gemini", model = model, stream = method == "streamGenerateContent" }
  end
  return nil
end

local function text_plan(status, body, ct)
  return { status = status, headers = { { "content-type", ct or "text/plain; charset=utf-8" } }, body = body }
end

---------------------------------------------------------------- control endpoints

local function encode_log()
  local out = {}
  for i, r in ipairs(log) do
    out[i] = json.encode(O("seq", r.seq, "conn", r.conn, "t", r.t, "method", r.method, "path", r.path,
      "query", r.query, "headers", r.headers, "body", r.body, "proxied_host", r.proxied_host))
  end
  return "[" .. table.concat(out, ",") .. "]"
end

local function control(req)
  local p = req.path
  if p == "/__mock/health" then return text_plan(200, "ok\n") end
  if p == "/__mock/requests" then return text_plan(200, encode_log(), "application/json") end
  if p == "/__mock/stats" then
    local s = core.stats()
    return text_plan(200, json.encode(O("connections", s.connections, "open_connections", s.open_connections,
      "requests", s.requests, "active", s.active, "peak_active", s.peak_active,
      "rate_limited", ratelimit.counters().limited)), "application/json")
  end
  if p == "/__mock/push" then
    if req.method ~= "POST" then return text_plan(405, "POST a JSON reply to /__mock/push\n") end
    local reply, err = json.decode(req.body)
    if type(reply) ~= "table" then
      return text_plan(400, "llm-mock: /__mock/push wants a JSON object: " .. tostring(err) .. "\n")
    end
    queue.last = queue.last + 1
    queue[queue.last] = reply
    return text_plan(200, json.encode(O("queued", queue.last - queue.first + 1)), "application/json")
  end
  if p == "/__mock/batch" then
    if req.method ~= "POST" then return text_plan(405, "POST a JSON batch plan to /__mock/batch\n") end
    local plan, err = json.decode(req.body)
    if type(plan) ~= "table" then
      return text_plan(400, "llm-mock: /__mock/batch wants a JSON object: " .. tostring(err) .. "\n")
    end
    return text_plan(200, json.encode(O("queued", batches.push_plan(plan))), "application/json")
  end
  if p == "/__mock/limits" then
    if req.method == "GET" then return text_plan(200, ratelimit.config_json(), "application/json") end
    local c, err = json.decode(req.body)
    local bad = ratelimit.configure(c or err)
    if bad then return text_plan(400, "llm-mock: " .. bad .. "\n") end
    return text_plan(200, ratelimit.config_json(), "application/json")
  end
  if p == "/__mock/reset" then
    log, counts, queue = {}, {}, { first = 1, last = 0 }
    ratelimit.reset()
    batches.reset()
    P.openai_responses.reset()
    core.reset()
    return text_plan(200, '{"ok":true}', "application/json")
  end
  return text_plan(404, "unknown control endpoint " .. p .. "\n")
end

---------------------------------------------------------------- replies

local function load_script(name)
  if not name:match("^[%w_%-]+$") then error("bad script name " .. name, 0) end
  local path = core.scripts .. "/scripted/" .. name .. ".lua"
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  return chunk()
end

-- Normalized usage names (m:push, x-mock-usage) -> the abstract reply's usage fields, which
-- each provider script writes in its own shape.
local USAGE_FIELDS = { input_tokens = "input", output_tokens = "output", cached_input_tokens = "cached",
                       cache_creation_input_tokens = "cache_write", reasoning_tokens = "reasoning" }

-- The abstract reply (text, tool calls, finish, usage) for echo and scripted modes.
local function build_reply(req, ctx, provider)
  local h = req.headers
  local text, calls, finish = nil, {}, nil
  if h["x-mock-script"] then
    local script, err = load_script(h["x-mock-script"])
    if not script then return nil, err end
    local n = bump("script:" .. h["x-mock-script"] .. ":" .. (h["x-mock-key"] or ""))
    local step
    if type(script) == "function" then step = script(n, req, ctx)
    else step = script[n] or script[#script] end
    if type(step) == "function" then step = step(n, req, ctx) end
    if type(step) == "string" then step = { text = step } end
    step = step or {}
    text, calls, finish = step.text or "", step.tool_calls or {}, step.finish
  else
    text = h["x-mock-text"] or ("echo: " .. (ctx.user_text or "") .. media.summary(ctx))
  end
  local nev = faults.int(h["x-mock-events"])
  local deltas = text == "" and not nev and {} or util.pieces(text, nev)
  if nev then text = table.concat(deltas) end
  local out_calls = {}
  for i, c in ipairs(calls) do
    out_calls[i] = { id = c.id or (provider.call_prefix and (provider.call_prefix .. req.seq .. "_" .. i)),
                     name = c.name, arguments = c.arguments or {} }
  end
  finish = finish or h["x-mock-finish"] or (#out_calls > 0 and "tool_calls" or "stop")
  local usage = { input = ctx.input_tokens or 1, output = math.max(#deltas, 1) + #out_calls }
  -- x-mock-usage: "input_tokens=1200,cached_input_tokens=1024,...", the normalized counts
  -- of m:push's usage, for a client that cannot reach the push queue (the examples)
  for k, v in (h["x-mock-usage"] or ""):gmatch("([%w_]+)=(%d+)") do
    if USAGE_FIELDS[k] then usage[USAGE_FIELDS[k]] = tonumber(v) end
  end
  return { text = text, deltas = deltas, tool_calls = out_calls, finish = finish, usage = usage }
end

local function unknown_route(req)
  return text_plan(404, json.encode(O("error", O("message", "llm-mock: no route for " .. req.method .. " "
    .. req.path, "type", "invalid_request_error", "param", json.null, "code", "not_found"))), "application/json")
end

local HTML_502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
  .. "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"

-- x-mock-echo-key: the request's API key as a careless server echoes it back, in the error
-- message and as x-request-id. Forms: plain, percent (URL-encoded), json (JSON-escaped text),
-- partial (the first 12 characters), elided ("sk-abc...wxyz").
local function echo_key(h, form)
  local key = (h["authorization"] or ""):match("^%a+%s+(.*)$") or h["x-api-key"] or h["x-goog-api-key"]
    or h["api-key"] or ""
  if form == "percent" then
    return (key:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
  elseif form == "json" then return (key:gsub("/", "\\/"))
  elseif form == "partial" then return key:sub(1, 12)
  elseif form == "elided" then return key:sub(1, 6) .. "..." .. key:sub(-4)
  end
  return key
end

-- Turns a reply into the plan C executes, applying the stream faults.
local function to_plan(r, f, provider, ctx, h)
  local plan = { status = r.status, reason = r.reason, stream = r.stream }
  local headers = {}
  for _, x in ipairs(r.headers or {}) do
    if not (ctx.echo_key and (x[1] == "x-request-id" or x[1] == "request-id")) then headers[#headers + 1] = x end
  end
  if ctx.echo_key then headers[#headers + 1] = { "x-request-id", ctx.echo_key } end
  if f["retry-after"] then headers[#headers + 1] = { "retry-after", f["retry-after"] } end
  if f["retry-after-ms"] then headers[#headers + 1] = { "retry-after-ms", f["retry-after-ms"] } end
  if f["x-should-retry"] then headers[#headers + 1] = { "x-should-retry", f["x-should-retry"] } end
  local big = faults.int(f["big-header"])
  if big then headers[#headers + 1] = { "x-mock-big", string.rep("b", big) } end
  for i = 1, faults.int(f["many-headers"]) or 0 do
    headers[#headers + 1] = { "x-mock-h" .. i, string.rep("h", 1024) }
  end
  plan.headers = headers
  local reset_n, stall_n, pings = faults.int(f["reset-after-events"]), faults.int(f["stall-after-events"]),
                                  faults.int(f.pings)
  if r.stream then
    local ev = r.events
    if f.truncate then
      local keep = {}
      for i = 1, #ev - (r.terminal or 1) do keep[i] = ev[i] end
      ev = keep
    end
    if f["malformed-json"] and provider then
      table.insert(ev, math.min(2, #ev + 1), provider.malformed(ctx))
    end
    if f["overloaded-event"] and provider then
      ev = { provider.stream_error(ctx) }
      plan.after = "close"
    end
    if reset_n then
      local keep = {}
      for i = 1, math.min(reset_n, #ev) do keep[i] = ev[i] end
      ev, plan.after = keep, "reset"
    end
    if stall_n then
      local keep = {}
      for i = 1, math.min(stall_n, #ev) do keep[i] = ev[i] end
      ev, plan.after = keep, "stall"
    end
    local err_n = faults.int(f["error-after-events"])
    if err_n and provider then
      local keep = {}
      for i = 1, math.min(err_n, #ev) do keep[i] = ev[i] end
      keep[#keep + 1] = provider.stream_error(ctx)
      ev, plan.after = keep, "close"
    end
    local empties = faults.int(f["empty-chunks"])
    if empties and provider then
      -- A server that sends only events without content, then stalls.
      local keep, empty = {}, provider.empty(ctx)
      for i = 1, empties do keep[i] = empty end
      ev, plan.after = keep, "stall"
    end
    local extra_n = faults.int(f["after-done"])
    if extra_n and provider then
      -- The whole reply, then more events after its terminal one, the connection held open.
      local keep = {}
      for i = 1, #ev do keep[i] = ev[i] end
      for _ = 1, extra_n do keep[#keep + 1] = provider.extra(ctx) end
      ev, plan.after = keep, "stall"
    end
    local eof_n = faults.int(f["eof-after-events"])
    if eof_n then
      local keep = {}
      for i = 1, math.min(eof_n, #ev) do keep[i] = ev[i] end
      ev, plan.after = keep, "eof"
    end
    if pings then
      -- With stall-after-events=N the pings follow N events of the reply (content, then
      -- keep-alives only); alone they are all the stream sends.
      local keep = {}
      if stall_n then for i = 1, #ev do keep[i] = ev[i] end end
      local ping = provider and provider.ping(ctx) or ": ping\n\n"
      if ping ~= "" then for _ = 1, pings do keep[#keep + 1] = ping end end
      ev, plan.after = keep, "stall"
    end
    plan.chunks = ev
  else
    local body = r.body or ""
    local cut = reset_n or stall_n or pings or (f.truncate and 1) or faults.int(f["eof-after-events"])
    if cut then
      -- A non-streamed body is one event: announce it whole, send at most half of it.
      plan.content_length = #body
      body = cut == 0 and "" or body:sub(1, #body // 2)
      plan.after = reset_n and "reset" or f.truncate and "close"
        or f["eof-after-events"] and "eof" or "stall"
    end
    if h["x-mock-gzip"] then   -- Content-Encoding: gzip, which a client must accept
      body = util.gzip(body)
      headers[#headers + 1] = { "content-encoding", "gzip" }
      if plan.content_length then plan.content_length = #body end
    end
    plan.body = body
  end
  if f["stall-before-headers"] then plan.stall_before_headers = true end
  if f["reset-before-headers"] then plan.reset_before_headers = true end
  local hd = faults.int(f["headers-delay-ms"] or h["x-mock-headers-delay-ms"])
  if hd and hd > 0 then plan.headers_delay = hd / 1000 end
  local d = tonumber(h["x-mock-delay-ms"])
  if d and d > 0 then plan.delay = d / 1000 end
  if h["x-mock-split"] == "random" then
    plan.split = "random"
    plan.seed = faults.int(h["x-mock-seed"])
    local sd = tonumber(h["x-mock-split-delay-ms"])
    if sd and sd > 0 then plan.split_delay = sd / 1000 end
  end
  if f.close then plan.after = plan.after or "close" end
  return plan
end

---------------------------------------------------------------- pushed replies

local function pop_pushed()
  if queue.first > queue.last then return nil end
  local r = queue[queue.first]
  queue[queue.first] = nil
  queue.first = queue.first + 1
  return r
end

local function num(v) return type(v) == "number" and v or nil end

-- A pushed reply (see llm.mock's m:push) rendered in the route's shape, with its faults.
local function pushed_plan(p, req, ctx, provider, h)
  local f = {}
  if num(p.cut_after) then f["reset-after-events"] = tostring(math.floor(p.cut_after)) end
  if num(p.stall_after) then f["stall-after-events"] = tostring(math.floor(p.stall_after)) end
  if num(p.pings) then f.pings = tostring(math.floor(p.pings)) end
  local e = type(p.error) == "table" and p.error or nil
  if e then
    ctx.error_type = type(e.type) == "string" and e.type or nil
    ctx.error_message = type(e.message) == "string" and e.message or nil
  end
  local status = num(p.status) and math.floor(p.status)
  local r
  if type(p.fixture) == "string" then
    local err
    r, err = fixtures.load(core.fixtures, p.fixture)
    if not r then return text_plan(404, "llm-mock: " .. err .. "\n") end
  elseif (status and status >= 400) or (e and not ctx.stream) then
    r = provider.error(status or 500, ctx)
  else
    local deltas, text
    local forced = type(p.json) == "string" and ctx.forced_tool
    if forced then
      -- structured output the client asked for with a forced tool (Anthropic): the JSON is
      -- that tool's input
      p.tool_calls = { { name = forced, arguments = p.json } }
      p.text = ""
    elseif type(p.json) == "string" then
      -- elsewhere the JSON is the reply's text, in small deltas as a model streams it
      p.text = util.fragments(p.json, 6)
    end
    if type(p.text) == "table" then
      deltas = {}
      for i, d in ipairs(p.text) do deltas[i] = tostring(d) end
      text = table.concat(deltas)
    else
      text = type(p.text) == "string" and p.text or ""
      deltas = text == "" and {} or util.pieces(text)
    end
    local calls = {}
    for i, c in ipairs(type(p.tool_calls) == "table" and p.tool_calls or {}) do
      calls[i] = { id = c.id or (provider.call_prefix and (provider.call_prefix .. req.seq .. "_" .. i)),
                   name = c.name, arguments = c.arguments or {} }
    end
    local u = type(p.usage) == "table" and p.usage or {}
    local reply = { text = text, deltas = deltas, tool_calls = calls,
                    reasoning = type(p.reasoning) == "string" and p.reasoning or nil,
                    finish = type(p.finish) == "string" and p.finish or (#calls > 0 and "tool_calls" or "stop"),
                    usage = { input = ctx.input_tokens or 1, output = math.max(#deltas, 1) + #calls } }
    for k, field in pairs(USAGE_FIELDS) do   -- normalized counts, rendered in each provider's fields
      if num(u[k]) then reply.usage[field] = num(u[k]) end
    end
    r = provider.reply(reply, ctx)
    if status then r.status = status end
    if e and r.stream then f["error-after-events"] = tostring(#r.events - (r.terminal or 1)) end
  end
  local plan = to_plan(r, f, provider, ctx, h)
  if type(p.headers) == "table" then
    for k, v in pairs(p.headers) do plan.headers[#plan.headers + 1] = { tostring(k), tostring(v) } end
  end
  if num(p.delay) and p.delay > 0 then plan.headers_delay = p.delay end
  return plan
end

---------------------------------------------------------------- the handler

local function handle(req)
  -- Absolute-form targets ("POST http://host/v1/... HTTP/1.1") arrive when a client uses the
  -- mock as its HTTP proxy: serve them as if addressed here, and note the host asked for.
  local host, path = req.path:match("^https?://([^/]+)(/.*)$")
  if host then req.path, req.proxied_host = path, host end
  if req.path:sub(1, 8) == "/__mock/" then return control(req) end
  log[#log + 1] = req
  local batch_plan = batches.handle(req, function(r) return P.anthropic.check(r, { seq = r.seq }) end,
    build_reply)
  if batch_plan then return batch_plan end
  local h = req.headers
  local ep = endpoints.route(req)
  local rt = not ep and route(req.path)
  local provider = rt and P[rt.provider]
  local ctx = { seq = req.seq, created = os.time(), error_message = req.headers["x-mock-error-message"] }
  if h["x-mock-echo-key"] then
    ctx.echo_key = echo_key(h, h["x-mock-echo-key"])
    ctx.error_message = ctx.error_message or ("Incorrect API key provided: " .. ctx.echo_key)
  end
  local body
  if provider then
    body = json.decode(req.body)
    for k, v in pairs(provider.parse(req, type(body) == "table" and body or nil, rt)) do ctx[k] = v end
  end

  local spec = h["x-mock-fault"]
  if h["x-mock-sequence"] then
    local steps = {}
    for s in (h["x-mock-sequence"] .. "|"):gmatch("([^|]*)|") do steps[#steps + 1] = s end
    local n = bump("seq:" .. (h["x-mock-key"] or "") .. ":" .. h["x-mock-sequence"])
    local step = steps[math.min(n, #steps)]
    spec = (step ~= "ok" and step ~= "") and step or nil
  end
  local f = faults.parse(spec)

  local fixture = h["x-mock-fixture"]
  local shape = provider
  if fixture and not shape then
    local dir = fixture:match("^([^/]+)/")
    shape = P[FIXTURE_PROVIDER[dir] or dir]
  end
  shape = shape or P.openai_chat
  if not provider and shape and not ctx.model then ctx.model = "mock" end

  local r
  if ep then shape = P[ep.shape] end
  if provider or ep then r = shape.check(req, ctx) end
  -- Azure OpenAI (/openai/v1/...) takes the key in api-key (or an Entra ID Bearer token).
  if not r and req.path:find("^/openai/") and not h["api-key"] and not h["authorization"] then
    r = { status = 401, headers = { { "content-type", "application/json" } },
          body = json.encode(O("error", O("code", "401", "message", "Access denied due to invalid "
            .. "subscription key or wrong API endpoint. Make sure to provide a valid key for an active "
            .. "subscription and use a correct regional API endpoint for your resource."))) }
  end
  if r then return to_plan(r, {}, shape, ctx, h) end

  -- Rate limits (POST /__mock/limits): a request over a budget gets the provider's 429.
  local rl = provider and ratelimit.admit(req, rt.provider, type(body) == "table" and body or nil)
  if rl then
    req.rate_headers = rl.headers
    if rl.limited then
      return to_plan(provider.error(429, ctx, nil, { retry_delay = string.format("%.3fs", rl.wait) }), {},
        provider, ctx, h)
    end
  end

  if f["bad-utf8"] then h["x-mock-text"] = "bad \255\254 bytes" end   -- invalid UTF-8 in the reply
  local big_ev = faults.int(f["big-event"])
  if big_ev then h["x-mock-text"] = string.rep("x", big_ev) end   -- one delta of that many bytes

  if provider then
    local p = pop_pushed()
    if p then return pushed_plan(p, req, ctx, provider, h) end
  end

  local status = faults.int(f.status)
  if f["html-error"] then
    r = text_plan(502, HTML_502, "text/html")
  elseif f["html-200"] then
    r = text_plan(200, HTML_502, "text/html")
    r.stream = ctx.stream
    if r.stream then r.events = { r.body } end
  elseif f["invalid-json"] and not ctx.stream then
    r = text_plan(200, '{"id": "broken", "choices": [', "application/json")
  elseif f["not-object"] and not ctx.stream then
    r = text_plan(200, f["not-object"] == true and "9" or f["not-object"], "application/json")
  elseif f.quota then
    r = shape.error(429, ctx, "quota")
  elseif f["spend-limit"] then   -- Anthropic: a 429 whose details name a spend limit
    r = shape.error(429, ctx, "spend-limit", { limit = f["spend-limit"] })
  elseif status and status >= 400 then
    local delay = f["retry-after"] and (f["retry-after"] .. "s")
      or f["retry-after-ms"] and (string.format("%.3fs", tonumber(f["retry-after-ms"]) / 1000))
    r = shape.error(status, ctx, nil, { retry_delay = delay })
  elseif f.redirect then
    r = { status = faults.int(f["redirect-status"]) or 307, headers = { { "location", f.redirect } }, body = "" }
  elseif fixture then
    local err
    r, err = fixtures.load(core.fixtures, fixture)
    if not r then return text_plan(404, "llm-mock: " .. err .. "\n") end
    if f["overloaded-event"] and not r.stream then r = shape.error(shape == P.anthropic and 529 or 503, ctx) end
  elseif ep then
    r = ep.handle(req, ctx, json.decode(req.body))
  elseif not provider then
    return unknown_route(req)
  else
    local reply, err = build_reply(req, ctx, provider)
    if not reply then return text_plan(500, "llm-mock: " .. tostring(err) .. "\n") end
    if f["overloaded-event"] and not ctx.stream then
      r = provider.error(provider == P.anthropic and 529 or 503, ctx)
    else
      r = provider.reply(reply, ctx)
    end
  end
  return to_plan(r, f, shape, ctx, h)
end

return function(req)
  local plan = handle(req)
  -- An admitted or refused request under rate limits carries the buckets' headers.
  if req.rate_headers and type(plan) == "table" then
    plan.headers = plan.headers or {}
    for _, x in ipairs(req.rate_headers) do plan.headers[#plan.headers + 1] = x end
  end
  return plan
end
