--- `require("llm")`: one API over OpenAI, Anthropic, Gemini, Ollama and any
-- OpenAI-compatible server, with streaming, coroutine tasks, retries and tools.
-- The module is one instance built on one event loop; `llm.new{ clock = ... }` builds
-- another (specs use it with a fake clock).
-- @module llm
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local compat = require("llm.compat")
if not compat.supported then
  error(compat.SUPPORTED .. ": this is " .. tostring(_VERSION), 2)
end
local errors = require("llm.errors")
local json = require("llm.json")
local validate = require("llm.validate")

-- The version of the library (semantic versioning); the rockspec carries the same one.
local VERSION = "0.2.0"

local BUILTIN = { openai = true, anthropic = true, gemini = true, ollama = true, azure = true }

-- llm.core, checked to be built for the running Lua. A core built for another one fails
-- in dlopen on a symbol this Lua lacks, or in luaopen (5.3+), or names another Lua in
-- `core.lua` (5.1 and LuaJIT): all three raise the unsupported-Lua message.
local function load_core()
  local ok, core = pcall(require, "llm.core")
  local why
  if not ok then
    why = tostring(core)
    if not (why:find("undefined symbol", 1, true) or why:find("was built for", 1, true)) then
      error(core, 0)                              -- not a version problem: as require said
    end
  elseif core.lua ~= compat.lua then
    why = "llm.core was built for " .. tostring(core.lua)
  else
    return core
  end
  error(compat.SUPPORTED .. ": this is " .. compat.lua .. ", and " .. why, 0)
end

--- Build an independent instance: its own event loop, tasks and providers (`llm.new{...}`).
-- Specs pass a fake clock to check backoff and pacing without waiting.
---@param opts? { clock?: table, random?: fun(): number } a clock (`require("llm.clock").fake(0)`) and a random source
---@return llm
local function build(opts)
  opts = opts or {}
  local core = load_core()
  local loop = core.loop()
  local clock = opts.clock or require("llm.clock").real(loop)
  local async = require("llm.async")(loop, clock)
  local http = require("llm.http")(async)

  ---@class llm
  ---@field _VERSION string the version of the library (semantic versioning)
  ---@field providers table<string, table> the provider tables, by name
  ---@field json table the JSON codec (`llm.json`)
  ---@field retry table retry policies (`llm.retry`)
  local M = {}
  M._VERSION = VERSION
  M.json = json
  M.errors = errors
  M.is_error = errors.is
  M.new = build
  M.core = core
  M.loop = loop
  M.clock = clock

  -- Logging: one sink, every line redacted, and a threshold: "debug" logs everything
  -- (requests, timings, libcurl's text), "info" one line per call and per retry, "warn"
  -- only what went wrong around a call (a hook that raised).
  local LEVELS = { debug = 1, info = 2, warn = 3 }
  local log_fn, log_level = nil, LEVELS.debug
  local function stderr_log(level, msg) compat.warn("llm ", level, ": ", msg, "\n") end
  local env_level = compat.getenv("LLM_LOG")
  if LEVELS[env_level] then log_fn, log_level = stderr_log, LEVELS[env_level] end
  --- Whether a line at `level` would be written (so callers skip building it).
  ---@private
  ---@param level string "debug", "info" or "warn"
  ---@return boolean
  local function log_enabled(level)
    return log_fn ~= nil and (LEVELS[level] or LEVELS.debug) >= log_level
  end
  -- A sink that raises must not break the call that logs, nor a step of the loop (libcurl's
  -- text is logged from there): its failure is reported once on stderr and dropped.
  local sink_failed = false
  --- Write one log line through the configured sink, redacted; a sink that raises is
  -- reported once on stderr and otherwise ignored.
  ---@private
  ---@param level string "debug", "info" or "warn"
  ---@param msg string the line (redacted before it is written)
  local function log(level, msg)
    if not log_enabled(level) then return end
    local ok, err = pcall(log_fn, level, errors.redact(msg))
    if not ok and not sink_failed then
      sink_failed = true
      compat.warn("llm: the log function raised (further failures are not reported): ",
        errors.redact(tostring(err)), "\n")
    end
  end
  M.log = log

  local warned = false
  local env = {
    async = async, http = http, log = log, log_enabled = log_enabled,
    debug_enabled = function() return log_enabled("debug") end,
    debug_sink = function(text) log("debug", "curl: " .. text) end,
    warn_insecure = function()
      if not warned then
        warned = true
        compat.warn("llm: warning: TLS verification is off (insecure = true)\n")
      end
    end,
  }

  M.retry = require("llm.retry")({
    now = function() return clock:now() end,
    sleep = function(s) return async.sleep(s) end,   -- nil, err when the task is cancelled
    random = opts.random,
  })
  env.retry = M.retry

  -- Tasks (API §6).
  M.run, M.spawn, M.await = async.run, async.spawn, async.await
  M.gather, M.map, M.sleep, M.timeout = async.gather, async.map, async.sleep, async.timeout
  M.step = async.step
  M.async = async
  M.http = http

  --- The loop's pollable descriptor: readable whenever `llm.step(0)` has work (I/O, a due
  -- timer, a ready task); nil on a backend without one ("poll").
  ---@return integer? fd nil on a backend without one
  function M.pollfd() return loop:fd() end
  --- Seconds until a step has timed work: 0 when it has work now, nil when nothing is pending.
  M.next_timeout = async.next_timeout
  --- The loop's backend: "epoll", "kqueue" or "poll".
  ---@return string name
  function M.backend() return loop:backend() end
  --- Counters of the loop and the scheduler (steps, deferred_steps, deadline_checks, ...).
  M.loop_stats = async.stats

  -- Providers: plain tables; built-ins load on first use.
  M.providers = setmetatable({}, { __index = function(t, name)
    if BUILTIN[name] then
      local ok, p = pcall(require, "llm.providers." .. name)
      if ok then rawset(t, name, p); return p end
      error(p, 0)
    end
  end })

  local function resolve(name, seen)
    seen = seen or {}
    if seen[name] then error("provider '" .. name .. "' derives from itself", 3) end
    seen[name] = true
    local p = M.providers[name]
    if type(p) ~= "table" then error("unknown provider '" .. tostring(name) .. "'", 3) end
    if p.base then
      local base = resolve(p.base, seen)
      local out = {}
      for k, v in each(base) do out[k] = v end
      for k, v in each(p) do out[k] = v end
      -- A provider that names its own host keeps its key there: the base's environment
      -- variables (OPENAI_BASE_URL, OPENAI_API_KEY) describe the base's host, so they are
      -- not inherited over the provider's own base_url (API §9).
      if p.base_url ~= nil then
        if p.base_url_env == nil then out.base_url_env = nil end
        if p.api_key_env == nil then out.api_key_env = nil end
      end
      out.name = p.name or name
      out.base = p.base
      return out
    end
    if not p.build_request then
      error("provider '" .. name .. "' needs build_request, or base = \"openai\"", 3)
    end
    p.name = p.name or name
    return p
  end

  local limiters = require("llm.limiter").bind(async)
  env.limiters = limiters
  --- A rate limiter for clients to share (client option `limiter`): budgets of requests per
  -- minute, tokens per minute and calls at once, any of the three; it also obeys the
  -- providers' rate-limit headers. Calls wait their turn by `priority`, then in order.
  ---@param budgets? { rpm?: number, tpm?: number, concurrency?: integer }
  ---@return llm.Limiter
  function M.limiter(budgets) return limiters.new(budgets) end

  local clients = require("llm.client")(env)
  local defaults = { provider = nil, options = {} }

  --- A client for a provider: `llm.client("openai", { model = "gpt-4.1-mini" })`.
  -- With no arguments (or only options), the provider and options set by `llm.configure`.
  -- Raises on an unknown provider, a misspelt option or a missing API key.
  ---@param name? string|llm.ClientOptions the provider ("openai", "anthropic", "gemini", "ollama" or one registered in `llm.providers`); default: the configured one
  ---@param copts? llm.ClientOptions
  ---@return llm.Client
  function M.client(name, copts)
    if type(name) == "table" and copts == nil then name, copts = nil, name end
    name = name or defaults.provider
    if type(name) ~= "string" then error("llm.client: which provider? (e.g. llm.client(\"openai\", {...}))", 2) end
    if copts ~= nil and type(copts) ~= "table" then
      error(string.format(
        "llm.client(%q, ...): the options must be a table, e.g. llm.client(%q, { model = %s }), got %s",
        name, name, type(copts) == "string" and string.format("%q", copts) or "...", type(copts)), 2)
    end
    local merged = {}
    for k, v in each(defaults.options) do merged[k] = v end
    for k, v in each(copts or {}) do merged[k] = v end
    local p = resolve(name)
    return clients.new(p, merged)
  end

  --- Configure providers, the defaults of `llm.client()` and logging, from a table or a Lua
  -- file returning one: `{ providers = {...}, defaults = { provider, ...options }, log = fn }`.
  ---@param cfg string|{ providers?: table<string, table>, defaults?: table, log?: "debug"|"info"|"warn"|false|fun(level: string, msg: string), step_budget?: number, blocking?: boolean } a table, or a Lua file returning one
  ---@return llm
  function M.configure(cfg)
    if type(cfg) == "string" then
      local chunk, err = compat.loadfile(cfg, setmetatable({}, { __index = _G }))
      if not chunk then error("llm.configure: " .. err, 2) end
      cfg = chunk()
    end
    if type(cfg) ~= "table" then error("llm.configure expects a table or a file returning one", 2) end
    for name, p in each(cfg.providers or {}) do M.providers[name] = p end
    if cfg.defaults ~= nil then
      if type(cfg.defaults) ~= "table" then error("llm.configure: defaults must be a table", 2) end
      local o = {}
      for k, v in each(cfg.defaults) do if k ~= "provider" then o[k] = v end end
      local bad = validate.client_options(cfg.defaults.provider, o, "llm.configure defaults")
      if bad then error(bad, 2) end
      defaults.provider = cfg.defaults.provider or defaults.provider
      for k, v in each(cfg.defaults) do
        if k ~= "provider" then defaults.options[k] = v end
      end
      if cfg.defaults.insecure then env.warn_insecure() end
    end
    if cfg.step_budget ~= nil or cfg.blocking ~= nil then async.configure(cfg) end
    if cfg.log ~= nil then
      if type(cfg.log) == "function" then log_fn, log_level = cfg.log, LEVELS.debug
      elseif LEVELS[cfg.log] then log_fn, log_level = stderr_log, LEVELS[cfg.log]
      elseif cfg.log == false then log_fn = nil
      else error("llm.configure: log must be a function, \"debug\", \"info\", \"warn\" or false, got "
        .. tostring(cfg.log), 2) end
    end
    return M
  end

  local tools = require("llm.tools")(env, M)
  M.tool = tools.tool
  M.schema = tools.schema
  for name, fn in each(tools.methods or {}) do clients.Client[name] = fn end
  for name, fn in each(require("llm.batch")(env).methods) do clients.Client[name] = fn end

  local fallbacks = require("llm.fallback")({ clock = clock, Client = clients.Client,
                                              run_tools = tools.methods.run_tools })
  --- A client over several clients: `llm.fallback{ gpt, claude, on = {...}, cooldown = 30 }`.
  -- A call that fails with a listed kind (default overloaded, server, rate_limit, timeout,
  -- connection) before any content reached the caller moves to the next client, and the one
  -- that failed is skipped for `cooldown` seconds. `chat`, `stream`, `run_tools`, `conversation`.
  ---@param spec { [integer]: llm.Client, on?: string[], cooldown?: number } the clients in order, and options
  ---@return llm.Fallback
  function M.fallback(spec) return fallbacks.new(spec) end

  return M
end

return build()
