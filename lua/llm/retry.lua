--- Retry policies in the style of Python's tenacity, for any function.
--
-- The module is a factory because it sleeps: `require("llm.retry")(clock)` with
-- `clock = { now = fn() -> seconds, sleep = fn(seconds), random = fn() -> [0,1) }`
-- (`random` is optional and defaults to `math.random`; `sleep` returns nil, err when the
-- wait was cancelled, and the call then returns that error). The library builds it on its
-- scheduler's clock, so sleeping yields inside a task and blocks outside one; specs pass a
-- fake clock. The built-in retry behaviour of the client is one of these policies
-- (`R.default`), so there is one retry engine, not two.
-- @module llm.retry
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local errors = require("llm.errors")

local compat = require("llm.compat")
local unpack = compat.unpack
local pack = compat.pack
local huge = math.huge

return function(clock)
  if type(clock) ~= "table" or type(clock.now) ~= "function" or type(clock.sleep) ~= "function" then
    error("llm.retry needs a clock { now = function, sleep = function }", 2)
  end
  local now, sleep = clock.now, clock.sleep
  local random = clock.random or math.random

  local R = {}

  ---------------------------------------------------------------------------
  -- Building blocks: stops, waits and conditions are callable objects, so that
  -- they can carry operator metamethods (`|`, `&`, `+`); plain functions taking
  -- the state table are accepted wherever one is expected.
  -- @section blocks
  ---------------------------------------------------------------------------

  -- Callable objects; a plain function of the state is accepted wherever one is expected.
  ---@class llm.retry.Stop: function when to stop: `stop(state) -> boolean`; `a | b`, `a & b` combine
  local Stop = { __name = "llm.retry.Stop" }
  ---@class llm.retry.Wait: function how long to wait: `wait(state) -> seconds`; `a + b` adds
  local Wait = { __name = "llm.retry.Wait" }
  ---@class llm.retry.Condition: function whether to retry: `retry(state) -> boolean`; `a | b`, `a & b` combine
  local Condition = { __name = "llm.retry.Condition" }

  local function call_fn(self, state) return self.fn(state) end
  Stop.__call, Wait.__call, Condition.__call = call_fn, call_fn, call_fn

  local function make(mt, name, fn) return setmetatable({ name = name, fn = fn }, mt) end
  local function describe(self) return getmetatable(self).__name .. "(" .. self.name .. ")" end
  Stop.__tostring, Wait.__tostring, Condition.__tostring = describe, describe, describe

  local function is_callable(x)
    if type(x) == "function" then return true end
    local mt = getmetatable(x)
    return type(mt) == "table" and mt.__call ~= nil
  end

  -- Coercions used by the combinators and by R.policy; `what` names the argument in
  -- the message raised for a misuse, `level` is the user's frame (default: two calls up,
  -- as from collect() or build()).
  local function to_stop(x, what, level)
    if getmetatable(x) == Stop then return x end
    if is_callable(x) then return make(Stop, "custom", function(s) return x(s) end) end
    error((what or "stop") .. " must be a stop or a function, got " .. type(x), level or 4)
  end

  local function to_wait(x, what, level)
    if getmetatable(x) == Wait then return x end
    if type(x) == "number" then return R.wait_fixed(x) end
    if is_callable(x) then return make(Wait, "custom", function(s) return x(s) end) end
    error((what or "wait") .. " must be a wait, a number or a function, got " .. type(x), level or 4)
  end

  local function to_condition(x, what, level)
    if getmetatable(x) == Condition then return x end
    if is_callable(x) then return make(Condition, "custom", function(s) return x(s) end) end
    error((what or "retry") .. " must be a condition or a function, got " .. type(x), level or 4)
  end

  local function check_number(v, what, default)
    if v == nil then return default end
    if type(v) ~= "number" or v ~= v then error(what .. " must be a number", 3) end
    return v
  end

  local function clamp(v, lo, hi)
    if v ~= v then return hi end          -- 0 * inf: an overflowing backoff means "as long as allowed"
    if v < lo then return lo end
    if v > hi then return hi end
    return v
  end

  local function uniform(a, b) return a + random() * (b - a) end

  ---------------------------------------------------------------------------
  -- Stops: `stop(state) -> boolean`, asked after a failed attempt that the condition
  -- wants retried, once the coming wait is known (state.wait).
  -- @section stops
  ---------------------------------------------------------------------------

  --- Stop once `n` attempts have been made.
  ---@param n integer attempts
  ---@return llm.retry.Stop
  function R.stop_after_attempt(n)
    n = check_number(n, "stop_after_attempt(n)")
    return make(Stop, "after_attempt " .. n, function(s) return s.attempt >= n end)
  end

  --- Stop once `seconds` have passed since the first attempt started.
  ---@param seconds number
  ---@return llm.retry.Stop
  function R.stop_after_delay(seconds)
    seconds = check_number(seconds, "stop_after_delay(seconds)")
    return make(Stop, "after_delay " .. seconds, function(s) return s.elapsed >= seconds end)
  end

  --- Stop when the coming wait would end `seconds` or more after the first attempt started,
  -- so no attempt starts past the deadline.
  ---@param seconds number
  ---@return llm.retry.Stop
  function R.stop_before_delay(seconds)
    seconds = check_number(seconds, "stop_before_delay(seconds)")
    return make(Stop, "before_delay " .. seconds, function(s)
      return s.elapsed + (s.wait or 0) >= seconds
    end)
  end

  --- Never stop (only the condition ends the retries).
  R.stop_never = make(Stop, "never", function() return false end)

  local function collect(coerce, kind, ...)
    local list = {}
    for i = 1, select("#", ...) do list[i] = coerce((select(i, ...)), kind .. " argument " .. i) end
    return list
  end

  --- Stop when any of the given stops says so.
  ---@param ... llm.retry.Stop|function
  ---@return llm.retry.Stop
  function R.stop_any(...)
    local list = collect(to_stop, "stop_any", ...)
    return make(Stop, "any", function(s)
      for _, st in ipairs(list) do if st(s) then return true end end
      return false
    end)
  end

  --- Stop when all of the given stops say so.
  ---@param ... llm.retry.Stop|function
  ---@return llm.retry.Stop
  function R.stop_all(...)
    local list = collect(to_stop, "stop_all", ...)
    return make(Stop, "all", function(s)
      for _, st in ipairs(list) do if not st(s) then return false end end
      return #list > 0
    end)
  end

  Stop.__bor = function(a, b) return R.stop_any(a, b) end
  Stop.__band = function(a, b) return R.stop_all(a, b) end

  ---------------------------------------------------------------------------
  -- Waits: `wait(state) -> seconds` to sleep after attempt number `state.attempt`.
  -- @section waits
  ---------------------------------------------------------------------------

  --- No wait between attempts.
  R.wait_none = make(Wait, "none", function() return 0 end)

  --- Always wait `seconds`.
  ---@param seconds number
  ---@return llm.retry.Wait
  function R.wait_fixed(seconds)
    seconds = check_number(seconds, "wait_fixed(seconds)")
    return make(Wait, "fixed " .. seconds, function() return seconds end)
  end

  --- Wait a uniformly random time in [a, b] (defaults 0 and 1).
  ---@param a? number shortest wait (0)
  ---@param b? number longest wait (1)
  ---@return llm.retry.Wait
  function R.wait_random(a, b)
    a = check_number(a, "wait_random(a, b)", 0)
    b = check_number(b, "wait_random(a, b)", 1)
    return make(Wait, "random", function() return uniform(a, b) end)
  end

  --- Wait `start + increment * (attempt - 1)`, clamped to [0, max].
  -- Options: start (0), increment (1), max (infinite).
  ---@param o? { start?: number, increment?: number, max?: number }
  ---@return llm.retry.Wait
  function R.wait_incrementing(o)
    o = o or {}
    local start = check_number(o.start, "wait_incrementing start", 0)
    local inc = check_number(o.increment, "wait_incrementing increment", 1)
    local max = check_number(o.max, "wait_incrementing max", huge)
    return make(Wait, "incrementing", function(s)
      return clamp(start + inc * (s.attempt - 1), 0, max)
    end)
  end

  local function exponential(o, what)
    o = o or {}
    local mult = check_number(o.multiplier, what .. " multiplier", 1)
    local base = check_number(o.exp_base, what .. " exp_base", 2)
    local min = check_number(o.min, what .. " min", 0)
    local max = check_number(o.max, what .. " max", huge)
    return function(s) return clamp(mult * base ^ (s.attempt - 1), min, max) end, min
  end

  --- Wait `multiplier * exp_base^(attempt - 1)` clamped to [min, max] after attempt
  -- `attempt`, so the first wait is `multiplier`.
  -- Options: multiplier (1), exp_base (2), min (0), max (infinite).
  ---@param o? { multiplier?: number, exp_base?: number, min?: number, max?: number }
  ---@return llm.retry.Wait
  function R.wait_exponential(o)
    local f = exponential(o, "wait_exponential")
    return make(Wait, "exponential", f)
  end

  --- Full jitter: uniform in [min, w] where w is wait_exponential's value for the same options.
  ---@param o? { multiplier?: number, exp_base?: number, min?: number, max?: number }
  ---@return llm.retry.Wait
  function R.wait_random_exponential(o)
    local f, min = exponential(o, "wait_random_exponential")
    return make(Wait, "random_exponential", function(s) return uniform(min, f(s)) end)
  end

  --- `initial * exp_base^(attempt - 1) + uniform(0, jitter)`, capped at max.
  -- Options: initial (1), max (infinite), exp_base (2), jitter (1).
  ---@param o? { initial?: number, exp_base?: number, jitter?: number, max?: number }
  ---@return llm.retry.Wait
  function R.wait_exponential_jitter(o)
    o = o or {}
    local initial = check_number(o.initial, "wait_exponential_jitter initial", 1)
    local max = check_number(o.max, "wait_exponential_jitter max", huge)
    local base = check_number(o.exp_base, "wait_exponential_jitter exp_base", 2)
    local jitter = check_number(o.jitter, "wait_exponential_jitter jitter", 1)
    return make(Wait, "exponential_jitter", function(s)
      return clamp(initial * base ^ (s.attempt - 1) + uniform(0, jitter), 0, max)
    end)
  end

  --- Use wait i after attempt i; the last wait repeats.
  ---@param ... llm.retry.Wait|number|function
  ---@return llm.retry.Wait
  function R.wait_chain(...)
    local list = collect(to_wait, "wait_chain", ...)
    if #list == 0 then error("wait_chain needs at least one wait", 2) end
    return make(Wait, "chain", function(s)
      return list[math.min(math.max(s.attempt, 1), #list)](s)
    end)
  end

  --- The sum of the given waits (numbers count as fixed waits).
  ---@param ... llm.retry.Wait|number|function
  ---@return llm.retry.Wait
  function R.wait_sum(...)
    local list = collect(to_wait, "wait_sum", ...)
    return make(Wait, "sum", function(s)
      local total = 0
      for _, w in ipairs(list) do total = total + w(s) end
      return total
    end)
  end

  Wait.__add = function(a, b) return R.wait_sum(a, b) end

  local function retry_after_of(err)
    if type(err) == "table" and type(err.retry_after) == "number" and err.retry_after == err.retry_after then
      return math.max(0, err.retry_after)
    end
  end

  --- The failed attempt's `err.retry_after` seconds when present, else `fallback`
  -- (a wait, a number or a function; default wait_none).
  ---@param fallback? llm.retry.Wait|number|function the wait when the error has no retry_after
  ---@return llm.retry.Wait
  function R.wait_retry_after(fallback)
    local fb = fallback == nil and R.wait_none or to_wait(fallback, "wait_retry_after fallback", 3)
    return make(Wait, "retry_after", function(s)
      return retry_after_of(s.error) or fb(s)
    end)
  end

  -- The client SDKs' backoff: min(8, 0.5 * 2^n) for n retries already made, times a
  -- jitter factor in (0.75, 1] (OpenAI's SDK: 1 - 0.25 * random()).
  local BUILTIN_INITIAL, BUILTIN_MAX, BUILTIN_MAX_RETRY_AFTER = 0.5, 8, 60
  local builtin_wait = make(Wait, "builtin", function(s)
    local ra = retry_after_of(s.error)
    if ra then return ra end
    local n = s.attempt - 1
    return math.min(BUILTIN_MAX, BUILTIN_INITIAL * 2 ^ n) * (1 - 0.25 * random())
  end)

  --- The built-in policy's wait: the error's `retry_after` when present, else
  -- `min(8, 0.5 * 2^n)` (n = retries already made) times a jitter factor in [0.75, 1].
  ---@return llm.retry.Wait
  function R.wait_builtin() return builtin_wait end

  ---------------------------------------------------------------------------
  -- Conditions: `retry(state) -> boolean`, asked after every attempt. `state.failed`
  -- tells a failure (state.error) from a success (state.result, state.results).
  -- @section conditions
  ---------------------------------------------------------------------------

  --- Retry failures. With no arguments any failure; otherwise only llm.Errors whose
  -- `kind` is one of `kinds` (a plain error, raised or returned, never matches them).
  ---@param ... string error kinds ("rate_limit", "server", ...); none: any failure
  ---@return llm.retry.Condition
  function R.if_error(...)
    local n = select("#", ...)
    if n == 0 then return make(Condition, "error", function(s) return s.failed end) end
    local set = {}
    for i = 1, n do
      local k = select(i, ...)
      if type(k) ~= "string" then error("if_error kinds must be strings", 2) end
      set[k] = true
    end
    return make(Condition, "error kinds", function(s)
      -- an llm.Error or any table with a kind (API §9), raised or returned
      return s.failed and type(s.error) == "table" and set[s.error.kind] == true
    end)
  end

  --- Retry failures whose `tostring(err)` matches the Lua pattern.
  ---@param pattern string a Lua pattern
  ---@return llm.retry.Condition
  function R.if_error_matching(pattern)
    if type(pattern) ~= "string" then error("if_error_matching(pattern) needs a string", 2) end
    return make(Condition, "error matching", function(s)
      return s.failed and tostring(s.error):find(pattern) ~= nil
    end)
  end

  --- Retry a success whose values make `pred(...)` true.
  ---@param pred fun(...): boolean
  ---@return llm.retry.Condition
  function R.if_result(pred)
    if not is_callable(pred) then error("if_result(pred) needs a function", 2) end
    return make(Condition, "result", function(s)
      return not s.failed and not not pred(unpack(s.results, 1, s.results.n))
    end)
  end

  --- Retry a success whose values make `pred(...)` false.
  ---@param pred fun(...): boolean
  ---@return llm.retry.Condition
  function R.if_not_result(pred)
    if not is_callable(pred) then error("if_not_result(pred) needs a function", 2) end
    return make(Condition, "not result", function(s)
      return not s.failed and not pred(unpack(s.results, 1, s.results.n))
    end)
  end

  --- Retry when any of the conditions says so.
  ---@param ... llm.retry.Condition|function
  ---@return llm.retry.Condition
  function R.if_any(...)
    local list = collect(to_condition, "if_any", ...)
    return make(Condition, "any", function(s)
      for _, c in ipairs(list) do if c(s) then return true end end
      return false
    end)
  end

  --- Retry when all of the conditions say so.
  ---@param ... llm.retry.Condition|function
  ---@return llm.retry.Condition
  function R.if_all(...)
    local list = collect(to_condition, "if_all", ...)
    return make(Condition, "all", function(s)
      for _, c in ipairs(list) do if not c(s) then return false end end
      return #list > 0
    end)
  end

  Condition.__bor = function(a, b) return R.if_any(a, b) end
  Condition.__band = function(a, b) return R.if_all(a, b) end

  -- R.policy{}'s condition: any failure except one the library knows is final.
  local default_condition = make(Condition, "default", function(s)
    return s.failed and not (errors.is(s.error) and s.error.retryable == false)
  end)

  -- R.policy{}'s stop: three attempts, and never sleep for a server that asks for more
  -- than a minute (the built-in policy does not wait for that either).
  local function retry_after_over(limit)
    return make(Stop, "retry_after over " .. limit, function(s)
      local ra = retry_after_of(s.error)
      return ra ~= nil and ra > limit
    end)
  end
  local default_stop = R.stop_any(R.stop_after_attempt(3), retry_after_over(BUILTIN_MAX_RETRY_AFTER))

  ---------------------------------------------------------------------------
  -- The engine. One `run` per call, so a policy can serve several tasks at once. The state
  -- of a call lives in the call: the policy keeps only the latest call's statistics (plain
  -- numbers, so a shared policy such as llm.retry.default never keeps a returned stream
  -- alive) and the state of its latest attempts() loop, for result().
  -- @section policies
  ---------------------------------------------------------------------------

  -- A retry policy (`R.policy{...}`).
  ---@class llm.Policy
  ---@field statistics { attempts: integer, idle: number, start_time: number?, delay_since_first_attempt: number } the latest call
  local Policy = { __name = "llm.retry.Policy" }
  local methods = {}
  Policy.__index = methods

  local OPTIONS = { stop = true, wait = true, retry = true, before = true, after = true,
                    before_sleep = true, retry_error_callback = true, reraise = true }
  local HOOKS = { "before", "after", "before_sleep", "retry_error_callback" }

  local function new_run(policy)
    local t0 = now()
    local stats = { attempts = 0, idle = 0, start_time = t0, delay_since_first_attempt = 0 }
    local state = { attempt = 0, wait = nil, error = nil, result = nil, elapsed = 0,
                    policy = policy, idle = 0, start_time = t0, failed = false }
    local run = { policy = policy, state = state, stats = stats, outcome = nil, final = nil }
    rawset(policy, "statistics", stats)   -- numbers only: it keeps no call's values alive
    return run
  end

  -- An interrupt (Ctrl-C: lua.c raises "interrupted!") or a cancelled task is never
  -- retried, whatever the policy's condition says: the user asked to stop.
  local function is_stop_request(e)
    if type(e) == "string" then return e:find("interrupted!", 1, true) ~= nil end
    return type(e) == "table" and rawget(e, "kind") == "cancelled"
  end

  local function start_attempt(run)
    local s = run.state
    s.attempt = s.attempt + 1
    s.wait = nil
    s.elapsed = now() - s.start_time
    run.outcome = nil
    if run.policy.before then run.policy.before(s) end
  end

  -- An outcome: { failed, raised, error, values = packed returns }.
  local function outcome_of(ok, ...)
    if not ok then
      local err = ...
      return { failed = true, raised = true, error = err, values = pack(nil, err) }
    end
    local values = pack(...)
    if values[1] == nil and values.n >= 2 and values[2] ~= nil then
      return { failed = true, raised = false, error = values[2], values = values }
    end
    return { failed = false, values = values }
  end

  -- Record an attempt's outcome and decide. Returns true when another attempt is due
  -- (after having slept), false when the run is over (run.final says how).
  local function settle(run, o)
    local p, s, stats = run.policy, run.state, run.stats
    run.outcome = o
    s.failed = o.failed
    s.error = o.failed and o.error or nil
    s.results = o.values
    s.result = (not o.failed) and o.values[1] or nil
    s.elapsed = now() - s.start_time
    stats.attempts = s.attempt
    stats.delay_since_first_attempt = s.elapsed

    if o.failed and is_stop_request(o.error) then run.final = "done"; return false end
    if not p.retry(s) then run.final = "done"; return false end
    if p.after then p.after(s) end
    local w = p.wait(s)
    if type(w) ~= "number" or w ~= w then error("retry wait returned " .. tostring(w) .. ", not a number", 0) end
    s.wait = math.max(0, w)
    if p.stop(s) then run.final = "exhausted"; return false end
    if p.before_sleep then p.before_sleep(s) end
    if run.on_sleep then run.on_sleep(s) end
    if s.wait > 0 then
      local _, serr = sleep(s.wait)
      if serr ~= nil then              -- cancelled while waiting: the call returns nil, err
        run.outcome = { failed = true, raised = false, error = serr, values = pack(nil, serr) }
        run.final = "done"
        return false
      end
    end
    s.idle = s.idle + s.wait
    stats.idle = s.idle
    return true
  end

  local function retry_error(run)
    local o, n = run.outcome, run.state.attempt
    local last = o.failed and o.error or nil
    local msg
    if o.failed then
      msg = "gave up after " .. n .. (n == 1 and " attempt" or " attempts") .. ": " .. tostring(last)
    else
      msg = "gave up after " .. n .. (n == 1 and " attempt" or " attempts")
        .. ": the last result was still rejected by the retry condition"
    end
    return errors.new{ kind = "retry", message = msg, attempts = n, last = last,
                       result = (not o.failed) and o.values[1] or nil, retryable = false }
  end

  -- What call() returns for a finished run; raises where the attempt raised.
  local function finish(run)
    local o = run.outcome
    if o == nil then return nil end           -- an iterator left before its first outcome
    if run.final == "exhausted" then
      local p = run.policy
      if p.retry_error_callback then return p.retry_error_callback(run.state) end
      if not (p.reraise and o.failed) then return nil, retry_error(run) end
    end
    if o.failed and o.raised then error(o.error, 0) end
    return unpack(o.values, 1, o.values.n)
  end

  -- One run of the policy over fn(...): attempts until the policy settles, `on_sleep(state)`
  -- (if any) before each wait. The one engine behind call and call_hooked.
  local function run_policy(policy, on_sleep, fn, ...)
    local run = new_run(policy)
    run.on_sleep = on_sleep
    repeat
      start_attempt(run)
    until not settle(run, outcome_of(pcall(fn, ...)))
    return finish(run)
  end

  --- Call `fn(...)` under the policy. A raised error and a `nil, err` return are failures.
  -- Returns fn's values; a failure the condition rejects unchanged (raised ones re-raised);
  -- when retries run out `nil, err` with `err.kind == "retry"`, `err.attempts`, `err.last`
  -- (or the last failure itself with `reraise`, or retry_error_callback's values).
  ---@param fn function the work
  ---@param ... any its arguments
  ---@return any ... fn's values, or nil and an llm.Error
  function methods:call(fn, ...)
    if not is_callable(fn) then error("policy:call(fn, ...) needs a function", 2) end
    return run_policy(self, nil, fn, ...)
  end

  --- `call`, with `on_sleep(state)` run before each wait after the policy's own
  -- `before_sleep`: how a client observes the retries of one call (its `on_retry` hook and
  -- log line) under any policy, without a copy of the policy.
  ---@private
  ---@param on_sleep fun(state: table) called before each wait
  ---@param fn function the work
  ---@param ... any its arguments
  ---@return any ... as `call`
  function methods:call_hooked(on_sleep, fn, ...)
    if not is_callable(fn) then error("policy:call(fn, ...) needs a function", 2) end
    return run_policy(self, on_sleep, fn, ...)
  end

  --- A function that calls `fn` under the policy with its arguments.
  ---@param fn function the work
  ---@return function wrapped calls fn under the policy
  function methods:wrap(fn)
    if not is_callable(fn) then error("policy:wrap(fn) needs a function", 2) end
    return function(...) return self:call(fn, ...) end
  end

  -- One attempt of a `policy:attempts()` loop.
  ---@class llm.retry.Attempt
  ---@field number integer this attempt's number, from 1
  local Attempt = { __name = "llm.retry.Attempt" }
  local attempt_methods = {}
  Attempt.__index = attempt_methods

  --- Run `fn(...)` as this attempt's work and record its outcome; returns fn's values, or
  -- `nil, err` when fn raised (the error is not propagated, so the loop can continue).
  ---@param fn function the work
  ---@param ... any its arguments
  ---@return any ... fn's values, or nil and the error it raised
  function attempt_methods:run(fn, ...)
    local o = outcome_of(pcall(fn, ...))
    self.outcome = o
    return unpack(o.values, 1, o.values.n)
  end

  --- Record this attempt as failed with `err`.
  ---@param err any the failure
  function attempt_methods:fail(err)
    if err == nil then error("attempt:fail(err) needs an error value", 2) end
    self.outcome = { failed = true, raised = false, error = err, values = pack(nil, err) }
  end

  --- Record this attempt as succeeded with the given values.
  ---@param ... any the values
  function attempt_methods:succeed(...)
    self.outcome = { failed = false, values = pack(...) }
  end

  --- Retry a block: `for attempt in policy:attempts() do attempt:run(fn, ...) end`, then
  -- `policy:result()`. An attempt that records nothing counts as a success with no value.
  ---@return fun(): llm.retry.Attempt? iterator
  function methods:attempts()
    local run = new_run(self)
    rawset(self, "_run", run)             -- for result(): the loop's state, not a call's
    local current
    return function()
      if run.final then return nil end
      if current then
        local o = current.outcome or { failed = false, values = pack() }
        if not settle(run, o) then return nil end
      end
      start_attempt(run)
      current = setmetatable({ number = run.state.attempt, state = run.state }, Attempt)
      run.current = current
      return current
    end
  end

  --- What the latest `attempts()` loop amounts to (same rules as call: values, `nil, err`,
  -- or a re-raised error).
  ---@return any ... the values, or nil and an llm.Error
  function methods:result()
    local run = rawget(self, "_run")
    if not run then return nil end
    if not run.final then                 -- a loop left with `break`: its last attempt stands
      local o = run.current and run.current.outcome
      if not o then return nil end
      run.outcome, run.final = o, "done"
    end
    return finish(run)
  end

  local function build(opts)
    local p = { statistics = { attempts = 0, idle = 0, start_time = nil, delay_since_first_attempt = 0 } }
    for k in each(opts) do
      if not OPTIONS[k] then error("unknown retry policy option '" .. tostring(k) .. "'", 3) end
    end
    p.stop = opts.stop == nil and default_stop or to_stop(opts.stop)
    p.wait = opts.wait == nil and builtin_wait or to_wait(opts.wait)
    p.retry = opts.retry == nil and default_condition or to_condition(opts.retry)
    for _, h in ipairs(HOOKS) do
      if opts[h] ~= nil and not is_callable(opts[h]) then error(h .. " must be a function", 3) end
      p[h] = opts[h]
    end
    p.reraise = opts.reraise and true or false
    return setmetatable(p, Policy)
  end

  --- Build a policy. Options: stop (default 3 attempts), wait (default the built-in wait),
  -- retry (default: any failure but an llm.Error with retryable = false), before, after,
  -- before_sleep, retry_error_callback (hooks receiving the state), reraise.
  ---@param opts? { stop?: llm.retry.Stop|function, wait?: llm.retry.Wait|number|function, retry?: llm.retry.Condition|function, before?: function, after?: function, before_sleep?: function, retry_error_callback?: function, reraise?: boolean }
  ---@return llm.Policy
  function R.policy(opts)
    if opts ~= nil and type(opts) ~= "table" then error("R.policy{...} takes a table", 2) end
    return build(opts or {})
  end

  --- A copy of the policy with some options replaced, with its own statistics.
  ---@param opts? table options to replace, as for `R.policy`
  ---@return llm.Policy
  function methods:with(opts)
    if opts ~= nil and type(opts) ~= "table" then error("policy:with{...} takes a table", 2) end
    local merged = {}
    for k in each(OPTIONS) do merged[k] = self[k] end
    for k, v in each(opts or {}) do
      if not OPTIONS[k] then error("unknown retry policy option '" .. tostring(k) .. "'", 2) end
      merged[k] = v
    end
    return build(merged)
  end

  --- The client's built-in policy: retries llm.Errors with `retryable == true`,
  -- up to `max_retries` (default 2) times, waiting like `wait_builtin`; a server asking for
  -- more than 60 s is not waited for (its error is returned); when retries run out the last
  -- error itself is returned.
  ---@param max_retries integer retries after the first attempt
  ---@return llm.Policy
  function R.builtin(max_retries)
    max_retries = check_number(max_retries, "builtin(max_retries)", 2)
    if max_retries < 0 or math.floor(max_retries) ~= max_retries then
      error("builtin(max_retries) needs a non-negative integer", 2)
    end
    local cond = make(Condition, "builtin", function(s)
      if not (s.failed and errors.is(s.error) and s.error.retryable == true) then return false end
      local ra = retry_after_of(s.error)
      return not (ra and ra > BUILTIN_MAX_RETRY_AFTER)
    end)
    return build{ stop = R.stop_after_attempt(max_retries + 1), wait = builtin_wait,
                  retry = cond, reraise = true }
  end

  --- The policy the client uses when none is given: `R.builtin(2)`.
  R.default = R.builtin(2)

  R.Policy, R.Stop, R.Wait, R.Condition = Policy, Stop, Wait, Condition

  return R
end
