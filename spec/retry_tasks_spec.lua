-- llm.retry on the scheduler and against the mock server: sleeping yields inside tasks, a
-- policy's waits follow what the server asked, and the client's built-in retries are the
-- default policy of this module. Time is read from a fake clock and the server's timestamps.
local mockmod = require("support.mock")
local llm_mod = require("llm")
local clockmod = require("llm.clock")
local V = require("support.version")

local mock
setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

describe("retry policies in tasks", function()
  it("50 tasks retrying under one llm.run overlap: the run takes the longest backoff, not the sum", function()
    local clock = clockmod.fake(0)
    local llm = llm_mod.new{ clock = clock }
    local R = llm.retry
    local attempts = {}
    local function flaky(i)
      attempts[i] = (attempts[i] or 0) + 1
      if attempts[i] < 3 then return nil, "transient " .. i end   -- fails twice, then succeeds
      return i
    end
    local results, errs = llm.run(function()
      local tasks = {}
      for i = 1, 50 do
        local policy = R.policy{ stop = R.stop_after_attempt(5), wait = R.wait_fixed(1) + R.wait_fixed(0.01 * i) }
        tasks[i] = llm.spawn(function() return policy:call(flaky, i) end)
      end
      return llm.gather(V.unpack(tasks))
    end)
    for i = 1, 50 do
      assert.equal(i, results[i])
      assert.equal(3, attempts[i])
    end
    assert.same({}, errs)
    -- each task slept twice (1 + 0.01 i); the longest is task 50: 2 * 1.5 = 3 s, the sum would be ~125 s
    assert.is_true(math.abs(clock:now() - 3.0) < 1e-9)
  end)

  it("sleeping outside a task blocks on the clock and never busy-waits", function()
    local clock = clockmod.fake(0)
    local llm = llm_mod.new{ clock = clock }
    local R = llm.retry
    local n = 0
    local policy = R.policy{ stop = R.stop_after_attempt(4), wait = R.wait_exponential{ multiplier = 1 } }
    local _, err = policy:call(function() n = n + 1; error("always") end)
    assert.equal("retry", err.kind)
    assert.equal(4, n)
    assert.equal(1 + 2 + 4, clock:now())
    assert.equal(7, policy.statistics.idle)
    local waits = llm.loop:stats()
    assert.equal(0, waits.blocking_waits)     -- virtual time: the loop never blocked
  end)
end)

describe("retry policies against the mock server", function()
  local function client(lib, opts)
    local o = { model = "m", base_url = mock.url .. "/v1", api_key = "sk-test" }
    for k, v in pairs(opts or {}) do o[k] = v end
    return lib.client("openai", o)
  end

  it("wait_retry_after waits what the server asked (fake clock)", function()
    local clock = clockmod.fake(0)
    local llm = llm_mod.new{ clock = clock }
    local R = llm.retry
    local policy = R.policy{ stop = R.stop_after_attempt(3), wait = R.wait_retry_after(R.wait_fixed(10)) }
    local c = client(llm, { retry = policy, headers = { ["x-mock-sequence"] = "status=429;retry-after=2|status=503|ok",
                                                        ["x-mock-key"] = "wra-fake" } })
    assert(c:chat("hi"))
    assert.equal(3, #mock:requests())
    assert.equal(2 + 10, clock:now())       -- 2 s asked by the server, then the fallback
  end)

  it("wait_retry_after: the server's request timestamps show the wait", function()
    local llm = require("llm")
    local R = llm.retry
    local policy = R.policy{ stop = R.stop_after_attempt(2), wait = R.wait_retry_after(R.wait_fixed(5)) }
    local c = client(llm, { retry = policy, headers = { ["x-mock-sequence"] = "status=429;retry-after-ms=400|ok",
                                                        ["x-mock-key"] = "wra-real" } })
    assert(c:chat("hi"))
    local reqs = mock:requests()
    assert.equal(2, #reqs)
    local gap = reqs[2].t - reqs[1].t
    assert.is_true(gap >= 0.39, "waited " .. gap)
    assert.is_true(gap < 5)                 -- the server's value, not the fallback
  end)

  it("a max_retries other than 2 builds its built-in policy once, not on every call", function()
    local llm = require("llm")
    local c = client(llm)
    local p0 = c:policy({ max_retries = 0 })
    assert.equal(p0, c:policy({ max_retries = 0 }))
    assert.not_equal(p0, c:policy({ max_retries = 1 }))
    assert.equal(c:policy({ max_retries = 1 }), c:policy({ max_retries = 1 }))
    assert.equal(llm.retry.default, c:policy({ max_retries = 2 }))
  end)

  it("the built-in retry is llm.retry.default: one engine, not two", function()
    local llm = require("llm")
    local c = client(llm)
    assert.equal(llm.retry.default, c:policy({}))
    -- a client runs its calls through call_hooked: policy:call plus its on_retry observer
    local calls = 0
    local real_call = llm.retry.default.call_hooked
    llm.retry.default.call_hooked = function(self, on_sleep, fn, ...)
      calls = calls + 1
      return real_call(self, on_sleep, fn, ...)
    end
    local ok, err = pcall(function()
      assert(c:chat("x"))
      assert(c:stream("y")):final()
    end)
    llm.retry.default.call_hooked = nil     -- back to the method of the policy class
    assert.is_true(ok, tostring(err))
    assert.equal(2, calls)
    assert.equal(llm.retry.default.call_hooked, real_call)
  end)
end)
