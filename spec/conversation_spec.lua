-- lua5.1: yes
-- Conversations and one message format across every provider, against the mock server:
-- the request bodies it received show what each turn sent.
local mockmod = require("support.mock")
local json = require("llm.json")
local llm = require("llm")

local mock
setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

local KEY = "sk-test-conv"
local CLIENTS = {
  openai = function(o) return llm.client("openai", { model = "m", base_url = mock.url .. "/v1", api_key = KEY, api = o and o.api }) end,
  responses = function() return llm.client("openai", { model = "m", base_url = mock.url .. "/v1", api_key = KEY, api = "responses" }) end,
  anthropic = function() return llm.client("anthropic", { model = "m", base_url = mock.url, api_key = KEY }) end,
  gemini = function() return llm.client("gemini", { model = "m", base_url = mock.url .. "/v1beta", api_key = KEY }) end,
  ollama = function() return llm.client("ollama", { model = "m", base_url = mock.url }) end,
}
local ORDER = { "openai", "responses", "anthropic", "gemini", "ollama" }

local function bodies()
  local out = {}
  for i, r in ipairs(mock:requests()) do out[i] = assert(json.decode(r.body)) end
  return out
end

-- Every text a request body carries, whatever the provider's shape.
local function texts(v, acc)
  acc = acc or {}
  if type(v) == "string" then acc[#acc + 1] = v
  elseif type(v) == "table" then for _, x in pairs(v) do texts(x, acc) end end
  return acc
end
local function mentions(body, s)
  for _, t in ipairs(texts(body)) do if t:find(s, 1, true) then return true end end
  return false
end

describe("conversation", function()
  for _, name in ipairs(ORDER) do
    it(name .. ": remembers earlier turns, and a failed turn adds nothing", function()
      local conv = CLIENTS[name]():conversation{ system = "You are a pirate." }
      local r1 = assert(conv:send("Hi, I'm Kim"))
      assert.equal("echo: Hi, I'm Kim", r1.text)
      local _, err = conv:send("this fails", { extra_headers = { ["x-mock-fault"] = "status=400" }, max_retries = 0 })
      assert.is_not_nil(err)
      assert.equal(2, #conv.messages)                 -- unchanged by the failure
      local r2 = assert(conv:send("What's my name?"))
      assert.equal("echo: What's my name?", r2.text)
      assert.equal(4, #conv.messages)
      assert.equal("assistant", conv.messages[2].role)
      local b = bodies()
      assert.is_true(mentions(b[1], "You are a pirate."))
      if name == "responses" then
        -- the server keeps the history: only the new turn and the previous response's id
        assert.equal(r1.id, b[3].previous_response_id)
        assert.is_false(mentions(b[3], "Hi, I'm Kim"))
        assert.is_true(mentions(b[3], "What's my name?"))
      else
        assert.is_true(mentions(b[3], "Hi, I'm Kim"))
        assert.is_true(mentions(b[3], "echo: Hi, I'm Kim"))
        assert.is_false(mentions(b[3], "this fails"))
      end
    end)
  end

  it("responses with store = false resends the items instead of chaining", function()
    local conv = CLIENTS.responses():conversation{ store = false }
    assert(conv:send("first"))
    assert(conv:send("second"))
    local b = bodies()
    assert.is_nil(b[2].previous_response_id)
    assert.is_false(b[2].store)
    assert.is_true(mentions(b[2], "first"))
    assert.is_true(mentions(b[2], "echo: first"))
  end)

  it("a streamed turn joins the history only when it completes", function()
    local conv = CLIENTS.anthropic():conversation{}
    local s = assert(conv:stream("streamed hello"))
    assert.equal(0, #conv.messages)
    assert(s:final())
    assert.equal(2, #conv.messages)
    local bad = assert(conv:stream("cut", { extra_headers = { ["x-mock-fault"] = "reset-after-events=4" }, max_retries = 0 }))
    assert.is_nil(bad:final())
    assert.equal(2, #conv.messages)
  end)
end)

describe("one tool table and one message list for every provider", function()
  local weather = { name = "get_weather", description = "Current weather for a city",
                    parameters = { type = "object", properties = { city = { type = "string" } }, required = { "city" } },
                    run = function(args) return { city = args.city, celsius = 21 } end }
  local function history()
    return {
      { role = "user", content = "Weather in Seoul?" },
      { role = "assistant", content = "", tool_calls = {
        { id = "call_1", name = "get_weather", arguments = { city = "Seoul" }, arguments_json = '{"city":"Seoul"}' } } },
      { role = "tool", tool_call_id = "call_1", name = "get_weather", content = '{"city":"Seoul","celsius":21}' },
      { role = "user", content = "And is that warm?" },
    }
  end

  for _, name in ipairs(ORDER) do
    it(name .. " accepts the same tools and history unchanged", function()
      local messages = history()
      local before = json.encode(messages)
      local resp = assert(CLIENTS[name]():chat{ messages = messages, tools = { weather } })
      assert.equal("echo: And is that warm?", resp.text)
      assert.equal(before, json.encode(messages))     -- the caller's list is not modified
      local b = bodies()[1]
      assert.is_true(mentions(b, "get_weather"))
      assert.is_true(mentions(b, "Seoul"))
      -- each provider's own shapes for a tool definition and a tool result
      if name == "openai" then
        assert.equal("function", b.tools[1].type)
        assert.equal("tool", b.messages[3].role)
        assert.equal("call_1", b.messages[3].tool_call_id)
      elseif name == "responses" then
        assert.equal("function", b.tools[1].type)
        assert.equal("get_weather", b.tools[1].name)
        local kinds = {}
        for _, item in ipairs(b.input) do kinds[item.type or item.role] = item end
        assert.equal("call_1", kinds.function_call.call_id)
        assert.equal("call_1", kinds.function_call_output.call_id)
      elseif name == "anthropic" then
        assert.equal("object", b.tools[1].input_schema.type)
        assert.equal("tool_use", b.messages[2].content[1].type)
        assert.equal("tool_result", b.messages[3].content[1].type)
      elseif name == "gemini" then
        assert.equal("get_weather", b.tools[1].functionDeclarations[1].name)
        assert.equal("get_weather", b.contents[2].parts[1].functionCall.name)
        assert.equal("get_weather", b.contents[3].parts[1].functionResponse.name)
      elseif name == "ollama" then
        assert.equal("function", b.tools[1].type)
        assert.equal("tool", b.messages[3].role)
        assert.equal("Seoul", b.messages[2].tool_calls[1]["function"].arguments.city)
      end
    end)
  end
end)
