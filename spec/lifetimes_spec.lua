-- Callbacks, cancellation and lifetimes: a user callback breaks only its own call, a call
-- cancelled between retries returns nil, err, an interrupt is never retried, and the
-- state of one call never lives on a shared policy.
local mockmod = require("support.mock")
local llm = require("llm")

local KEY = "sk-test-lifetimes-0123456789"
local mock

setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

local function openai(lib, opts)
  local o = { model = "m", base_url = mock.url .. "/v1", api_key = KEY }
  for k, v in pairs(opts or {}) do o[k] = v end
  return lib.client("openai", o)
end

describe("user callbacks", function()
  it("a log function that raises breaks no call, its own or another", function()
    local L = llm.new()
    local calls = 0
    L.configure{ log = function() calls = calls + 1; error("the sink broke") end }
    local c = openai(L, { max_retries = 0 })
    local results, errs = L.run(function()
      return L.gather(function() return c:chat("one") end,
                      function() return c:chat("two") end,
                      function() return assert(c:stream("three four")):final() end)
    end)
    assert.same({}, errs)
    assert.equal("echo: one", results[1].text)
    assert.equal("echo: two", results[2].text)
    assert.equal("echo: three four", results[3].text)
    assert.is_true(calls > 3)                 -- it was called (requests and libcurl's text)
  end)

  it("an on_event that raises fails its own stream only", function()
    local L = llm.new()
    local c = openai(L)
    local results, errs = L.run(function()
      local a = L.spawn(function()
        local s = assert(c:stream("a b c"))
        s.on_event = function() error("mine", 0) end
        return s:final()
      end)
      local b = L.spawn(function() return assert(c:stream("d e f")):final() end)
      return L.gather(a, b)
    end)
    assert.equal("mine", errs[1])
    assert.equal("echo: d e f", results[2].text)
  end)
end)

describe("cancellation", function()
  it("cancelling a call while it waits between retries returns nil, err (cancelled)", function()
    local L = llm.new()
    local sleeping = false
    local policy = L.retry.policy{ wait = L.retry.wait_fixed(30), stop = L.retry.stop_after_attempt(3),
                                   before_sleep = function() sleeping = true end }
    local c = openai(L, { retry = policy, headers = { ["x-mock-fault"] = "status=503" } })
    local got
    L.run(function()
      local t = L.spawn(function() got = { c:chat("x") } end)
      for _ = 1, 1000 do
        if sleeping then break end
        L.sleep(0.01)
      end
      assert.is_true(sleeping)
      L.sleep(0.01)                            -- the task is now in its 30 s backoff
      t:cancel()
      L.await(t)
      assert.is_nil(t.failed)                  -- it returned; nothing was raised
    end)
    assert.is_nil(got[1])
    assert.equal("cancelled", got[2].kind)
    assert.equal(1, #mock:requests())
  end)

  it("the built-in policy does the same", function()
    local L = llm.new()
    local c = openai(L, { headers = { ["x-mock-fault"] = "status=503;retry-after=30" } })
    local got
    L.run(function()
      local t = L.spawn(function() got = { c:chat("x") } end)
      for _ = 1, 1000 do
        if #mock:requests() >= 1 then break end
        L.sleep(0.01)
      end
      L.sleep(0.05)                            -- the 503 is in: the task sleeps 30 s
      t:cancel()
      L.await(t)
      assert.is_nil(t.failed)
    end)
    assert.is_nil(got[1])
    assert.equal("cancelled", got[2].kind)
    assert.equal(1, #mock:requests())
  end)

  it("an interrupt is never retried, even by a policy that retries any error", function()
    local R = llm.retry
    for _, cond in ipairs{ R.if_error(), function() return true end } do
      local n = 0
      local p = R.policy{ retry = cond, wait = 0, stop = R.stop_after_attempt(5) }
      local ok, err = pcall(p.call, p, function() n = n + 1; error("stdin:1: interrupted!", 0) end)
      assert.is_false(ok)
      assert.matches("interrupted!", err, 1, true)
      assert.equal(1, n)
      -- a cancelled call is not retried either
      n = 0
      local v, e = p:call(function() n = n + 1; return nil, { kind = "cancelled" } end)
      assert.is_nil(v)
      assert.equal("cancelled", e.kind)
      assert.equal(1, n)
    end
  end)
end)

describe("lifetimes", function()
  it("a stream dropped without close() is collected; the default policy keeps no call alive", function()
    local c = openai(llm, { headers = { ["x-mock-fault"] = "stall-after-events=3" } })
    local weak = setmetatable({}, { __mode = "v" })
    local transfers = llm.loop:stats().transfers
    do
      local s = assert(c:stream("a b c d"))
      assert.is_truthy(s:next())
      weak[1] = s
    end
    for _ = 1, 3 do collectgarbage() end
    assert.is_nil(weak[1])
    assert.equal(transfers, llm.loop:stats().transfers)      -- its transfer went with it
    assert.equal(1, llm.retry.default.statistics.attempts)   -- statistics still describe it
    assert.is_nil(rawget(llm.retry.default, "_run"))
  end)
end)
