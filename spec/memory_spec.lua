-- lua5.1: yes
-- What many concurrent streams cost in memory: libcurl's receive buffer per transfer, and
-- what a stream keeps in Lua. Asserted from the loop's counters, the transfers' own fields
-- and collectgarbage("count"), never from the wall clock.
local mockmod = require("support.mock")
local net = require("support.net")

local llm = require("llm")

local mock

setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

local BODY = '{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}'

describe("libcurl's receive buffer", function()
  it("is libcurl's 16 KiB for the first 16 transfers running at once and 1 KiB beyond, as libcurl reads", function()
    -- 24 requests whose replies (about 40 KiB each, one write of the server) come after a
    -- pause: all 24 start in one step and are still running when the 17th starts.
    local L = llm.new()
    local text = string.rep("lorem ipsum dolor sit amet ", 1500)
    local ts = {}
    for i = 1, 24 do
      ts[i] = L.loop:transfer({ method = "POST", url = mock.url .. "/v1/chat/completions", body = BODY,
        headers = { ["content-type"] = "application/json", ["x-mock-text"] = text,
                    ["x-mock-headers-delay-ms"] = "300" } })
    end
    local done = net.run_transfers(L.loop, 24, function(rec)
      assert.is_nil(rec.error)
      assert.is_true(#rec.body > 40000)
    end)
    assert.equal(24, done)
    local full, small = 0, 0
    for _, t in ipairs(ts) do
      if t.buffer_size == 1024 then
        small = small + 1
        assert.is_true(t.max_chunk <= 1024, "a 1 KiB buffer brought " .. t.max_chunk)   -- libcurl obeyed
      else
        assert.equal(16384, t.buffer_size)
        full = full + 1
        assert.is_true(t.max_chunk > 1024, "a 16 KiB buffer brought at most " .. t.max_chunk)
      end
      t:close()
    end
    assert.equal(16, full)
    assert.equal(8, small)
    local st = L.loop:stats()
    assert.equal(8, st.small_buffers)
    assert.equal(0, st.attached)
  end)

  it("is the full one again for a transfer started alone", function()
    local L = llm.new()
    local t = L.loop:transfer({ method = "POST", url = mock.url .. "/v1/chat/completions", body = BODY,
      headers = { ["content-type"] = "application/json",
                  ["x-mock-text"] = string.rep("x ", 20000) } })
    assert.equal(1, net.run_transfers(L.loop, 1))
    assert.equal(16384, t.buffer_size)
    assert.is_true(t.max_chunk > 1024)
    assert.equal(0, L.loop:stats().small_buffers)
    t:close()
  end)
end)

describe("the pieces of a streamed reply", function()
  local core = require("llm.core")

  it("become one string every 16 pieces; table.concat gives the same text", function()
    local list, want = {}, {}
    for i = 1, 100 do
      local s = "p" .. i .. " "
      core.add_piece(list, s)
      want[i] = s
    end
    assert.equal(table.concat(want), table.concat(list))
    assert.equal(6, list.chunks)                 -- 6 x 16 pieces joined, 4 still apart
    assert.equal(10, #list)
    assert.equal(table.concat(want, "", 1, 16), list[1])
  end)

  it("keep a stream of 200 text deltas in a list of at most 28 strings, on the fast path and off it", function()
    for _, delay in ipairs({ "0", "2" }) do   -- whole batches (the C fast path) and single events
      local c = llm.client("openai", { model = "m", base_url = mock.url .. "/v1", api_key = "sk-test",
        headers = { ["x-mock-events"] = "200", ["x-mock-delay-ms"] = delay } })
      local s = assert(c:stream("hi"))
      local texts = {}
      local list = s.state.choices[0].text
      local longest = 0
      for ev in s:events() do
        if ev.type == "text" then texts[#texts + 1] = ev.text end
        if #list > longest then longest = #list end
      end
      assert.equal(200, #texts)
      assert.equal(table.concat(texts), s:final().text)
      assert.is_true(longest <= 200 / 16 + 16, "the list held " .. longest .. " strings")
      assert.equal(12, list.chunks)
    end
  end)
end)

describe("a chat stream's state", function()
  it("holds no reasoning, refusal or tool-call lists until such a delta comes", function()
    local c = llm.client("openai", { model = "m", base_url = mock.url .. "/v1", api_key = "sk-test",
      headers = { ["x-mock-events"] = "20" } })
    local s = assert(c:stream("hi"))
    local choice = s.state.choices[0]
    local texts = 0
    for ev in s:events() do if ev.type == "text" then texts = texts + 1 end end
    assert.equal(20, texts)
    assert.is_nil(choice.reasoning)
    assert.is_nil(choice.refusal)
    assert.is_nil(choice.calls)
    assert.is_nil(choice.by_index)
    local resp = s:final()
    assert.is_nil(resp.reasoning)
    assert.is_nil(resp.refusal)
    assert.same({}, resp.tool_calls)
  end)
end)
