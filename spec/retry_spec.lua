-- lua5.1: yes
-- llm.retry against a fake clock: virtual time, recorded sleeps, scripted randomness.
local errors = require("llm.errors")
local make_retry = require("llm.retry")

-- A clock whose sleep advances virtual time and records each delay; `rand` is the value
-- random() returns (a number, or a function for a sequence).
local function fake_clock(rand)
  local c = { t = 100, sleeps = {}, rand = rand or 0.5 }
  function c.now() return c.t end
  function c.sleep(s) c.sleeps[#c.sleeps + 1] = s; c.t = c.t + s end
  function c.random()
    if type(c.rand) == "function" then return c.rand() end
    return c.rand
  end
  return c
end

-- fn failing (nil, err) `n` times, then returning "ok"; counts its calls.
local function failing(n, err)
  local calls = 0
  return function()
    calls = calls + 1
    if calls <= n then return nil, err or ("fail " .. calls) end
    return "ok", calls
  end, function() return calls end
end

local function llm_err(fields) return errors.new(fields) end

local function close(a, b) return math.abs(a - b) < 1e-9 end

local function assert_seq(expected, got)
  assert.are.equal(#expected, #got, "length of " .. table.concat(got, ","))
  for i = 1, #expected do
    assert.is_true(close(expected[i], got[i]), ("at %d: expected %s, got %s"):format(i, expected[i], got[i]))
  end
end

-- The sleeps a wait produces over `n` failing attempts (stop after n attempts).
local function waits_of(R, clock, wait, n)
  local p = R.policy{ wait = wait, stop = R.stop_after_attempt(n), retry = R.if_error() }
  p:call(function() return nil, "boom" end)
  return clock.sleeps
end

describe("llm.retry", function()
  local clock, R
  before_each(function()
    clock = fake_clock()
    R = make_retry(clock)
  end)

  it("needs a clock", function()
    assert.has_error(function() make_retry() end)
    assert.has_error(function() make_retry({ now = os.time }) end)
  end)

  describe("waits", function()
    it("wait_none never sleeps", function()
      waits_of(R, clock, R.wait_none, 4)
      assert.are.same({}, clock.sleeps)
    end)

    it("wait_fixed sleeps the same each time", function()
      assert_seq({ 2, 2, 2 }, waits_of(R, clock, R.wait_fixed(2), 4))
    end)

    it("a number is a fixed wait", function()
      assert_seq({ 0.25, 0.25 }, waits_of(R, clock, 0.25, 3))
    end)

    it("wait_exponential starts at multiplier and doubles, clamped to [min, max]", function()
      assert_seq({ 0.5, 1, 2, 4, 8, 8 },
        waits_of(R, clock, R.wait_exponential{ multiplier = 0.5, max = 8 }, 7))
    end)

    it("wait_exponential honours min and exp_base", function()
      assert_seq({ 2, 3, 9, 27 },
        waits_of(R, clock, R.wait_exponential{ multiplier = 1, exp_base = 3, min = 2 }, 5))
    end)

    it("wait_exponential defaults to 1, 2, 4", function()
      assert_seq({ 1, 2, 4 }, waits_of(R, clock, R.wait_exponential(), 4))
    end)

    it("wait_exponential does not overflow into nan", function()
      local w = R.wait_exponential{ multiplier = 0, max = 5 }
      assert.are.equal(5, w({ attempt = 5000 }))
      assert.are.equal(7, R.wait_exponential{ max = 7 }({ attempt = 5000 }))
    end)

    it("wait_incrementing adds increment each attempt up to max", function()
      assert_seq({ 1, 3, 5, 6, 6 },
        waits_of(R, clock, R.wait_incrementing{ start = 1, increment = 2, max = 6 }, 6))
    end)

    it("wait_random stays within [a, b] and is driven by random()", function()
      clock.rand = 0
      assert.are.equal(1, R.wait_random(1, 3)({ attempt = 1 }))
      clock.rand = 0.5
      assert.are.equal(2, R.wait_random(1, 3)({ attempt = 1 }))
      clock.rand = math.random
      local w = R.wait_random(1, 3)
      local lo, hi = math.huge, -math.huge
      for _ = 1, 2000 do
        local v = w({ attempt = 1 })
        lo, hi = math.min(lo, v), math.max(hi, v)
      end
      assert.is_true(lo >= 1 and hi <= 3)
      assert.is_true(lo < 1.2 and hi > 2.8)   -- spread over the range, not a constant
    end)

    it("wait_random_exponential is full jitter under the exponential", function()
      local w = R.wait_random_exponential{ multiplier = 1, max = 10 }
      clock.rand = 0.999999
      for attempt, top in ipairs({ 1, 2, 4, 8, 10, 10 }) do
        local v = w({ attempt = attempt })
        assert.is_true(v <= top and v > top * 0.99, "attempt " .. attempt)
      end
      clock.rand = 0
      assert.are.equal(0, w({ attempt = 4 }))
      clock.rand = math.random
      for _ = 1, 1000 do
        local v = w({ attempt = 3 })
        assert.is_true(v >= 0 and v <= 4)
      end
    end)

    it("wait_exponential_jitter adds uniform(0, jitter) and caps at max", function()
      local w = R.wait_exponential_jitter{ initial = 1, jitter = 2, max = 6 }
      clock.rand = 0.5
      assert.are.equal(2, w({ attempt = 1 }))     -- 1 + 1
      assert.are.equal(3, w({ attempt = 2 }))     -- 2 + 1
      assert.are.equal(5, w({ attempt = 3 }))     -- 4 + 1
      assert.are.equal(6, w({ attempt = 4 }))     -- 8 + 1, capped
      clock.rand = 0
      assert.are.equal(4, w({ attempt = 3 }))
    end)

    it("wait_chain uses wait i for attempt i and repeats the last", function()
      assert_seq({ 1, 2, 5, 5 },
        waits_of(R, clock, R.wait_chain(R.wait_fixed(1), R.wait_fixed(2), R.wait_fixed(5)), 5))
    end)

    it("wait_sum and + add waits", function()
      assert_seq({ 3, 5 }, waits_of(R, clock, R.wait_sum(R.wait_fixed(1), R.wait_exponential{ multiplier = 2 }), 3))
      clock.sleeps = {}
      clock.rand = 0.5
      assert_seq({ 1.5, 1.5 }, waits_of(R, clock, R.wait_fixed(1) + R.wait_random(0, 1), 3))
    end)

    it("wait_retry_after uses the error's retry_after, else the fallback", function()
      local errs = { llm_err{ kind = "rate_limit", retry_after = 7 }, llm_err{ kind = "server" },
                     { retry_after = 3 } }
      local i = 0
      local p = R.policy{ wait = R.wait_retry_after(R.wait_fixed(1)), stop = R.stop_after_attempt(4),
                          retry = R.if_error() }
      p:call(function() i = i + 1; return nil, errs[i] end)
      assert_seq({ 7, 1, 3 }, clock.sleeps)
    end)

    it("a plain function can be a wait", function()
      assert_seq({ 10, 20 }, waits_of(R, clock, function(s) return s.attempt * 10 end, 3))
    end)
  end)

  describe("stops", function()
    it("stop_after_attempt(n) makes exactly n attempts", function()
      local fn, calls = failing(10)
      local p = R.policy{ stop = R.stop_after_attempt(4), wait = R.wait_none }
      local v, err = p:call(fn)
      assert.is_nil(v)
      assert.are.equal(4, calls())
      assert.are.equal(4, err.attempts)
    end)

    it("stop_after_delay stops once the elapsed time reaches the limit", function()
      local fn, calls = failing(100)
      local p = R.policy{ stop = R.stop_after_delay(10), wait = R.wait_fixed(3) }
      p:call(fn)
      -- attempts start at 0, 3, 6, 9, 12: the one ending at 12 >= 10 stops
      assert.are.equal(5, calls())
      assert_seq({ 3, 3, 3, 3 }, clock.sleeps)
    end)

    it("stop_before_delay stops when the next wait would cross the limit", function()
      local fn, calls = failing(100)
      local p = R.policy{ stop = R.stop_before_delay(10), wait = R.wait_fixed(3) }
      p:call(fn)
      -- attempts at 0, 3, 6, 9; 9 + 3 >= 10 stops before a fifth
      assert.are.equal(4, calls())
      assert_seq({ 3, 3, 3 }, clock.sleeps)
    end)

    it("stop_never leaves it to the condition", function()
      local fn, calls = failing(20)
      local v = R.policy{ stop = R.stop_never, wait = R.wait_none }:call(fn)
      assert.are.equal("ok", v)
      assert.are.equal(21, calls())
    end)

    it("stop_any stops at the first; stop_all needs both", function()
      local fn, calls = failing(100)
      R.policy{ stop = R.stop_any(R.stop_after_attempt(3), R.stop_after_delay(100)), wait = 1 }:call(fn)
      assert.are.equal(3, calls())

      fn, calls = failing(100)
      R.policy{ stop = R.stop_all(R.stop_after_attempt(3), R.stop_after_delay(5)), wait = 1 }:call(fn)
      assert.are.equal(6, calls())   -- 3 attempts come first, the 5 s arrive at the sixth
    end)
  end)

  describe("conditions", function()
    it("if_error(kinds) retries only matching llm.Errors and returns others unwrapped", function()
      local other = llm_err{ kind = "auth", message = "bad key" }
      local seq = { llm_err{ kind = "rate_limit" }, llm_err{ kind = "server", status = 500 }, other }
      local i = 0
      local p = R.policy{ retry = R.if_error("rate_limit", "server"), wait = R.wait_none,
                          stop = R.stop_after_attempt(10) }
      local v, err = p:call(function() i = i + 1; return nil, seq[i] end)
      assert.is_nil(v)
      assert.are.equal(other, err)          -- unwrapped, not a "retry" error
      assert.are.equal(3, i)
    end)

    it("a plain error matches only if_error() with no kinds", function()
      local fn, calls = failing(1, "plain")
      local v, err = R.policy{ retry = R.if_error("server"), wait = 0 }:call(fn)
      assert.is_nil(v)
      assert.are.equal("plain", err)
      assert.are.equal(1, calls())

      fn, calls = failing(1, "plain")
      assert.are.equal("ok", (R.policy{ retry = R.if_error(), wait = 0 }:call(fn)))
      assert.are.equal(2, calls())
    end)

    it("a raised error the condition rejects is re-raised", function()
      local calls = 0
      local p = R.policy{ retry = R.if_error("server"), wait = 0 }
      local ok, e = pcall(p.call, p, function() calls = calls + 1; error({ tag = "mine" }) end)
      assert.is_false(ok)
      assert.are.equal("mine", e.tag)
      assert.are.equal(1, calls)
    end)

    it("raised errors are retried like returned ones", function()
      local calls = 0
      local v = R.policy{ wait = 0 }:call(function()
        calls = calls + 1
        if calls < 3 then error("flaky") end
        return "done"
      end)
      assert.are.equal("done", v)
      assert.are.equal(3, calls)
    end)

    it("if_error_matching matches tostring(err) with a Lua pattern", function()
      local fn, calls = failing(2, "HTTP 503 unavailable")
      assert.are.equal("ok", (R.policy{ retry = R.if_error_matching("HTTP 5%d%d"), wait = 0 }:call(fn)))
      assert.are.equal(3, calls())

      fn, calls = failing(2, "HTTP 404")
      local _, err = R.policy{ retry = R.if_error_matching("HTTP 5%d%d"), wait = 0 }:call(fn)
      assert.are.equal("HTTP 404", err)
      assert.are.equal(1, calls())
    end)

    it("if_result retries a success whose value matches", function()
      local calls = 0
      local v = R.policy{ retry = R.if_result(function(x) return x < 3 end), wait = 0,
                          stop = R.stop_after_attempt(10) }:call(function()
        calls = calls + 1
        return calls
      end)
      assert.are.equal(3, v)
      assert.are.equal(3, calls)
    end)

    it("if_not_result retries until pred holds", function()
      local calls = 0
      local v = R.policy{ retry = R.if_not_result(function(x) return x == "ready" end), wait = 0,
                          stop = R.stop_after_attempt(10) }:call(function()
        calls = calls + 1
        return calls == 4 and "ready" or "pending"
      end)
      assert.are.equal("ready", v)
      assert.are.equal(4, calls)
    end)

    it("nil with a non-nil second value is a failure; a lone nil is a result", function()
      local asked = 0
      local p = R.policy{ retry = R.if_result(function() asked = asked + 1; return false end), wait = 0 }
      local v, e = p:call(function() return nil end)
      assert.is_nil(v); assert.is_nil(e)
      assert.are.equal(1, asked)   -- a lone nil reached the result predicate
      p:call(function() return nil, nil end)
      assert.are.equal(2, asked)   -- so does nil, nil
      local fn = failing(1, "x")
      local _, err = p:call(fn)
      assert.are.equal("x", err)   -- not a result: if_result rejects failures, returned unwrapped
    end)

    it("if_any and if_all combine conditions", function()
      local is_none = R.if_result(function(x) return x == "none" end)
      local seq = { "none", nil, "value" }
      local i = 0
      local fn = function() i = i + 1; if i == 2 then return nil, "err" end; return seq[i] end
      assert.are.equal("value", (R.policy{ retry = R.if_any(R.if_error(), is_none), wait = 0 }:call(fn)))
      assert.are.equal(3, i)

      local both = R.if_all(R.if_error(), R.if_error_matching("again"))
      local j = 0
      local _, err = R.policy{ retry = both, wait = 0, stop = R.stop_after_attempt(5) }:call(function()
        j = j + 1
        return nil, j == 1 and "again" or "final"
      end)
      assert.are.equal("final", err)
      assert.are.equal(2, j)
      assert.is_false(R.if_all(R.if_error(), R.if_result(function() return true end))({ failed = true, error = "e" }))
    end)
  end)

  describe("giving up", function()
    it("returns a retry error with attempts and the last error", function()
      local last = llm_err{ kind = "server", status = 503, message = "down" }
      local i = 0
      local v, err = R.policy{ wait = 0 }:call(function()
        i = i + 1
        return nil, i == 3 and last or "early"
      end)
      assert.is_nil(v)
      assert.is_true(errors.is(err))
      assert.are.equal("retry", err.kind)
      assert.are.equal(3, err.attempts)
      assert.are.equal(last, err.last)
      assert.truthy(tostring(err):find("3 attempts", 1, true))
      assert.truthy(tostring(err):find("down", 1, true))
    end)

    it("wraps a raised last error too, without raising", function()
      local v, err = R.policy{ wait = 0, stop = R.stop_after_attempt(2) }:call(function() error("kaput", 0) end)
      assert.is_nil(v)
      assert.are.equal("retry", err.kind)
      assert.are.equal("kaput", err.last)
    end)

    it("reraise returns the last returned error itself", function()
      local fn = failing(5, "nope")
      local v, err = R.policy{ wait = 0, reraise = true }:call(fn)
      assert.is_nil(v)
      assert.are.equal("nope", err)
    end)

    it("reraise re-raises the last raised error", function()
      local ok, e = pcall(function()
        return R.policy{ wait = 0, reraise = true }:call(function() error({ id = 42 }) end)
      end)
      assert.is_false(ok)
      assert.are.equal(42, e.id)
    end)

    it("retry_error_callback supplies the return values", function()
      local seen
      local a, b = R.policy{ wait = 0, retry_error_callback = function(state)
        seen = state
        return "fallback", state.attempt
      end }:call(failing(5, "x"))
      assert.are.equal("fallback", a)
      assert.are.equal(3, b)
      assert.are.equal("x", seen.error)
    end)

    it("a result still rejected when stopping gives a retry error", function()
      local v, err = R.policy{ retry = R.if_result(function() return true end), wait = 0 }:call(function() return 7 end)
      assert.is_nil(v)
      assert.are.equal("retry", err.kind)
      assert.are.equal(7, err.result)
      assert.is_nil(err.last)
    end)
  end)

  describe("R.policy{} defaults", function()
    it("stops after 3 attempts and waits like the built-in policy", function()
      clock.rand = 0   -- jitter factor 1
      local fn, calls = failing(10, "e")
      local v, err = R.policy{}:call(fn)
      assert.is_nil(v)
      assert.are.equal("retry", err.kind)
      assert.are.equal(3, calls())
      assert_seq({ 0.5, 1 }, clock.sleeps)
    end)

    it("retries any failure except an llm.Error with retryable = false", function()
      local final = llm_err{ kind = "auth", retryable = false }
      local fn, calls = failing(1, final)
      local _, err = R.policy{}:call(fn)
      assert.are.equal(final, err)
      assert.are.equal(1, calls())

      fn, calls = failing(2, llm_err{ kind = "server" })
      assert.are.equal("ok", (R.policy{}:call(fn)))
      assert.are.equal(3, calls())
    end)

    it("does not retry successes", function()
      local calls = 0
      assert.are.equal(false, (R.policy{}:call(function() calls = calls + 1; return false end)))
      assert.are.equal(1, calls)
    end)

    it("rejects unknown options and bad types", function()
      assert.has_error(function() R.policy{ stopp = 1 } end)
      assert.has_error(function() R.policy{ stop = "x" } end)
      assert.has_error(function() R.policy{ before_sleep = 3 } end)
    end)
  end)

  describe("statistics and hooks", function()
    it("statistics describe the latest call", function()
      local p = R.policy{ wait = R.wait_fixed(2), stop = R.stop_after_attempt(5) }
      p:call(failing(3))
      local st = p.statistics
      assert.are.equal(4, st.attempts)
      assert.are.equal(6, st.idle)
      assert.are.equal(100, st.start_time)
      assert.are.equal(6, st.delay_since_first_attempt)
      p:call(failing(0))
      assert.are.equal(1, p.statistics.attempts)
      assert.are.equal(0, p.statistics.idle)
      assert.are.equal(106, p.statistics.start_time)
    end)

    it("before_sleep sees attempt, wait, error and elapsed", function()
      local log = {}
      local p = R.policy{ wait = R.wait_exponential{ multiplier = 1 }, stop = R.stop_after_attempt(3),
        before_sleep = function(s)
          log[#log + 1] = { s.attempt, s.wait, s.error, s.elapsed, s.policy }
        end }
      p:call(failing(5))
      assert.are.equal(2, #log)
      assert.are.same({ 1, 1, "fail 1", 0 }, { log[1][1], log[1][2], log[1][3], log[1][4] })
      assert.are.same({ 2, 2, "fail 2", 1 }, { log[2][1], log[2][2], log[2][3], log[2][4] })
      assert.are.equal(p, log[1][5])
    end)

    it("before runs before each attempt and after after each retried failure", function()
      local events = {}
      local p = R.policy{ wait = 0, stop = R.stop_after_attempt(5),
        before = function(s) events[#events + 1] = "before " .. s.attempt end,
        after = function(s) events[#events + 1] = "after " .. s.attempt end }
      p:call(failing(2))
      assert.are.same({ "before 1", "after 1", "before 2", "after 2", "before 3" }, events)
    end)

    it("the state carries the result for if_result retries", function()
      local results = {}
      local calls = 0
      R.policy{ retry = R.if_result(function(x) return x < 2 end), wait = 0,
                after = function(s) results[#results + 1] = s.result end }:call(function()
        calls = calls + 1; return calls
      end)
      assert.are.same({ 1 }, results)
    end)
  end)

  describe("with, wrap and arguments", function()
    it("call passes arguments and returns every value", function()
      local a, b, c = R.policy{}:call(function(x, y) return x + y, "two", nil end, 1, 2)
      assert.are.equal(3, a); assert.are.equal("two", b); assert.is_nil(c)
      local n = select("#", R.policy{}:call(function() return 1, nil, nil end))
      assert.are.equal(3, n)
    end)

    it("wrap gives a retrying function", function()
      local fn, calls = failing(2)
      local safe = R.policy{ wait = 0 }:wrap(function(x) local v = fn(); return v and (v .. x), v == nil and "e" or nil end)
      assert.are.equal("ok!", (safe("!")))
      assert.are.equal(3, calls())
    end)

    it("with copies the policy, overriding options, with its own statistics", function()
      local p = R.policy{ wait = R.wait_fixed(1), stop = R.stop_after_attempt(2) }
      local q = p:with{ stop = R.stop_after_attempt(4) }
      local fn, calls = failing(10)
      q:call(fn)
      assert.are.equal(4, calls())
      assert_seq({ 1, 1, 1 }, clock.sleeps)          -- wait kept from p
      assert.are.equal(4, q.statistics.attempts)
      assert.are_not.equal(4, p.statistics.attempts)  -- p untouched
      fn, calls = failing(10)
      p:call(fn)
      assert.are.equal(2, calls())
      assert.are.equal(4, q.statistics.attempts)
    end)

    it("each call has its own state when calls interleave", function()
      local p = R.policy{ wait = R.wait_fixed(1), stop = R.stop_after_attempt(3) }
      local inner_err
      local outer_calls = 0
      local v, err = p:call(function()
        outer_calls = outer_calls + 1
        if outer_calls == 1 then
          local _, e = p:call(failing(10))   -- a second call runs in the middle of the first
          inner_err = e
          return nil, "outer"
        end
        return "outer ok"
      end)
      assert.are.equal("outer ok", v); assert.is_nil(err)
      assert.are.equal(3, inner_err.attempts)
      assert.are.equal(2, outer_calls)
    end)
  end)

  describe("the iterator form", function()
    it("retries a block until it succeeds", function()
      local fn, calls = failing(2)
      local p = R.policy{ wait = R.wait_fixed(1) }
      local numbers = {}
      for attempt in p:attempts() do
        numbers[#numbers + 1] = attempt.number
        attempt:run(fn)
      end
      assert.are.same({ 1, 2, 3 }, numbers)
      assert.are.equal(3, calls())
      assert.are.equal("ok", (p:result()))
      assert.are.equal(3, p.statistics.attempts)
      assert_seq({ 1, 1 }, clock.sleeps)
    end)

    it("fail and succeed record outcomes by hand", function()
      local p = R.policy{ wait = 0, stop = R.stop_after_attempt(5) }
      local n = 0
      for attempt in p:attempts() do
        n = n + 1
        if n < 4 then attempt:fail("not yet") else attempt:succeed("got", n) end
      end
      local a, b = p:result()
      assert.are.equal("got", a); assert.are.equal(4, b)
    end)

    it("gives up like call does", function()
      local p = R.policy{ wait = 0 }
      local n = 0
      for attempt in p:attempts() do
        n = n + 1
        attempt:run(function() error("boom", 0) end)
      end
      assert.are.equal(3, n)
      local v, err = p:result()
      assert.is_nil(v)
      assert.are.equal("retry", err.kind)
      assert.are.equal("boom", err.last)
    end)

    it("run returns nil, err when the function raised", function()
      local p = R.policy{ wait = 0, stop = R.stop_after_attempt(1) }
      for attempt in p:attempts() do
        local v, err = attempt:run(function() error("inside", 0) end)
        assert.is_nil(v)
        assert.are.equal("inside", err)
      end
    end)

    it("break keeps the last outcome", function()
      local p = R.policy{ wait = 0, stop = R.stop_after_attempt(5) }
      local n = 0
      for attempt in p:attempts() do   -- luacheck: ignore 512 (leaving with break is the point)
        n = n + 1
        attempt:fail("stop here")
        break
      end
      assert.are.equal(1, n)
      local v, err = p:result()
      assert.is_nil(v)
      assert.are.equal("stop here", err)
    end)
  end)

  describe("R.builtin / R.default", function()
    local function retryable(fields)
      fields.kind = fields.kind or "server"
      fields.retryable = true
      return llm_err(fields)
    end

    it("waits 0.5, 1, 2, 4, 8, 8 without jitter loss at random() = 0", function()
      clock.rand = 0
      local last = retryable{ message = "last" }
      local p = R.builtin(6)
      local calls = 0
      local v, err = p:call(function() calls = calls + 1; return nil, calls == 7 and last or retryable{} end)
      assert.is_nil(v)
      assert_seq({ 0.5, 1, 2, 4, 8, 8 }, clock.sleeps)
      assert.are.equal(7, calls)
      assert.are.equal(last, err)      -- the last error itself, not a "retry" wrapper
    end)

    it("jitters each wait within 75-100 %", function()
      clock.rand = math.random
      for _ = 1, 200 do
        clock.sleeps = {}
        R.builtin(5):call(function() return nil, retryable{} end)
        local base = { 0.5, 1, 2, 4, 8 }
        for i, s in ipairs(clock.sleeps) do
          assert.is_true(s >= 0.75 * base[i] - 1e-12 and s <= base[i] + 1e-12, s)
        end
      end
      clock.rand = 0.999999
      clock.sleeps = {}
      R.builtin(1):call(function() return nil, retryable{} end)
      assert.is_true(clock.sleeps[1] < 0.376)
    end)

    it("honours retry_after exactly", function()
      local p = R.builtin(2)
      p:call(function() return nil, retryable{ kind = "rate_limit", retry_after = 13 } end)
      assert_seq({ 13, 13 }, clock.sleeps)
    end)

    it("does not wait for a retry_after over 60 s", function()
      local e = retryable{ kind = "rate_limit", retry_after = 61 }
      local calls = 0
      local v, err = R.default:call(function() calls = calls + 1; return nil, e end)
      assert.is_nil(v)
      assert.are.equal(e, err)
      assert.are.equal(1, calls)
      assert.are.same({}, clock.sleeps)
    end)

    it("does not retry retryable = false nor plain errors", function()
      local e = llm_err{ kind = "bad_request", status = 400, retryable = false }
      local calls = 0
      local _, err = R.default:call(function() calls = calls + 1; return nil, e end)
      assert.are.equal(e, err)
      assert.are.equal(1, calls)
      calls = 0
      local _, perr = R.default:call(function() calls = calls + 1; return nil, "plain" end)
      assert.are.equal("plain", perr)
      assert.are.equal(1, calls)
    end)

    it("R.default makes 3 attempts and returns the last error", function()
      clock.rand = 0
      local calls = 0
      local errs = {}
      local _, err = R.default:call(function()
        calls = calls + 1
        errs[calls] = retryable{ message = "n" .. calls }
        return nil, errs[calls]
      end)
      assert.are.equal(3, calls)
      assert.are.equal(errs[3], err)
      assert_seq({ 0.5, 1 }, clock.sleeps)
    end)

    it("builtin(0) never retries and a success passes through", function()
      local calls = 0
      R.builtin(0):call(function() calls = calls + 1; return nil, retryable{} end)
      assert.are.equal(1, calls)
      local fn = failing(1, retryable{})
      assert.are.equal("ok", (R.default:call(fn)))
      assert.has_error(function() R.builtin(-1) end)
    end)
  end)
end)
