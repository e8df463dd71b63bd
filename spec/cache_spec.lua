-- Prompt caching on the wire (API §12): `cache = true` on parts and on requests becomes
-- Anthropic cache_control breakpoints; OpenAI and Gemini cache on their own and get no cache
-- field; prompt_cache_key goes to OpenAI (Chat Completions and Responses).
local llm = require("llm")
local mockmod = require("support.mock")

local mock
setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock.server:reset() end)

local function client(provider, opts)
  return mock.server:client(provider, mockmod.merge({ max_retries = 0 }, opts))
end

local function last()
  local reqs = mock.server:requests()
  return reqs[#reqs]
end

local EPHEMERAL = { type = "ephemeral" }
local weather = llm.tool{ name = "weather", description = "Weather for a city",
  parameters = { type = "object", properties = { city = { type = "string" } } }, run = function() return "sun" end }

local LONG = string.rep("The manual says many things. ", 40)

describe("cache breakpoints: Anthropic", function()
  it("a part with cache = true gets cache_control on its block", function()
    local resp = assert(client("anthropic"):chat{ messages = { { role = "user", content = {
      { type = "text", text = LONG, cache = true }, { type = "text", text = "What does it say?" } } } } })
    local content = last().json.messages[1].content
    assert.are.same(EPHEMERAL, content[1].cache_control)
    assert.is_nil(content[2].cache_control)
    assert.matches("What does it say%?", resp.text)
  end)

  it("cache = true on the request marks the system prompt, the tools and the last user turn", function()
    local resp = assert(client("anthropic"):chat{ cache = true, system = "You are terse.", tools = { weather },
      messages = { { role = "user", content = "Hi" }, { role = "assistant", content = "Hello." },
                   { role = "user", content = "Weather in Oslo?" } } })
    local body = last().json
    assert.are.same({ { type = "text", text = "You are terse.", cache_control = EPHEMERAL } }, body.system)
    assert.are.same(EPHEMERAL, body.tools[1].cache_control)
    assert.are.equal("Hi", body.messages[1].content)            -- earlier turns unchanged
    assert.are.same({ { type = "text", text = "Weather in Oslo?", cache_control = EPHEMERAL } }, body.messages[3].content)
    assert.is_nil(body.cache)
    assert.matches("Weather in Oslo", resp.text)
  end)

  it("an image part and a streamed request take breakpoints too", function()
    local png = "iVBORw0KGgo="
    local s = assert(client("anthropic"):stream{ messages = { { role = "user", content = {
      { type = "image", data = png, mime_type = "image/png", cache = true }, { type = "text", text = "And?" } } } } })
    assert(s:final())
    assert.are.same(EPHEMERAL, last().json.messages[1].content[1].cache_control)
  end)

  it("more than 4 breakpoints raise before anything is sent", function()
    local parts = {}
    for i = 1, 4 do parts[i] = { type = "text", text = "part " .. i, cache = true } end
    local c = client("anthropic")
    local ok, err = pcall(c.chat, c, { cache = true, system = "s", messages = { { role = "user", content = parts } } })
    assert.is_false(ok)
    assert.matches("anthropic: at most 4 cache breakpoints per request", err)
    assert.are.equal(0, #mock.server:requests())
  end)

  it("the mock refuses a fifth breakpoint as the API does", function()
    local blocks = {}
    for i = 1, 5 do blocks[i] = { type = "text", text = "s" .. i, cache_control = { type = "ephemeral" } } end
    local resp, err = client("anthropic"):chat{ messages = { { role = "user", content = "x" } },
                                               extra = { system = blocks } }
    assert.is_nil(resp)
    assert.are.equal("bad_request", err.kind)
    assert.matches("A maximum of 4 blocks with cache_control", err.message)
  end)
end)

describe("cache = true elsewhere puts no cache field on the wire", function()
  for _, route in ipairs({ { "openai" }, { "openai", "responses" }, { "gemini" }, { "ollama" } }) do
    it(route[1] .. (route[2] and " (responses)" or ""), function()
      local resp = assert(client(route[1], { api = route[2] }):chat{ cache = true, system = "Be brief.",
        messages = { { role = "user", content = { { type = "text", text = "Cache me", cache = true } } } } })
      local r = last()
      assert.not_matches("cache", r.body)
      assert.matches("Cache me", resp.text)
    end)
  end
end)

describe("prompt_cache_key", function()
  it("passes to OpenAI Chat Completions and Responses", function()
    assert(client("openai"):chat{ prompt_cache_key = "user-42", messages = { { role = "user", content = "x" } } })
    assert.are.equal("user-42", last().json.prompt_cache_key)
    assert(client("openai", { api = "responses" }):chat{ prompt_cache_key = "user-43",
      messages = { { role = "user", content = "x" } } })
    assert.are.equal("user-43", last().json.prompt_cache_key)
  end)

  it("raises on a provider without it", function()
    for _, name in ipairs({ "anthropic", "gemini", "ollama" }) do
      local c = client(name)
      local ok, err = pcall(c.chat, c, { prompt_cache_key = "k", messages = { { role = "user", content = "x" } } })
      assert.is_false(ok)
      assert.matches(name .. ": the request field 'prompt_cache_key' is not supported", err)
    end
  end)
end)
