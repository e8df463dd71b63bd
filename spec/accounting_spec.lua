-- lua5.1: yes
-- Accounting (API §12): cache and reasoning usage on every route.
local mock = require("llm.mock")

local m
setup(function() m = assert(mock.start()) end)
teardown(function() if m then m:stop() end end)
before_each(function() m:reset() end)

local function drain(s)
  local usage_events = {}
  for ev in s:events() do
    if ev.type == "usage" then usage_events[#usage_events + 1] = ev.usage end
  end
  return usage_events
end

------------------------------------------------------------------------------------------
describe("usage fields", function()
  -- What each route reports when the mock is told these normalized counts: the provider's
  -- own fields (docs/mock.md) read back by the client.
  local ROUTES = {
    { "openai", {}, { input_tokens = 20, output_tokens = 9, cached_input_tokens = 12, reasoning_tokens = 4 } },
    { "openai", { api = "responses" },
      { input_tokens = 20, output_tokens = 9, cached_input_tokens = 12, reasoning_tokens = 4 } },
    { "anthropic", {}, { input_tokens = 20, output_tokens = 9, cached_input_tokens = 12,
                         cache_creation_input_tokens = 5 } },
    { "gemini", {}, { input_tokens = 20, output_tokens = 9, cached_input_tokens = 12, reasoning_tokens = 4 } },
    { "ollama", {}, { input_tokens = 20, output_tokens = 9 } },
  }

  it("cached, cache-creation and reasoning tokens on every route, chat and stream", function()
    for _, r in ipairs(ROUTES) do
      local name, opts, usage = r[1], r[2], r[3]
      local what = name .. (opts.api and " responses" or "")
      local want = {}
      for k, v in pairs(usage) do want[k] = v end
      want.total_tokens = usage.input_tokens + usage.output_tokens
      local c = m:client(name, opts)
      m:push{ text = "hi", usage = usage }
      local resp = assert(c:chat("x"))
      assert.same(want, resp.usage, what)
      m:push{ text = { "h", "i" }, usage = usage }
      local s = assert(c:stream("x"))
      local evs = drain(s)
      assert.same(want, evs[#evs], what .. " (last usage event)")
      assert.same(want, assert(s:final()).usage, what .. " (stream)")
    end
  end)

  it("x-mock-usage sets the usage of an echoed or scripted reply", function()
    local c = m:client("gemini", { headers = { ["x-mock-usage"] = "input_tokens=30,output_tokens=8,cached_input_tokens=20,reasoning_tokens=3" } })
    assert.same({ input_tokens = 30, output_tokens = 8, total_tokens = 38, cached_input_tokens = 20, reasoning_tokens = 3 },
      assert(c:chat("x")).usage)
    c = m:client("openai", { headers = { ["x-mock-usage"] = "input_tokens=30,output_tokens=8,cached_input_tokens=20",
                                         ["x-mock-script"] = "add", ["x-mock-key"] = "usage-" .. os.time() } })
    local r = assert(c:chat("x"))
    assert.equal("add", r.tool_calls[1].name)
    assert.same({ input_tokens = 30, output_tokens = 8, total_tokens = 38, cached_input_tokens = 20 }, r.usage)
  end)

  it("the wire carries each provider's own fields", function()
    local c = m:client("anthropic")
    m:push{ text = "hi", usage = { input_tokens = 7, output_tokens = 2, cached_input_tokens = 30,
                                   cache_creation_input_tokens = 3 } }
    local resp = assert(c:chat("x"))
    assert.same({ input_tokens = 7, output_tokens = 2, cache_read_input_tokens = 30,
                  cache_creation_input_tokens = 3 }, resp.raw.usage)
    local g = m:client("gemini")
    m:push{ text = "hi", usage = { input_tokens = 20, output_tokens = 9, cached_input_tokens = 12, reasoning_tokens = 4 } }
    local u = assert(g:chat("x")).raw.usageMetadata
    assert.equal(20, u.promptTokenCount)          -- the cached tokens are part of the prompt
    assert.equal(12, u.cachedContentTokenCount)
    assert.equal(5, u.candidatesTokenCount)       -- thoughts are counted apart
    assert.equal(4, u.thoughtsTokenCount)
  end)
end)

