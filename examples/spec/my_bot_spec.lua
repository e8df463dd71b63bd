-- A spec for your own code that uses llm, against the mock server: no network, no key, no
-- money. Copy this file into your project's spec/ folder and adapt `ask` to your code.
--   busted --lua=lua5.4 spec/my_bot_spec.lua     (with the llm rock installed)
-- llm.mock starts llm-mock on a free loopback port; m:push queues the replies it gives, in
-- order; m:requests() says what your code sent. See docs/mock.md.
local mock = require("llm.mock")

-- The code under test: a tiny bot that asks one question and turns failures into a reply.
local function ask(client, question)
  local resp, err = client:chat{
    system = "You are a terse assistant.",
    messages = { { role = "user", content = question } },
  }
  if not resp then return "sorry (" .. err.kind .. ")" end
  return resp.text
end

describe("my bot", function()
  local m

  setup(function() m = assert(mock.start()) end)
  teardown(function() m:stop() end)
  before_each(function() m:reset() end)

  it("answers with the model's text", function()
    m:push{ text = "Paris." }
    local client = m:client("anthropic")
    assert.equal("Paris.", ask(client, "Capital of France?"))
  end)

  it("sends the system prompt and the question", function()
    local client = m:client("openai")
    ask(client, "Capital of France?")
    local req = m:requests()[1]
    assert.equal("POST", req.method)
    assert.equal("/v1/chat/completions", req.path)
    local messages = req.json.messages
    assert.equal("system", messages[1].role)
    assert.equal("Capital of France?", messages[#messages].content)
  end)

  it("retries when the server is overloaded, then answers", function()
    m:push{ status = 529, error = { type = "overloaded_error", message = "Overloaded" } }
    m:push{ text = "Still here." }
    local client = m:client("anthropic", { max_retries = 2 })
    assert.equal("Still here.", ask(client, "Hello?"))
    assert.equal(2, #m:requests())
  end)

  it("says sorry on a bad key instead of crashing", function()
    m:push{ status = 401, error = { type = "authentication_error", message = "invalid x-api-key" } }
    local client = m:client("anthropic", { max_retries = 0 })
    assert.equal("sorry (auth)", ask(client, "Hello?"))
  end)

  it("works the same on every provider", function()
    for _, provider in ipairs({ "openai", "anthropic", "gemini", "ollama" }) do
      m:push{ text = "Hi from " .. provider }
      assert.equal("Hi from " .. provider, ask(m:client(provider), "Hi"))
    end
  end)

  it("echoes the question when no reply is queued", function()
    assert.equal("echo: ping", ask(m:client("gemini"), "ping"))
  end)
end)
