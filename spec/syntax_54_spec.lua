-- What only Lua 5.4 syntax can say (API §11): `<close>` on streams and framers, and the
-- retry operators `|` and `&` (bitwise metamethods, which LuaJIT lacks; it keeps the
-- function forms R.stop_any / R.if_any ..., tested in retry_spec). Runs on Lua 5.4 only.
local mockmod = require("support.mock")
local core = require("llm.core")
local llm = require("llm")
local make_retry = require("llm.retry")

local KEY = "sk-test-SECRET-0123456789abcdef"

describe("<close>", function()
  local mock
  setup(function() mock = mockmod.start() end)
  teardown(function() if mock then mock:stop() end end)

  it("closes a stream at the end of its scope: the transfer is freed", function()
    local c = llm.client("openai", { model = "gpt-test", base_url = mock.url .. "/v1", api_key = KEY,
                                     headers = { ["x-mock-fault"] = "stall-after-events=2" } })
    local s_ref
    do
      local s <close> = assert(c:stream("x"))
      assert(s:next())
      s_ref = s
    end
    local _, err = s_ref:final()
    assert.equal("cancelled", err.kind)
    collectgarbage(); collectgarbage()
    assert.equal(0, llm.loop:stats().transfers)
  end)

  it("closes a framer at the end of its scope", function()
    local g_ref
    do
      local g <close> = core.framer("sse")
      g:feed("data: x\n")
      g_ref = g
    end
    assert.equal("llm.Framer (closed)", tostring(g_ref))
  end)
end)

describe("retry operators", function()
  local clock, R
  before_each(function()
    clock = { t = 100 }
    function clock.now() return clock.t end
    function clock.sleep(s) clock.t = clock.t + s end
    function clock.random() return 0.5 end
    R = make_retry(clock)
  end)

  -- fn failing (nil, err) every time; counts its calls.
  local function failing()
    local calls = 0
    return function() calls = calls + 1; return nil, "fail" end, function() return calls end
  end

  it("| and & combine stops", function()
    local fn, calls = failing()
    R.policy{ stop = R.stop_after_attempt(3) | R.stop_after_delay(1), wait = 1 }:call(fn)
    assert.are.equal(2, calls())

    fn, calls = failing()
    R.policy{ stop = R.stop_after_attempt(3) & R.stop_after_delay(1), wait = 1 }:call(fn)
    assert.are.equal(3, calls())
  end)

  it("| and & combine conditions", function()
    local is_none = R.if_result(function(x) return x == "none" end)
    local seq = { "none", nil, "value" }
    local i = 0
    local fn = function() i = i + 1; if i == 2 then return nil, "err" end; return seq[i] end
    assert.are.equal("value", (R.policy{ retry = R.if_error() | is_none, wait = 0 }:call(fn)))
    assert.are.equal(3, i)

    local both = R.if_error() & R.if_error_matching("again")
    local j = 0
    local _, err = R.policy{ retry = both, wait = 0, stop = R.stop_after_attempt(5) }:call(function()
      j = j + 1
      return nil, j == 1 and "again" or "final"
    end)
    assert.are.equal("final", err)
    assert.are.equal(2, j)
  end)
end)
