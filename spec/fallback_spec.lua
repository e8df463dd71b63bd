-- llm.fallback (API §13) on a fake clock against the mock server: a call moves to the next
-- client when one fails with a listed kind before any content reached the caller, the failed
-- client is skipped until its cooldown ends, and resp.provider names who answered.
local support = require("support.mock")
local llm_mod = require("llm")
local clockmod = require("llm.clock")

local server, mock
setup(function() server = support.start(); mock = server.server end)
teardown(function() if server then server:stop() end end)
before_each(function() mock:reset() end)

local function instance()
  local clock = clockmod.fake(0)
  return llm_mod.new{ clock = clock }, clock
end

-- Which provider each request went to, in order.
local function routes()
  local out = {}
  for _, r in ipairs(mock:requests()) do
    out[#out + 1] = r.path:find("/v1/messages", 1, true) and "anthropic" or "openai"
  end
  return out
end

-- An Anthropic client that always answers 529 (or what `fault` says), and an OpenAI one that echoes.
local function pair(L, fault, opts)
  local a = mock:client("anthropic", { llm = L, max_retries = 0,
                                       headers = { ["x-mock-fault"] = fault or "status=529" } })
  local b = mock:client("openai", { llm = L, max_retries = 0 })
  opts = opts or {}
  opts[1], opts[2] = a, b
  return L.fallback(opts), a, b
end

describe("llm.fallback", function()
  it("checks its arguments", function()
    local L = instance()
    local c = mock:client("openai", { llm = L })
    assert.matches("not a client", select(2, pcall(L.fallback, { c, "gpt" })))
    assert.matches("unknown option coolddown %(did you mean 'cooldown'%?%)",
      select(2, pcall(L.fallback, { c, coolddown = 3 })))
    assert.matches("at least one client", select(2, pcall(L.fallback, {})))
    assert.matches("cooldown must be", select(2, pcall(L.fallback, { c, cooldown = -1 })))
  end)

  it("sets resp.provider on every response, fallback or not", function()
    local L = instance()
    local c = mock:client("gemini", { llm = L })
    assert.equal("gemini", assert(c:chat("hi")).provider)
    local s = assert(c:stream("hi"))
    assert.equal("gemini", assert(s:final()).provider)
  end)

  it("serves from the second client while the first answers 529, and skips the first until its cooldown ends", function()
    local L, clock = instance()
    local fb = pair(L)
    local r = assert(fb:chat("one"))
    assert.equal("openai", r.provider)
    assert.equal("echo: one", r.text)
    assert.same({ "anthropic", "openai" }, routes())
    -- cooling down: the first is not asked again
    r = assert(fb:chat("two"))
    assert.equal("openai", r.provider)
    L.sleep(29.5)
    assert(fb:chat("three"))
    assert.same({ "anthropic", "openai", "openai", "openai" }, routes())
    -- the cooldown (30 s) is over: the first is tried again
    L.sleep(1)
    assert.is_true(clock:now() > 30)
    assert(fb:chat("four"))
    assert.same({ "anthropic", "openai", "openai", "openai", "anthropic", "openai" }, routes())
  end)

  it("goes back to the first client once it answers again", function()
    local L = instance()
    local a = mock:client("anthropic", { llm = L, max_retries = 0,
      headers = { ["x-mock-sequence"] = "status=529|ok", ["x-mock-key"] = "fb-back" } })
    local b = mock:client("openai", { llm = L, max_retries = 0 })
    local fb = L.fallback{ a, b, cooldown = 5 }
    assert.equal("openai", assert(fb:chat("one")).provider)
    L.sleep(5)
    assert.equal("anthropic", assert(fb:chat("two")).provider)
    assert.equal("anthropic", assert(fb:chat("three")).provider)
    assert.same({ "anthropic", "openai", "anthropic", "anthropic" }, routes())
  end)

  it("a kind that is not listed is returned, not moved on", function()
    local L = instance()
    local fb = pair(L, "status=400", { on = { "overloaded" } })
    local r, err = fb:chat("x")
    assert.is_nil(r)
    assert.equal("bad_request", err.kind)
    assert.same({ "anthropic" }, routes())
  end)

  it("counts retries that ran out by their last error", function()
    local L = instance()
    local a = mock:client("anthropic", { llm = L, max_retries = 1,
                                         headers = { ["x-mock-fault"] = "status=529" } })
    local b = mock:client("openai", { llm = L, max_retries = 0 })
    local fb = L.fallback{ a, b }
    assert.equal("openai", assert(fb:chat("x")).provider)
    assert.same({ "anthropic", "anthropic", "openai" }, routes())
  end)

  it("when every client cools down, tries the one whose cooldown ends first", function()
    local L = instance()
    local a = mock:client("anthropic", { llm = L, max_retries = 0, headers = { ["x-mock-fault"] = "status=529" } })
    local b = mock:client("openai", { llm = L, max_retries = 0, headers = { ["x-mock-fault"] = "status=503" } })
    local fb = L.fallback{ a, b, cooldown = 30 }
    assert.is_nil(fb:chat("t0"))                 -- a cools until 30, b until 30
    L.sleep(10)
    assert.is_nil(fb:chat("t10"))                -- both cooling: a first (tie, in order) → a until 40
    L.sleep(5)
    local _, err = fb:chat("t15")                -- b ends first (30 < 40)
    assert.equal("server", err.kind)
    assert.same({ "anthropic", "openai", "anthropic", "openai" }, routes())
  end)

  it("streams move on before content: an HTTP error or an error event ahead of the first content", function()
    local L = instance()
    local fb = pair(L)
    local s = assert(fb:stream("one"))
    assert.equal("openai", assert(s:final()).provider)
    local fb2 = pair(L, "overloaded-event")
    s = assert(fb2:stream("two"))
    local r = assert(s:final())
    assert.equal("openai", r.provider)
    assert.equal("echo: two", r.text)
    assert.same({ "anthropic", "openai", "anthropic", "openai" }, routes())
  end)

  it("a stream that failed after content stays with its client: the error is its last event", function()
    local L = instance()
    local fb = pair(L, "error-after-events=4")
    local s = assert(fb:stream("a b c d e f"))
    local texts, last = {}, nil
    for ev in s:events() do
      if ev.type == "text" then texts[#texts + 1] = ev.text end
      last = ev
    end
    assert.is_true(#texts > 0)
    assert.equal("error", last.type)
    assert.same({ "anthropic" }, routes())
  end)

  it("conversations and run_tools go through the fallback", function()
    local L = instance()
    local fb = pair(L)
    local conv = fb:conversation{ system = "Be brief." }
    local r = assert(conv:send("hello"))
    assert.equal("openai", r.provider)
    assert.equal(2, #conv.messages)
    local tool = L.tool{ name = "noop", description = "does nothing",
                         parameters = { type = "object", properties = {} }, run = function() return "ok" end }
    r = assert(fb:run_tools{ messages = { { role = "user", content = "hi" } }, tools = { tool } })
    assert.equal("openai", r.provider)
    assert.equal("echo: hi", r.text)
    assert.same({ "anthropic", "openai", "openai" }, routes())
  end)

  it("is itself a client for another fallback", function()
    local L = instance()
    local inner = pair(L)
    local c = mock:client("gemini", { llm = L })
    local outer = L.fallback{ inner, c }
    assert.equal("openai", assert(outer:chat("x")).provider)
  end)
end)
