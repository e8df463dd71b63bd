--- `require("llm.mock")`: the offline mock server (`llm-mock`) for your own tests.
--
--     local mock = require("llm.mock")
--     local m = mock.start()                      -- on a free loopback port
--     local c = m:client("anthropic", { max_retries = 0 })
--     m:push{ text = "Hello!" }                   -- the next reply, whatever the provider
--     local resp = c:chat("Hi")
--     local reqs = m:requests()                   -- what the server received
--     m:stop()
--
-- The server is `llm-mock`, found next to the module (`llm/llm-mock` beside `llm/core.so`
-- in an installed rock) or in the build tree (`build/llm-mock` beside `build/llm/core.so`).
-- It is started with a pipe on its standard input and exits when that pipe closes: on
-- `m:stop()`, when the Lua state closes (`__gc`, `__close`), or when this process exits,
-- however it exits. See docs/mock.md.
-- @module llm.mock
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local json = require("llm.json")

local M = {}

--- A running mock server (`mock.start()`).
---@class llm.Mock
---@field url string where it listens: `http://127.0.0.1:PORT`
---@field port integer the port
local Mock = { __name = "llm.Mock" }
Mock.__index = Mock

-- Where a client of each built-in provider points (the path its real base URL carries),
-- and its default model.
local ROOTS = {
  openai = { path = "/v1", model = "gpt-4.1-mini" },
  openai_responses = { path = "/v1", model = "gpt-4.1-mini" },
  anthropic = { path = "", model = "claude-sonnet-4-5" },
  gemini = { path = "/v1beta", model = "gemini-2.5-flash" },
  ollama = { path = "", model = "llama3.2" },
  azure = { path = "/openai/v1", model = "gpt-4.1-mini" },
}
M.providers = ROOTS

local PUSH_FIELDS = {
  text = true, tool_calls = true, reasoning = true, usage = true, status = true, headers = true,
  error = true, delay = true, cut_after = true, stall_after = true, pings = true, fixture = true,
  finish = true, json = true,
}

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- A private instance of the library for the control requests: its own loop, so a call
-- blocks even inside the caller's task and never disturbs the caller's transfers.
local control
local function ctl()
  control = control or require("llm").new()
  return control
end

-- package.searchpath, which Lua 5.1 lacks.
local function searchpath(name, path)
  name = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local file = template:gsub("%?", name)
    if exists(file) then return file end
  end
  return nil
end

--- The `llm-mock` executable: opts.bin, else $LLM_MOCK_BIN, else next to `llm/core.so`
--- (installed), else in the build tree that holds `llm/core.so`.
---@param opts? {bin?: string} an explicit executable
---@return string? path the executable, or nil when there is none
---@return string? err where it looked
function M.find_bin(opts)
  local bin = (opts and opts.bin) or os.getenv("LLM_MOCK_BIN")
  if bin and bin ~= "" then return bin end
  local so = searchpath("llm.core", package.cpath)
  if not so then return nil, "llm.mock: llm.core is not on package.cpath" end
  local dir = so:match("^(.*)[/\\][^/\\]*$") or "."
  local tried = {}
  for _, cand in ipairs({ dir .. "/llm-mock", dir .. "/../llm-mock" }) do
    if exists(cand) then return cand end
    tried[#tried + 1] = cand
  end
  return nil, "llm.mock: no llm-mock executable (looked at " .. table.concat(tried, ", ")
    .. "; set LLM_MOCK_BIN, or build it: it needs Lua 5.4)"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- Starts `llm-mock` on a free loopback port.
--- opts: `fixtures` (a folder of recorded transcripts, for `push{ fixture = "provider/name" }`),
--- `port` (default 0: a free one), `bin` (the executable), `timeout` (seconds to wait for it
--- to listen, default 10).
---@param opts? {fixtures?: string, port?: integer, bin?: string, timeout?: number} options
---@return llm.Mock? mock the running server, or nil when it cannot start
---@return string? err why it did not start
function M.start(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("llm.mock.start: expected a table of options", 2) end
  local bin, err = M.find_bin(opts)
  if not bin then return nil, err end
  local portfile, logfile, pidfile = os.tmpname(), os.tmpname(), os.tmpname()
  -- `$$` is the shell's pid, which `exec` hands on to the server.
  local args = { "echo $$ >" .. quote(pidfile) .. ";", "exec env -u LD_PRELOAD", quote(bin),
                 "--port", tostring(math.floor(tonumber(opts.port) or 0)),
                 "--port-file", quote(portfile), "--quiet", "--watch-stdin" }
  if opts.fixtures then args[#args + 1] = "--fixtures " .. quote(opts.fixtures) end
  args[#args + 1] = ">" .. quote(logfile) .. " 2>&1"
  -- The pipe is the server's lifeline: it exits when the write end closes.
  local pipe = io.popen(table.concat(args, " "), "w")
  if not pipe then return nil, "llm.mock: cannot run " .. bin end
  local llm = ctl()
  local port
  local deadline = llm.clock:now() + (opts.timeout or 10)
  repeat
    local s = read_file(portfile)
    port = s and tonumber(s:match("%d+"))
    if not port then llm.sleep(0.01) end
  until port or llm.clock:now() > deadline
  os.remove(portfile)
  local pid = tonumber((read_file(pidfile) or ""):match("%d+"))
  os.remove(pidfile)
  if not port then
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    pipe:close()
    local log = read_file(logfile) or ""
    os.remove(logfile)
    return nil, "llm.mock: llm-mock did not start: " .. log:gsub("%s+$", "")
  end
  local m = setmetatable({ port = port, url = "http://127.0.0.1:" .. port, pipe = pipe,
                           pid = pid, logfile = logfile, bin = bin }, Mock)
  return m
end

--- Stops the server (idempotent). Also runs on garbage collection and `__close`.
function Mock:stop()
  local pipe = self.pipe
  if pipe then
    self.pipe = nil
    -- SIGTERM, because a child this process started since may hold the pipe open too (the
    -- shell of os.execute does not close it); then end of file, and close reaps it.
    if self.pid then os.execute("kill " .. self.pid .. " 2>/dev/null") end
    pipe:close()
    os.remove(self.logfile)
  end
end
Mock.__gc = Mock.stop
Mock.__close = Mock.stop

function Mock:__tostring() return "llm.Mock(" .. self.url .. ")" end

local function control_request(self, method, path, body)
  if not self.pipe then error("llm.mock: the mock is stopped", 3) end
  local res, err = ctl().http.request({ url = self.url .. path, method = method, body = body,
    headers = body and { ["content-type"] = "application/json" } or nil, timeout = 30 })
  if not res then error("llm.mock: " .. path .. ": " .. tostring(err), 3) end
  if res.status ~= 200 then
    error("llm.mock: " .. path .. ": HTTP " .. res.status .. ": " .. res.body, 3)
  end
  return res.body
end

--- A client of `provider` pointed at the mock: base URL, a placeholder key and a default
--- model, then `opts` on top (`opts.llm`: the library instance to build it with).
---@param provider string a provider name: openai, anthropic, gemini, ollama or a derived one
---@param opts? table client options (docs/client.md); they win over the mock's defaults
---@return llm.Client client a client whose requests go to this mock
function Mock:client(provider, opts)
  if type(provider) ~= "string" then error("m:client: expected a provider name", 2) end
  local o = {}
  for k, v in each(opts or {}) do o[k] = v end
  local llm = o.llm or require("llm")
  o.llm = nil
  local name, seen = provider, {}
  while not ROOTS[name] do        -- a derived provider points where its base does
    local p = llm.providers[name]
    if type(p) ~= "table" or not p.base or seen[name] then break end
    seen[name] = true
    name = p.base
  end
  local root = ROOTS[name] or ROOTS.openai
  if o.base_url == nil then o.base_url = self.url .. root.path end
  if o.api_key == nil then o.api_key = "mock-key" end
  if o.model == nil then o.model = root.model end
  return llm.client(provider, o)
end

--- Queues the next reply; one queue serves every provider, in order. With the queue
--- empty the mock echoes the last user text ("echo: ..."). Fields: see docs/mock.md.
---@param reply llm.MockReply the reply
---@return llm.Mock self the mock, for chaining
function Mock:push(reply)
  if type(reply) ~= "table" then error("m:push: expected a table", 2) end
  for k in each(reply) do
    if not PUSH_FIELDS[k] then error("m:push: unknown field '" .. tostring(k) .. "'", 2) end
  end
  local t = reply.text
  if t ~= nil and type(t) ~= "string" and type(t) ~= "table" then
    error("m:push: text must be a string or a list of deltas", 2)
  end
  if reply.status ~= nil and type(reply.status) ~= "number" then
    error("m:push: status must be a number", 2)
  end
  if reply.json ~= nil and type(reply.json) ~= "string" then   -- sent as its JSON text
    local r = {}
    for k, v in each(reply) do r[k] = v end
    r.json = json.encode(reply.json)
    reply = r
  end
  local ok, body = pcall(json.encode, reply)
  if not ok then error("m:push: " .. tostring(body), 2) end
  control_request(self, "POST", "/__mock/push", body)
  return self
end

local PLAN_FIELDS = { outcome = true, errors = true, run = true, polls = true }
local OUTCOMES = { completed = true, failed = true, expired = true }

--- Sets how the next batch job created on the mock ends (plans queue up; without one a batch
--- completes with every request answered in echo mode). Fields: `outcome` ("completed",
--- "failed" or "expired"), `errors = { [custom_id] = { status, type, message } }` (per-request
--- errors), `run` (requests that ran before an expiry or a cancel; default half),
--- `polls` (polls the job stays in progress; default 1). See docs/mock.md.
---@param plan llm.MockBatchPlan the plan
---@return llm.Mock self the mock, for chaining
function Mock:batch_plan(plan)
  if type(plan) ~= "table" then error("m:batch_plan: expected a table", 2) end
  for k in each(plan) do
    if not PLAN_FIELDS[k] then error("m:batch_plan: unknown field '" .. tostring(k) .. "'", 2) end
  end
  if plan.outcome ~= nil and not OUTCOMES[plan.outcome] then
    error("m:batch_plan: outcome must be \"completed\", \"failed\" or \"expired\"", 2)
  end
  local ok, body = pcall(json.encode, plan)
  if not ok then error("m:batch_plan: " .. tostring(body), 2) end
  control_request(self, "POST", "/__mock/batch", body)
  return self
end

--- What the server received since the start (or the last `m:reset()`): a list of
--- `{ method, path (with the query), headers = { [lower-case name] = value }, body, json }`.
---@return llm.MockRequest[] requests oldest first
function Mock:requests()
  local list = assert(json.decode(control_request(self, "GET", "/__mock/requests")))
  local out = {}
  for i, r in ipairs(list) do
    local path = r.path
    if type(r.query) == "string" and r.query ~= "" then path = path .. "?" .. r.query end
    local body = type(r.body) == "string" and r.body or ""
    out[i] = { method = r.method, path = path, headers = r.headers, body = body,
               json = body ~= "" and json.decode(body) or nil }
  end
  return out
end

local LIMIT_FIELDS = { rpm = true, tpm = true, burst = true, burst_tokens = true, per = true }

--- Makes the mock enforce rate limits as the providers do: `{ rpm, tpm, burst, burst_tokens,
--- per = "key" | "global" }` (token buckets refilled rpm / 60 and tpm / 60 a second, holding
--- `burst` requests and `burst_tokens` tokens, default a full minute's). Replies carry honest
--- rate-limit headers; a request over a budget gets a 429 with `retry-after`. `{}` turns
--- limits off, and so does `m:reset()`. See docs/mock.md.
---@param limits { rpm?: number, tpm?: number, burst?: number, burst_tokens?: number, per?: "key"|"global" }
---@return llm.Mock self the mock, for chaining
function Mock:limits(limits)
  if type(limits) ~= "table" then error("m:limits: expected a table", 2) end
  for k, v in each(limits) do
    if not LIMIT_FIELDS[k] then error("m:limits: unknown field '" .. tostring(k) .. "'", 2) end
    if k ~= "per" and (type(v) ~= "number" or v <= 0) then
      error("m:limits: " .. k .. " must be a positive number", 2)
    end
  end
  if limits.per ~= nil and limits.per ~= "key" and limits.per ~= "global" then
    error("m:limits: per must be \"key\" or \"global\"", 2)
  end
  control_request(self, "POST", "/__mock/limits", json.encode(json.object(limits)))
  return self
end

--- The server's counters: `{ connections, open_connections, requests, active, peak_active,
--- rate_limited }` (`rate_limited`: requests answered 429 by the rate limits).
---@return table counters
function Mock:stats()
  return assert(json.decode(control_request(self, "GET", "/__mock/stats")))
end

--- Forgets the requests received and the replies still queued.
---@return llm.Mock self the mock, for chaining
function Mock:reset()
  control_request(self, "POST", "/__mock/reset")
  return self
end

return M
