--- Clients: one API over every provider. A client turns a call into the provider's request,
-- sends it through `llm.http` under a retry policy, and normalizes what comes back.
-- Providers translate; this module decides (retries, redirects, errors, event hold-back).
-- @module llm.client
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local errors = require("llm.errors")
local json = require("llm.json")
local queue = require("llm.queue")
local validate = require("llm.validate")
local media = require("llm.media")
local partial_json = require("llm.partial_json")
local url_escape = require("llm.providers.common").url_escape
local compat = require("llm.compat")
local accounting = require("llm.accounting")

local CONTENT = { text = true, reasoning = true, tool_call = true, refusal = true }
-- Before the first content event a stream holds events back (a retry must not show them
-- twice), but only this many: past the cap they are handed out (DESIGN "Timeouts").
local HELD_EVENTS, HELD_BYTES = 256, 1024 * 1024
local HIGH_WATER, LOW_WATER = 4096, 2048   -- decoded events queued: pause / resume reading
-- A stream that got HTTP 200 but failed before any content, by its error: if the retry
-- policy gives up on that error, the stream is handed out with the error as its last event.
local started_streams = setmetatable({}, { __mode = "k" })
local MAX_REDIRECTS = 5

return function(env)
  local async, http, R, log = env.async, env.http, env.retry, env.log
  local checkpoint = async.checkpoint
  local log_enabled = env.log_enabled or function() return true end
  local M = {}

  local function now() return async.clock:now() end

  ---@class llm.Client
  ---@field name string the provider's name
  ---@field model? string the default model
  ---@field base_url string
  ---@field usage llm.UsageTotals running totals over every call of the client
  local Client = { __name = "llm.Client" }
  Client.__index = Client
  M.Client = Client

  local release   -- gives a limiter slot back (defined with Client:limited)

  local function request_id(headers)
    return headers and (headers["x-request-id"] or headers["request-id"])
  end

  ---------------------------------------------------------------------------------------
  -- Construction

  local function copy(t)
    local out = {}
    for k, v in each(t or {}) do out[k] = v end
    return out
  end

  --- Build a client for the resolved provider table `p` with options `opts`.
  ---@private
  ---@param p table the resolved provider table
  ---@param opts llm.ClientOptions
  ---@return llm.Client
  function M.new(p, opts)
    opts = opts or {}
    local bad = validate.client_options(p.name, opts)
    if bad then error(bad, 3) end
    local c = setmetatable({ provider = p, name = p.name }, Client)
    c.model = opts.model or p.model
    c.base_url = opts.base_url or (p.base_url_env and compat.getenv(p.base_url_env)) or p.base_url
    if not c.base_url then
      error("provider '" .. tostring(p.name) .. "' has no base_url: pass base_url"
        .. (p.base_url_env and (" or set " .. p.base_url_env) or ""), 3)
    end
    c.base_url = c.base_url:gsub("/+$", "")
    if p.normalize_base_url then c.base_url = p.normalize_base_url(c.base_url) end
    local key = opts.api_key
    if key == nil and p.api_key_env then key = compat.getenv(p.api_key_env) end
    if key == nil or key == "" then
      if p.needs_key == false then key = false
      else
        error(string.format("no API key for provider '%s': pass api_key or set %s"
          .. " (api_key = false for a server without auth)",
          tostring(p.name), tostring(p.api_key_env or "an api_key")), 3)
      end
    end
    errors.add_secret(key)
    errors.add_url_secrets(c.base_url)   -- https://user:pass@host
    errors.add_url_secrets(opts.proxy)
    c.api_key = key
    c.timeout = opts.timeout or 600
    c.connect_timeout = opts.connect_timeout or 10
    c.idle_timeout = opts.idle_timeout or 120
    c.first_token_timeout = opts.first_token_timeout
    c.max_retries = opts.max_retries or 2
    c.retry = opts.retry
    c.headers = copy(opts.headers)
    c.ca_file, c.proxy, c.insecure = opts.ca_file, opts.proxy, opts.insecure
    c.api = opts.api
    c.embedding_model = opts.embedding_model
    c.max_event_size = opts.max_event_size
    c.prices = opts.prices
    c.hooks = opts.hooks and copy(opts.hooks)
    c.usage = accounting.new()
    if opts.limiter ~= nil then
      if not env.limiters.is(opts.limiter) then
        error("llm.client: limiter must be made by llm.limiter{...} (of the same llm instance), got "
          .. type(opts.limiter), 3)
      end
      c.limiter = opts.limiter
    end
    if c.insecure then env.warn_insecure() end
    return c
  end

  function Client:__tostring()
    return string.format("llm.Client(%s, model=%s, base_url=%s)", tostring(self.name),
      tostring(self.model), errors.redact(self.base_url))
  end

  ---------------------------------------------------------------------------------------
  -- Requests
  -- @section requests

  --- The normalized request: a string is one user message; the client's model is the default.
  ---@private
  ---@param req string|llm.Request
  ---@param level? integer the caller's stack level for errors
  ---@return llm.Request
  function Client:normalize(req, level)
    level = (level or 2) + 1
    if type(req) == "string" then
      req = { messages = { { role = "user", content = req } } }
    elseif type(req) ~= "table" then
      error("expected a request table or a string", level)
    else
      req = copy(req)
    end
    if req.api == nil then req.api = self.api end
    local p = self:provider_for(req)
    local pname = p == self.provider and self.name or (self.name .. " (Responses API)")
    local bad = validate.request(req, p, pname)
    if bad then error(bad, level) end
    req = media.prepare(req, p, pname, level)   -- files read and checked before anything is sent
    req.model = req.model or self.model
    if not req.model then error("no model: set it on the client or the request", level) end
    if req.messages == nil and req.input == nil then req.messages = {} end
    return req
  end

  local function join_url(base, path, query)
    local url = path:match("^https?://") and path or (base .. path)
    if query and next(query) then
      local parts = {}
      for k, v in each(query) do
        parts[#parts + 1] = url_escape(k) .. "=" .. url_escape(v)
      end
      table.sort(parts)
      url = url .. (url:find("?", 1, true) and "&" or "?") .. table.concat(parts, "&")
    end
    return url
  end

  -- Copy a set of headers (if any) into `headers` under lower-case names.
  local function add_headers(headers, more)
    if more then for k, v in each(more) do headers[k:lower()] = v end end
  end

  --- The transfer spec for a built provider request.
  ---@private
  ---@param built table the provider's request: method, path, headers, body
  ---@param req llm.Request
  ---@param streaming boolean
  ---@return table spec
  function Client:spec(built, req, streaming)
    local headers = { ["content-type"] = "application/json",
                      ["accept"] = streaming and "text/event-stream" or "application/json" }
    if self.api_key then
      for k, v in each(self.provider.auth_headers(self.api_key)) do headers[k] = v end
    end
    add_headers(headers, self.provider.headers)   -- later sets win, whatever their case
    add_headers(headers, built.headers)
    add_headers(headers, self.headers)
    add_headers(headers, req.extra_headers)
    local body = built.body
    if type(body) == "table" then body = json.encode(body) end
    return {
      method = built.method or "POST",
      url = join_url(self.base_url, built.path, req.extra_query or built.query),
      headers = headers, body = body,
      timeout = req.timeout or self.timeout,
      connect_timeout = self.connect_timeout,
      framing = streaming and (self.provider.framing or "sse") or nil,
      idle_timeout = streaming and (req.idle_timeout or self.idle_timeout) or nil,
      first_token_timeout = streaming and (req.first_token_timeout or self.first_token_timeout) or nil,
      max_event_size = self.max_event_size,
      ca_file = self.ca_file, proxy = self.proxy, insecure = self.insecure,
      verbose = env.debug_enabled(),
    }
  end

  local function origin(url)
    local scheme, host = url:match("^(%a[%w+.-]*)://([^/?#]+)")
    if not scheme then return nil end
    scheme = scheme:lower()
    host = host:gsub("^.*@", ""):lower()
    if not host:find(":%d+$") then host = host .. (scheme == "https" and ":443" or ":80") end
    return scheme .. "://" .. host
  end

  --- Where a 3xx response points, if it may be followed (same scheme, host and port).
  local function redirect_target(spec, res)
    local loc = res.headers and res.headers["location"]
    if not loc then return nil end
    if loc:sub(1, 2) == "//" then
      loc = spec.url:match("^(%a[%w+.-]*:)") .. loc   -- scheme-relative: another host, same scheme
    elseif not loc:match("^%a[%w+.-]*://") then
      local o = spec.url:match("^(%a[%w+.-]*://[^/?#]+)")
      if loc:sub(1, 1) ~= "/" then loc = spec.url:gsub("[?#].*$", ""):gsub("[^/]*$", "") .. loc else loc = o .. loc end
    end
    if origin(loc) ~= origin(spec.url) then
      return nil, errors.new{ kind = "protocol", status = res.status, retryable = false,
        message = "refused a redirect to another origin (credentials stay with " .. origin(spec.url) .. ")" }
    end
    return loc
  end

  --- The llm.Error for an HTTP error reply.
  ---@private
  ---@param status integer
  ---@param headers? table<string, string>
  ---@param body? string
  ---@param retry_after? number
  ---@param should_retry? boolean
  ---@param p? table the provider table
  ---@return llm.Error
  function Client:http_error(status, headers, body, retry_after, should_retry, p)
    local f = (p or self.provider).decode_error(status, headers or {}, body or "")
    local fields = copy(f)
    fields.kind = f.kind or errors.kind_for_status(status)
    fields.status = status
    fields.retry_after = retry_after or f.retry_after
    fields.request_id = f.request_id or request_id(headers)
    if fields.kind == "quota" then fields.retryable = false
    elseif should_retry ~= nil then fields.retryable = should_retry
    else fields.retryable = errors.retryable_default(fields.kind, status) end
    return errors.new(fields)
  end

  local builtin_policies = {}   -- max_retries -> R.builtin(max_retries)

  --- The retry policy of a call: its own, the client's, or the built-in one.
  ---@private
  ---@param req table the request (its retry, max_retries)
  ---@return llm.Policy
  function Client:policy(req)
    local p = req.retry or self.retry
    if p then return p end
    local n = req.max_retries or self.max_retries
    if n == 2 then return R.default end
    local b = builtin_policies[n]      -- built once per count, like R.default, not per call
    if not b then
      b = R.builtin(n)
      builtin_policies[n] = b
    end
    return b
  end

  ---------------------------------------------------------------------------------------
  -- One call: its attempts under the retry policy, the hooks, the log lines and the
  -- accounting. Every request path (chat, stream, raw requests) goes through run_call, so
  -- whatever it calls gets hooks and logging for free.
  -- @section calls

  --- Call the hook `name` with one table describing the call at this moment, `fields` laid
  -- over the call's own (provider, model, method, url, attempt, elapsed). A hook that
  -- raises is logged at warn and ignored: it can break neither its call nor another.
  ---@private
  ---@param name string "on_request", "on_response", "on_retry" or "on_error"
  ---@param call table the call's state (see run_call)
  ---@param fields? table status, usage, request_id, error, wait
  function Client:hook(name, call, fields)
    local fn = self.hooks and self.hooks[name]
    if not fn then return end
    local info = { provider = self.name, model = call.model, method = call.method,
                   url = errors.redact(call.url), attempt = call.attempt, elapsed = now() - call.t0 }
    for k, v in each(fields or {}) do info[k] = v end
    local ok, err = pcall(fn, info)
    if not ok then
      log("warn", string.format("%s: hook %s raised (ignored): %s", tostring(self.name), name,
        tostring(err)))
    end
  end

  --- The one place where a call's reported usage is recorded: `client.usage` and its
  -- `by_model[model]`, priced by the client's `prices[model]`. Returns the call's cost.
  ---@private
  ---@param model? string the model the request named
  ---@param usage? llm.Usage the call's normalized usage (nil when none was reported)
  ---@param p? table the provider table that decoded it
  ---@return number? cost nil without a price
  function Client:account(model, usage, p)
    local price = self.prices and model and self.prices[model]
    local _, cost = accounting.add(self.usage, model, usage, price,
      (p or self.provider).usage_input_excludes_cache)
    return cost
  end

  local function describe_usage(u)
    if type(u) ~= "table" or (u.input_tokens == nil and u.output_tokens == nil) then return "" end
    local s = string.format(", tokens in %s out %s", tostring(u.input_tokens), tostring(u.output_tokens))
    if u.cached_input_tokens then s = s .. " cached " .. tostring(u.cached_input_tokens) end
    return s
  end

  --- The info line of a finished call: what it asked, how it ended, in how long.
  ---@private
  ---@param call table the call's state
  ---@param outcome string "-> 200" or "failed: <error>"
  ---@param usage? llm.Usage
  function Client:log_call(call, outcome, usage)
    if not log_enabled("info") then return end
    log("info", string.format("%s %s: %s %s %s in %.3f s (%d %s%s)", tostring(self.name),
      tostring(call.model or "-"), call.method, call.url, outcome, now() - call.t0, call.attempt,
      call.attempt == 1 and "attempt" or "attempts", describe_usage(usage)))
  end

  --- Run one call: `fn()` is one attempt, returning a value or `nil, err`, under `policy`.
  -- Fires `on_request` before every attempt, `on_response` for the response an attempt got
  -- (`send` records it in `call.response`), `on_retry` and an info line before each backoff,
  -- and `on_error` once when the call fails for good. A call that is not a stream and
  -- returns a response with `usage` is accounted here (a stream when it ends).
  -- `call = { model, method, url, stream, p }`; run_call adds `t0`, `attempt`, `response`.
  ---@private
  ---@param call table the call's description
  ---@param policy llm.Policy the retry policy
  ---@param fn function one attempt
  ---@return any value the last attempt's value, or nil
  ---@return llm.Error? err
  function Client:run_call(call, policy, fn)
    call.t0, call.attempt = now(), 0
    local last_status, last_id
    local function attempt()
      call.attempt = call.attempt + 1
      call.response = nil
      if self.hooks then self:hook("on_request", call) end   -- (none: nothing gathered for one)
      local v, e = fn()
      local r = call.response
      if r then
        call.response = nil
        last_status, last_id = r.status, r.request_id
        if self.hooks then
          self:hook("on_response", call, { status = r.status, request_id = r.request_id, usage = r.usage,
                                           error = e })
        end
      end
      return v, e
    end
    local function before_sleep(state)
      local e = state.error
      if log_enabled("info") then
        log("info", string.format("%s %s: retry %d (attempt %d) in %.3f s after: %s", tostring(self.name),
          tostring(call.model or "-"), state.attempt, state.attempt + 1, state.wait or 0, tostring(e)))
      end
      self:hook("on_retry", call, { error = e, wait = state.wait, status = type(e) == "table" and e.status or nil,
                                    request_id = type(e) == "table" and e.request_id or nil })
    end
    local v, e
    if policy.call_hooked then v, e = policy:call_hooked(before_sleep, attempt)
    else v, e = policy:call(attempt) end
    if v == nil and e ~= nil then
      self:log_call(call, "failed: " .. tostring(e))
      self:hook("on_error", call, { error = e, status = type(e) == "table" and e.status or last_status,
                                    request_id = type(e) == "table" and e.request_id or last_id })
    elseif not call.stream then
      local usage = call.accounts and v.usage or nil
      if call.accounts then self:account(call.model, usage, call.p) end
      self:log_call(call, "-> " .. tostring(last_status), usage)
    end
    return v, e
  end

  --- One non-streaming exchange (redirects followed); returns the response, or nil, err
  -- for a transport failure or an HTTP error status (decoded by provider `p`). Every
  -- response is recorded for the hooks: a redirect at once, the last in `call.response`.
  ---@private
  ---@param spec table the transfer spec
  ---@param call? table the call's state (run_call)
  ---@param p? table the provider table that decodes an error
  ---@param slot? table the call's limiter slot, given back on an error status
  ---@return table? res
  ---@return llm.Error? err
  function Client:send(spec, call, p, slot)
    for _ = 0, MAX_REDIRECTS do
      local debug = log_enabled("debug")   -- the log lines are formatted only when written
      local t0 = debug and now()
      local res, err = http.request(spec, env.debug_sink)
      if not res then
        if debug then log("debug", string.format("%s %s failed: %s", spec.method, spec.url, tostring(err))) end
        return nil, err
      end
      if debug then
        log("debug", string.format("%s %s -> %d in %.3f s", spec.method, spec.url, res.status, now() - t0))
      end
      local rid = request_id(res.headers)
      if res.status >= 300 and res.status < 400 and res.headers["location"] then
        if call then self:hook("on_response", call, { status = res.status, request_id = rid }) end
        local target, rerr = redirect_target(spec, res)
        if not target then return nil, rerr end
        spec = copy(spec)
        spec.url = target
        if res.status == 303 then spec.method, spec.body = "GET", nil end
      else
        if call then call.response = { status = res.status, request_id = rid } end
        if res.status >= 300 then
          release(slot, res)   -- its rate-limit headers correct the limiter
          return nil, self:http_error(res.status, res.headers, res.body, res.retry_after, res.should_retry, p)
        end
        return res
      end
    end
    return nil, errors.new{ kind = "protocol", message = "too many redirects", retryable = false }
  end

  local JSON_KIND = { number = "a number", string = "a string", boolean = "a boolean" }

  -- The decoded body, or nil and a protocol error. A provider's reply is a JSON object;
  -- anything else is refused here, before a decoder indexes it (`any`: the caller takes
  -- whatever JSON the endpoint sends, as client:request does).
  local function decode_json(body, any)
    local v, err = json.decode(body)
    if v == nil then
      return nil, errors.new{ kind = "protocol", message = "response is not valid JSON: " .. tostring(err),
                              body = body, retryable = false }
    end
    if not any and getmetatable(v) ~= json.OBJECT_MT then
      local got = v == json.null and "null" or JSON_KIND[type(v)] or "an array"
      return nil, errors.new{ kind = "protocol", message = "response is " .. got .. ", not a JSON object",
                              body = body, retryable = false }
    end
    return v
  end

  local function attach_meta(resp, res)
    resp.status = res.status
    resp.headers = res.headers
    resp.request_id = request_id(res.headers)
    return resp
  end

  --- The normalized request, its provider, the transfer spec and the retry policy of a call.
  ---@private
  ---@param req string|llm.Request
  ---@param streaming boolean
  ---@return llm.Request req
  ---@return table p the provider table
  ---@return table spec the transfer spec
  ---@return llm.Policy policy
  function Client:prepare(req, streaming)
    req = self:normalize(req, 3)   -- errors blame the caller of chat / stream
    req.stream = streaming
    local p = self:provider_for(req)
    return req, p, self:spec(p.build_request(req), req, streaming), self:policy(req)
  end

  -- Give a limiter slot back with what the response said (nil slot: no limiter).
  function release(slot, res, usage)
    if slot then
      if res then slot:release(res.status, res.headers, usage, res.retry_after)
      else slot:release() end
    end
  end

  --- One attempt under the client's limiter: waits for a slot (a request's token estimate is
  -- its body size / 4 plus its `max_tokens`), runs `fn(slot)`, and makes sure the slot is
  -- given back however `fn` ends (`fn` gives it back itself to pass on headers and usage).
  ---@private
  ---@param spec table the transfer spec
  ---@param req? table the request (max_tokens, priority); nil: no token estimate
  ---@param fn fun(slot: table?): any, any
  ---@return any ... what fn returns, or nil, err when the wait was cancelled
  function Client:limited(spec, req, fn)
    local lim = self.limiter
    if not lim then return fn(nil) end
    local cost = req and (math.floor(#(spec.body or "") / 4) + (req.max_tokens or 0)) or 0
    local slot, err = lim:acquire(cost, req and req.priority)
    if not slot then return nil, err end
    local ok, a, b = pcall(fn, slot)
    if not slot.held then release(slot) end
    if not ok then error(a, 0) end
    return a, b
  end

  --- Send a request and wait for the whole reply (yielding inside a task, blocking outside).
  -- Returns the normalized response, or `nil, err` for a failure after the retries.
  ---@param req string|llm.Request a request, or the text of one user message
  ---@return llm.Response? resp
  ---@return llm.Error? err
  function Client:chat(req)
    local p, spec, policy
    req, p, spec, policy = self:prepare(req, false)
    local call = { model = req.model, method = spec.method, url = spec.url, p = p, accounts = true }
    return self:run_call(call, policy, function()
      return self:limited(spec, req, function(slot)
        local res, err = self:send(spec, call, p, slot)
        if not res then return nil, err end
        local body, jerr = decode_json(res.body)
        if not body then release(slot, res); return nil, jerr end
        local resp = p.decode_response(body, req)
        call.response.usage = resp.usage
        release(slot, res, resp.usage)
        resp.provider = self.name
        return attach_meta(resp, res)
      end)
    end)
  end

  --- The provider table that serves this request (the Responses API is a variant of openai).
  ---@private
  ---@param req llm.Request
  ---@return table p
  function Client:provider_for(req)
    local p = self.provider
    if req.api == "responses" and p.responses then return p.responses end
    return p
  end

  --- An authenticated raw call to any endpoint of the provider (embeddings, models, ...).
  -- Returns the decoded body and `meta = { status, headers, request_id }`, or `nil, err`.
  ---@param method string "GET", "POST", ...
  ---@param path string a path under the base URL (or a full URL of the same origin)
  ---@param body? table|string the JSON body
  ---@param opts? { headers?: table<string, string>, query?: table<string, string>, timeout?: number, raw?: boolean, max_retries?: integer, retry?: llm.Policy }
  ---@return any body the decoded JSON (the text with `opts.raw`), or nil
  ---@return table|llm.Error meta_or_err `{ status, headers, request_id }`, or the error
  function Client:request(method, path, body, opts)
    if type(method) ~= "string" or type(path) ~= "string" then
      error("client:request(method, path, body, opts) expects strings", 2)
    end
    opts = opts or {}
    local bad = validate.request_options(opts)
    if bad then error(bad, 2) end
    if path:match("^%a[%w+.-]*:") and origin(path) ~= origin(self.base_url) then
      -- the key goes only to the provider's host: an absolute URL must stay on its origin
      error("client:request: " .. errors.redact(path) .. " is not on the provider's origin "
        .. errors.redact(origin(self.base_url) or self.base_url) .. "; pass a path relative to base_url", 2)
    end
    local built = { method = method:upper(), path = path, body = body, query = opts.query, any_json = true }
    return self:call_json(built, opts, nil, opts.raw)
  end

  --- One JSON call under the retry policy (through run_call: hooks, logging): the built
  -- request (method, path, body, query; `model`, the model it names when its body does not),
  -- the call's options (headers, timeout, max_retries, retry) and the provider table whose
  -- errors it decodes. Every non-streamed call but chat goes through here.
  -- Returns the decoded body (the text when `raw`) and its meta, or nil, err. With `decode`,
  -- returns `decode(body, meta)` instead, and a result's `usage` is accounted.
  ---@private
  ---@param built table method, path, body (a table, a string or nil), query, model, any_json (any JSON reply, not only an object)
  ---@param opts table headers, timeout, max_retries, retry
  ---@param p? table the provider table (default: the client's)
  ---@param raw? boolean return the body text undecoded
  ---@param decode? fun(body: any, meta: table): any, any the normalized result, or nil, err
  ---@return any body
  ---@return table|llm.Error meta_or_err
  function Client:call_json(built, opts, p, raw, decode)
    local spec = self:spec(built, { extra_headers = opts.headers, extra_query = built.query,
                                    timeout = opts.timeout }, false)
    if built.body == nil then spec.body = nil end
    local policy = self:policy(opts)
    local body = built.body
    local model = built.model or (type(body) == "table" and type(body.model) == "string" and body.model or nil)
    local call = { model = model, method = spec.method, url = spec.url, p = p, accounts = decode ~= nil }
    return self:run_call(call, policy, function()
      -- a raw call takes a slot (requests, concurrency) but no token estimate: its body may
      -- be a file upload rather than a prompt
      return self:limited(spec, nil, function(slot)
        local res, err = self:send(spec, call, p, slot)
        if not res then return nil, err end
        release(slot, res)
        local meta = { status = res.status, headers = res.headers, request_id = request_id(res.headers) }
        if raw then return res.body, meta end
        if res.body == "" then return json.object(), meta end
        local v, jerr = decode_json(res.body, built.any_json)
        if v == nil then return nil, jerr end
        if decode then return decode(v, meta) end
        return v, meta
      end)
    end)
  end

  ---------------------------------------------------------------------------------------
  -- Endpoints beyond chat: embeddings, token counts, model lists
  -- @section endpoints

  --- `nil, err` (kind "unsupported") for a call the provider's API has no endpoint for.
  ---@private
  ---@param what string the endpoint ("embeddings", "batch", ...)
  ---@return nil
  ---@return llm.Error err
  function Client:unsupported(what)
    return nil, errors.new{ kind = "unsupported", retryable = false,
      message = tostring(self.name) .. ": the provider's API has no " .. what .. " endpoint" }
  end

  --- Embedding vectors for one text or a list of texts, in order.
  -- `opts.model` (else the client option `embedding_model`; a call without either raises),
  -- `opts.dimensions`, and `extra`, `headers`, `timeout`, `max_retries`, `retry`.
  -- Returns `{ vectors = { {numbers}, ... }, model, usage = { input_tokens } }`, or `nil, err`
  -- (kind `"unsupported"` for a provider without an embeddings API).
  ---@param texts string|string[] a text, or a list of texts
  ---@param opts? { model?: string, dimensions?: integer, extra?: table, headers?: table<string, string>, timeout?: number, max_retries?: integer, retry?: llm.Policy }
  ---@return llm.Embeddings? e
  ---@return llm.Error? err
  function Client:embed(texts, opts)
    opts = opts or {}
    local bad = validate.embed(texts, opts)
    if bad then error(bad, 2) end
    local p = self.provider
    if not p.build_embed then return self:unsupported("embeddings") end
    local model = opts.model or self.embedding_model
    if not model then
      error("client:embed: no model: pass { model = ... } or set the client option embedding_model", 2)
    end
    local input = type(texts) == "string" and { texts } or texts
    local req = { model = model, input = input, dimensions = opts.dimensions, extra = opts.extra }
    local built = p.build_embed(req)
    built.model = model
    return self:call_json(built, opts, p, false, function(body)
      local e = p.decode_embed(body, req)
      e.model = e.model or model
      e.raw = body
      if #e.vectors ~= #input then
        return nil, errors.new{ kind = "protocol", retryable = false, body = body,
          message = string.format("expected %d embedding vectors, the server sent %d", #input, #e.vectors) }
      end
      return e
    end)
  end

  --- The input tokens a chat request would use, counted by the provider (Anthropic
  -- `count_tokens`, Gemini `countTokens`). Returns `{ input_tokens = n }`, or `nil, err`
  -- (kind `"unsupported"` elsewhere).
  ---@param req string|llm.Request a request, or the text of one user message
  ---@return { input_tokens: integer }? count
  ---@return llm.Error? err
  function Client:count_tokens(req)
    req = self:normalize(req, 2)
    local p = self:provider_for(req)
    if not p.build_count_tokens then return self:unsupported("token-counting") end
    local built = p.build_count_tokens(req)
    built.model = req.model
    local body, err = self:call_json(built, { headers = req.extra_headers,
      timeout = req.timeout, max_retries = req.max_retries, retry = req.retry }, p)
    if body == nil then return nil, err end
    return p.decode_count_tokens(body)
  end

  local MAX_PAGES = 100

  --- The models the provider offers: a list of `{ id, created, owned_by, raw }` (`created` in
  -- Unix seconds and `owned_by` where the provider gives them), every page followed.
  ---@return llm.ModelInfo[]? models
  ---@return llm.Error? err
  function Client:models()
    local p = self.provider
    if not p.build_models then return self:unsupported("model-list") end
    local out, page = {}, nil
    for _ = 1, MAX_PAGES do
      local body, err = self:call_json(p.build_models(page), {})
      if body == nil then return nil, err end
      local list, next_page = p.decode_models(body)
      for _, m in ipairs(list) do out[#out + 1] = m end
      if not next_page or next_page == page then break end
      page = next_page
    end
    return out
  end

  ---------------------------------------------------------------------------------------
  -- Streams
  -- @section streams

  ---@class llm.Stream
  ---@field status integer the HTTP status
  ---@field headers table<string, string> the response headers (lower-case names)
  ---@field request_id? string
  local Stream = { __name = "llm.Stream" }
  Stream.__index = Stream
  M.Stream = Stream

  local function stream_error(fields)
    local f = copy(fields)
    f.kind = f.kind or "server"
    f.status = nil
    if f.retryable == nil then f.retryable = errors.retryable_default(f.kind, nil) end
    return errors.new(f)
  end

  --- Open one attempt: wait for the status, then hold events back until the first content
  -- event (or the hold-back cap), so a retry never shows the user anything twice.
  -- Returns a Stream, or nil, err for a failure before that (the policy may retry it).
  ---@private
  ---@param p table the provider table
  ---@param spec table the transfer spec
  ---@param req llm.Request
  ---@param call? table the call's state (run_call)
  ---@return llm.Stream? stream
  ---@return llm.Error? err
  function Client:open_stream(p, spec, req, call)
    return self:limited(spec, req, function(slot) return self:open_stream_slot(p, spec, req, call, slot) end)
  end

  --- `open_stream` with its limiter slot (nil without a limiter): the stream holds the slot
  -- until it ends, is closed or is collected.
  ---@private
  ---@param p table the provider table
  ---@param spec table the transfer spec
  ---@param req llm.Request
  ---@param call? table the call's state (run_call)
  ---@param slot? table the limiter slot
  ---@return llm.Stream? stream
  ---@return llm.Error? err
  function Client:open_stream_slot(p, spec, req, call, slot)
    for _ = 0, MAX_REDIRECTS do
      local hs = http.stream(spec, env.debug_sink)
      local ok, err = hs:wait_headers()
      if not ok then hs:close(); return nil, err end
      local rid = request_id(hs.headers)
      if hs.status >= 300 and hs.status < 400 and hs.headers["location"] then
        if call then self:hook("on_response", call, { status = hs.status, request_id = rid }) end
        hs:close()
        local target, rerr = redirect_target(spec, { status = hs.status, headers = hs.headers })
        if not target then return nil, rerr end
        spec = copy(spec)
        spec.url = target
      elseif hs.status >= 300 then
        if call then call.response = { status = hs.status, request_id = rid } end
        hs:close()
        release(slot, hs)
        return nil, self:http_error(hs.status, hs.headers, hs.body, hs.retry_after, hs.should_retry, p)
      else
        if call then call.response = { status = hs.status, request_id = rid } end
        local s = setmetatable({ hs = hs, p = p, req = req, structured = req.response_format ~= nil,
                                 state = p.new_stream_state(req),
                                 pending = queue.new(), held = 0, held_bytes = 0, started = false,
                                 finished = false, client = self }, Stream)
        s.status, s.headers = hs.status, hs.headers
        s.request_id = request_id(hs.headers)
        if slot then s.slot, s.guard = slot, slot:hold() end
        hs:set_sink(s)
        while not s.started and not s.finished do
          local wok, werr = hs:wait()
          if not wok then s:fail(werr) end
        end
        if s.early_error then
          local e = s.early_error
          if e.kind ~= "cancelled" then started_streams[e] = s end
          return nil, e
        end
        s.started = true
        return s
      end
    end
    return nil, errors.new{ kind = "protocol", message = "too many redirects", retryable = false }
  end

  -- Everything below up to Stream:next runs inside the loop's step, as records arrive: it
  -- calls no user code and must not raise.

  --- A batch of raw events from the transfer (see llm.http's set_sink): decode each into
  -- `pending`. The provider's fast path (`decode_fast`) turns a common text delta into its
  -- event without building the decoded tables; anything else is decoded in full. A batch
  -- that held content tells the transfer once (its first-token and idle clocks); the
  -- stream's terminal event ends the reply, and the transfer is dropped unread beyond it.
  --
  -- Once the stream has started and this batch has shown content, the rest of the batch (its
  -- records past the common ones) waits, undecoded, until the reader gets there
  -- (`decode_rest`): the clocks have heard of the content, and a reply that came in one
  -- piece reaches the reader's hands before its last records (the finish and usage chunks,
  -- the final response) are decoded. The next batch, or the transfer's end, decodes the
  -- rest first, so the order never changes.
  ---@private
  ---@param batch table `{ n, data..., names?, ids? }`
  function Stream:on_events(batch)
    if self.finished then return end
    if self.rest then
      self:decode_rest()
      if self.finished then return end
    end
    self:decode(batch, 1, true)
  end

  --- Decode `batch` from record `i` on (see on_events); with `may_defer`, stop before a
  -- record that is not a common one once the batch has shown content, and keep the rest.
  ---@private
  ---@param batch table `{ n, data..., names?, ids? }`
  ---@param i integer the first record to decode
  ---@param may_defer boolean whether the rest may wait for the reader
  function Stream:decode(batch, i, may_defer)
    local p, state, pending = self.p, self.state, self.pending
    local decode, fast = p.decode_event, p.decode_fast
    local names, ids = batch.names, batch.ids
    local content = false
    local n = batch.n
    while i <= n do
      -- Once the stream has started (nothing is held back any more), runs of common records
      -- go straight from the batch to `pending` (decode_batch, in C).
      if self.started and p.decode_batch then
        local k
        i, k = p.decode_batch(state, batch, i, pending)
        if k > 0 then content = true end
        if i > n then break end
      end
      if may_defer and content and self.started then
        self.rest, self.rest_i = batch, i
        break
      end
      local data = batch[i]
      local name = names and names[i]
      local fe = fast and fast(state, data, name)
      local nev
      if fe then
        if CONTENT[fe.type] then content = true end
        pending:push(fe)
        nev = 1
      else
        local raw = { name = name, data = data, id = ids and ids[i] }
        local ok, evs = pcall(decode, state, raw)
        if not ok then
          evs = { { type = "error", raw = data, name = name,
                    error = { kind = "protocol", message = "cannot decode a stream event: " .. tostring(evs) } } }
        end
        nev = #evs
        for j = 1, nev do
          local ev = evs[j]
          if ev.type == "error" then
            self:fail(stream_error(ev.error), ev)
            return
          end
          if CONTENT[ev.type] then content = true end
          pending:push(ev)
        end
      end
      if not self.started then
        self.held = self.held + nev
        self.held_bytes = self.held_bytes + #data
        -- Held-back events are bounded: past the cap they are handed out, and the stream
        -- counts as started (no silent retry after that).
        if content or self.held >= HELD_EVENTS or self.held_bytes >= HELD_BYTES then self.started = true end
      end
      if state.complete then
        self:on_end(nil)
        break
      end
      i = i + 1
    end
    if content then self.content = true end
    if not self.finished then
      if content and may_defer then self.hs.t:content() end   -- the rest's batch told it already
      if pending:len() >= HIGH_WATER then self.hs:pause(true) end
    end
  end

  --- Decode what on_events left of its last batch, then the transfer's end if it came
  -- meanwhile. Runs in the reader (Stream:next) or before the next batch; never raises.
  ---@private
  function Stream:decode_rest()
    local batch, i = self.rest, self.rest_i
    self.rest, self.rest_i = nil, nil
    self:decode(batch, i, false)
    local rec = self.rest_end
    if rec then
      self.rest_end = nil
      self:on_end(rec)
    end
  end

  --- Give the stream's limiter slot back (once), with the response headers and `usage`.
  ---@private
  ---@param usage? table
  function Stream:free_slot(usage)
    local slot = self.slot
    if slot then
      self.slot, self.guard = nil, nil
      slot:release(self.hs.status, self.hs.headers, usage)
    end
  end

  --- The end of the reply: the transfer's last record (`rec`, with `rec.error` on a
  -- transport failure), or nil when the terminal event arrived.
  ---@private
  ---@param rec? table
  function Stream:on_end(rec)
    if self.finished then return end
    if rec and self.rest then     -- the transfer's end comes after the records left to decode
      self.rest_end = rec
      return
    end
    if rec and rec.error then
      self:fail(errors.from_core(rec.error))
      return
    end
    local ok, resp, ferr = pcall(self.p.finish_stream, self.state)
    if not ok then resp, ferr = nil, { kind = "protocol", message = "cannot finish the stream: " .. tostring(resp) } end
    if not resp then
      local e = stream_error(ferr or { kind = "protocol", message = "stream ended early" })
      e.retryable = false
      self:fail(e)
      return
    end
    resp.status, resp.headers = self.hs.status, self.hs.headers
    resp.request_id = request_id(self.hs.headers)
    resp.provider = self.client.name
    self.response = resp
    self:free_slot(resp.usage)
    self.pending:push({ type = "done", response = resp })
    self.finished, self.started = true, true
    self.hs:close()
  end

  --- The stream failed with `err` (raw event `ev`, if any). Before the stream started the
  -- error is kept for the retry policy; after, it is the last event.
  ---@private
  ---@param err llm.Error
  ---@param ev? table the event that carried it
  function Stream:fail(err, ev)
    if self.finished then return end
    self:free_slot()
    if self.started then
      self:finish_with(err, ev)
    else
      self.early_error, self.early_event = err, ev
      self.error, self.finished = err, true
      self.hs:close()
    end
  end

  --- End the stream with an `"error"` event.
  ---@private
  ---@param err llm.Error
  ---@param raw_ev? table the provider event that carried it
  function Stream:finish_with(err, raw_ev)
    self:free_slot()
    self.error = err
    self.pending:push({ type = "error", error = err, raw = raw_ev and errors.redact_value(raw_ev.raw),
                        name = raw_ev and raw_ev.name })
    self.finished, self.started = true, true
    self.hs:close()
  end

  --- With a response_format, a text event feeds the incremental JSON parse; when the
  -- object so far changed, a `partial` event follows the text event (API §12).
  ---@private
  ---@param text string the text delta just handed out
  function Stream:track_partial(text)
    local pj = self.partial_json
    if not pj then
      pj = partial_json.new()
      self.partial_json = pj
    end
    if pj:feed(text) then self.partial_next = { type = "partial", value = pj:value() } end
  end

  --- The next normalized event, or nil after `done` / `error` has been delivered, or once
  -- the stream is closed (events read ahead are dropped with it).
  ---@return llm.Event? ev
  function Stream:next()
    local partial = not self.closed and self.partial_next
    if partial then
      self.partial_next = nil
      if self.on_event then self.on_event(partial) end
      return partial
    end
    local pending = self.pending
    while not self.closed do
      local ev = nil
      if pending.first <= pending.last then
        checkpoint()                                 -- one event handed out
        if not self.closed then ev = pending:pop() end
      end
      if ev then
        local ty = ev.type
        if self.hs.paused and pending:len() < LOW_WATER then self.hs:pause(false) end
        if ty == "text" then
          if self.on_event then self.on_event(ev) end
          if self.structured then self:track_partial(ev.text) end
          return ev
        end
        if ty == "done" or ty == "error" then
          self.delivered = true
          self:settle(ty == "error" and ev.error or nil)
          if ty == "done" and self.on_done then self.on_done(ev.response) end
        end
        if self.on_event then self.on_event(ev) end
        return ev
      end
      if self.rest then
        self:decode_rest()          -- what the last batch left for the reader
      elseif self.finished then
        return nil
      else
        local ok, err = self.hs:wait()
        if not ok then self:fail(err) end
      end
    end
    return nil
  end

  --- The end of a stream its caller got: its usage joins `client.usage` (the last usage
  -- it reported, also when it failed or was closed early), its info line is logged and,
  -- when it failed, `on_error` fires. Once, in the reader's task, never inside a step.
  ---@private
  ---@param err? llm.Error the error it ended with
  ---@param closed? boolean the caller closed it before its end
  function Stream:settle(err, closed)
    if self.settled or not self.call then return end
    self.settled = true
    local c, call = self.client, self.call
    local usage = self.response and self.response.usage or (type(self.state) == "table" and self.state.usage) or nil
    if call.accounts ~= false then c:account(call.model, usage, self.p) end
    if err then
      c:log_call(call, "failed: " .. tostring(err), usage)
      c:hook("on_error", call, { error = err, status = self.status, request_id = self.request_id, usage = usage })
    else
      c:log_call(call, "-> " .. tostring(self.status) .. (closed and " (closed early)" or ""), usage)
    end
  end

  --- Iterator over normalized events; ends after `done` or `error`.
  ---@return fun(): llm.Event? iterator
  function Stream:events()
    return function() return self:next() end
  end

  --- Iterator over text deltas; raises the error object if the stream fails.
  ---@return fun(): string? iterator
  function Stream:text()
    return function()
      while true do
        local ev = self:next()
        if ev == nil then return nil end
        if ev.type == "text" then return ev.text end
        if ev.type == "error" then error(ev.error, 0) end
      end
    end
  end

  --- Drain the rest; returns the normalized response, or nil, err.
  ---@return llm.Response? resp
  ---@return llm.Error? err
  function Stream:final()
    while self:next() do end
    if self.closed and not self.delivered then
      return nil, errors.new{ kind = "cancelled", message = "stream closed", retryable = false }
    end
    if self.response then return self.response end
    return nil, self.error or errors.new{ kind = "cancelled", message = "stream closed" }
  end

  --- Cancel early and free the connection. Idempotent. Events read ahead are dropped: from
  -- now on next() gives nil and final() nil, err (kind "cancelled"), also for a reader
  -- waiting in another task, which wakes.
  function Stream:close()
    self:settle(nil, true)
    self:free_slot()
    if not self.finished then
      self.finished = true
      self.error = self.error or errors.new{ kind = "cancelled", message = "stream closed", retryable = false }
    end
    self.closed = true
    self.pending = queue.new()
    self.rest, self.rest_i, self.rest_end = nil, nil, nil
    self.hs:close()
  end
  Stream.__close = Stream.close

  --- Send a request and stream the reply. Waits (yielding or blocking) for the response status
  -- and the first content: an HTTP error or a connection failure, after retries, returns
  -- `nil, err`; a later failure arrives as the stream's `"error"` event.
  ---@param req string|llm.Request a request, or the text of one user message
  ---@return llm.Stream? stream
  ---@return llm.Error? err
  function Client:stream(req)
    local p, spec, policy
    req, p, spec, policy = self:prepare(req, true)
    local call = { model = req.model, method = spec.method, url = spec.url, p = p, stream = true }
    return self:start_stream(p, spec, req, policy, call)
  end

  --- Open a stream under the retry policy (through run_call: hooks, logging, accounting when
  -- it ends); a failure after HTTP 200 before any content that the policy gave up on is
  -- handed out as the stream's error event.
  ---@private
  ---@param p table the provider table
  ---@param spec table the transfer spec
  ---@param req llm.Request
  ---@param policy llm.Policy
  ---@param call table the call's state (run_call)
  ---@return llm.Stream? stream
  ---@return llm.Error? err
  function Client:start_stream(p, spec, req, policy, call)
    local s, err = self:run_call(call, policy, function() return self:open_stream(p, spec, req, call) end)
    if s then
      s.call = call            -- accounted when it ends (Stream:settle)
      return s
    end
    -- After HTTP 200 a failure arrives as the stream's "error" event (API §9), not as nil, err.
    local last = errors.is(err) and err.kind == "retry" and err.last or err
    local started = last ~= nil and started_streams[last]
    if started then
      started.status, started.headers = started.hs.status, started.hs.headers
      started:finish_with(err, last == started.early_error and started.early_event or nil)
      started.failed_before_content = true   -- nothing reached the user (llm.fallback moves on)
      return started
    end
    return nil, err
  end

  ---------------------------------------------------------------------------------------
  -- Background responses (Responses API): fetch, cancel and resume a stored response.
  -- @section background

  -- The Responses API provider table behind this client, or nil when it has none.
  local function responses_api(self, what, id)
    if type(id) ~= "string" or id == "" then
      error("client:" .. what .. ": expected a response id (a string such as \"resp_...\")", 3)
    end
    local p = self.provider
    if p.api == "responses" then return p end
    return p.responses
  end

  --- A stored response as it stands now (GET /responses/{id}): a normalized response whose
  -- `state` is `"queued"`, `"in_progress"`, `"completed"`, `"incomplete"`, `"failed"` or
  -- `"cancelled"`. `nil, err` kind `"unsupported"` for a provider without the Responses API.
  ---@param id string the response id (`resp.id` of a `background = true` call)
  ---@return llm.Response? resp
  ---@return llm.Error? err
  function Client:response(id)
    local p = responses_api(self, "response", id)
    if not p then return self:unsupported("Responses API") end
    local body, meta = self:call_json(p.build_retrieve(id), {}, p)
    if body == nil then return nil, meta end
    return attach_meta(p.decode_response(body, {}), meta)
  end

  --- Cancel a background response (POST /responses/{id}/cancel); returns the response, whose
  -- `state` is then `"cancelled"` (or its final state when it had already finished).
  ---@param id string the response id
  ---@return llm.Response? resp
  ---@return llm.Error? err
  function Client:cancel_response(id)
    local p = responses_api(self, "cancel_response", id)
    if not p then return self:unsupported("Responses API") end
    local body, meta = self:call_json(p.build_cancel(id), {}, p)
    if body == nil then return nil, meta end
    return attach_meta(p.decode_response(body, {}), meta)
  end

  --- Resume the event stream of a background response (GET /responses/{id}?stream=true),
  -- after sequence number `opts.starting_after` (from the start without it). The stream's
  -- final response is the whole stored response. `opts` also takes `timeout`,
  -- `idle_timeout`, `first_token_timeout`, `max_retries`, `retry` and `headers`.
  ---@param id string the response id
  ---@param opts? { starting_after?: integer, timeout?: number, idle_timeout?: number, first_token_timeout?: number, max_retries?: integer, retry?: llm.Policy, headers?: table<string, string> }
  ---@return llm.Stream? stream
  ---@return llm.Error? err
  function Client:stream_response(id, opts)
    local p = responses_api(self, "stream_response", id)
    opts = opts or {}
    local bad = validate.stream_response(opts)
    if bad then error(bad, 2) end
    if not p then return self:unsupported("Responses API") end
    local built = p.build_resume(id, opts.starting_after)
    local req = { resumed = true, timeout = opts.timeout, idle_timeout = opts.idle_timeout,
                  first_token_timeout = opts.first_token_timeout, extra_headers = opts.headers,
                  extra_query = built.query }
    local spec = self:spec(built, req, true)
    spec.body = nil
    -- Hooks and logging as for any stream; not accounted again (the call that started the
    -- response counted it).
    local call = { method = spec.method, url = spec.url, p = p, stream = true, accounts = false }
    return self:start_stream(p, spec, req, self:policy(opts), call)
  end

  ---------------------------------------------------------------------------------------
  -- Conversations: history kept on the client side (the Chat Completions API remembers
  -- nothing); with the Responses API, turns chain previous_response_id instead.
  -- @section conversations

  ---@class llm.Conversation
  ---@field messages llm.Message[] the history
  ---@field system? string
  local Conversation = { __name = "llm.Conversation" }
  Conversation.__index = Conversation
  M.Conversation = Conversation

  --- A conversation that keeps its history: `conv:send(text)`, `conv:stream(text)`.
  -- `opts`: `system`, `messages` (a history to start from), `api`, `store`, and request
  -- options for every turn. With `api = "responses"` turns chain `previous_response_id`.
  ---@param opts? { system?: string, messages?: llm.Message[], api?: "responses", store?: boolean }|llm.Request options for every turn
  ---@return llm.Conversation
  function Client:conversation(opts)
    opts = copy(opts)
    local conv = setmetatable({ client = self, system = opts.system, messages = {},
                                api = opts.api or self.api, store = opts.store }, Conversation)
    for i, m in ipairs(opts.messages or {}) do conv.messages[i] = m end
    local trial = copy(opts)        -- a misspelt option raises here, not at the first send
    trial.model = trial.model or self.model or "(set per turn)"
    self:normalize(trial, 2)
    opts.system, opts.messages, opts.api = nil, nil, nil
    conv.options = opts
    return conv
  end

  --- The request for one turn, and the user message it adds.
  ---@private
  ---@param input string|llm.Message
  ---@param overrides? llm.Request
  ---@return llm.Request req
  ---@return llm.Message msg
  function Conversation:turn(input, overrides)
    local msg = input
    if type(input) == "string" then msg = { role = "user", content = input }
    elseif type(input) ~= "table" then error("conversation: expected a string or a message", 3) end
    local req = copy(self.options)
    for k, v in each(overrides or {}) do req[k] = v end
    req.system, req.api, req.store = self.system, self.api, self.store
    if self.api == "responses" and self.store ~= false and self.last_response_id then
      req.messages = { msg }                        -- the server holds the rest
      req.previous_response_id = self.last_response_id
    else
      local history = {}
      for i, m in ipairs(self.messages) do history[i] = m end
      history[#history + 1] = msg
      req.messages = history
    end
    return req, msg
  end

  --- A successful turn joins the history; a failed one leaves it unchanged.
  ---@private
  ---@param msg llm.Message
  ---@param resp llm.Response
  function Conversation:commit(msg, resp)
    self.messages[#self.messages + 1] = msg
    self.messages[#self.messages + 1] = resp.message
    self.last_response_id = resp.id
  end

  --- Send one turn; a successful one joins `conv.messages`, a failed one leaves it unchanged.
  ---@param input string|llm.Message the user's text or message
  ---@param overrides? llm.Request request fields for this turn
  ---@return llm.Response? resp
  ---@return llm.Error? err
  function Conversation:send(input, overrides)
    local req, msg = self:turn(input, overrides)
    local resp, err = self.client:chat(req)
    if not resp then return nil, err end
    self:commit(msg, resp)
    return resp
  end

  --- Stream one turn; it joins `conv.messages` when the consumer reads its done event.
  ---@param input string|llm.Message the user's text or message
  ---@param overrides? llm.Request request fields for this turn
  ---@return llm.Stream? stream
  ---@return llm.Error? err
  function Conversation:stream(input, overrides)
    local req, msg = self:turn(input, overrides)
    local s, err = self.client:stream(req)
    if not s then return nil, err end
    s.on_done = function(resp) self:commit(msg, resp) end   -- when its done event is read
    return s
  end

  return M
end
