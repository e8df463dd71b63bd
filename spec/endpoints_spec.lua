-- lua5.1: yes
-- Endpoints beyond chat, end to end against the mock: embeddings, token counts, model lists,
-- Azure OpenAI, Anthropic's spend-limit 429, generated tool-call ids replayed across
-- providers, and background responses. Each checks what the server received (paths, bodies,
-- headers) and the normalized result.
local mockmod = require("support.mock")
local json = require("llm.json")
local llm = require("llm")

local KEY = "sk-test-SECRET-0123456789abcdef"
local mock

setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

local merge = mockmod.merge

local ROOT = { openai = "/v1", azure = "/openai/v1", anthropic = "", gemini = "/v1beta", ollama = "" }
local MODEL = { openai = "gpt-test", azure = "my-deployment", anthropic = "claude-test",
                gemini = "gemini-test", ollama = "llama-test" }

local function client(provider, opts)
  return llm.client(provider, merge({ model = MODEL[provider], base_url = mock.url .. ROOT[provider],
                                      api_key = KEY, max_retries = 0 }, opts))
end

local function requests()
  local out = {}
  for i, r in ipairs(mock:requests()) do
    local path = r.path
    if r.query and r.query ~= "" then path = path .. "?" .. r.query end
    out[i] = { method = r.method, path = path, headers = r.headers,
               json = r.body ~= "" and json.decode(r.body) or nil }
  end
  return out
end

local function dot(a, b)
  local s = 0
  for i = 1, #a do s = s + a[i] * b[i] end
  return s
end

---------------------------------------------------------------------------------------------

describe("client:embed", function()
  local TEXTS = { "The cat sleeps on the warm mat", "Stock markets fell sharply today" }

  it("OpenAI: POST /embeddings with model, input list and dimensions; vectors in order", function()
    local c = client("openai", { embedding_model = "text-embedding-3-small" })
    local e = assert(c:embed(TEXTS, { dimensions = 16 }))
    local r = requests()
    assert.are.equal(1, #r)
    assert.are.equal("POST", r[1].method)
    assert.are.equal("/v1/embeddings", r[1].path)
    assert.are.equal("Bearer " .. KEY, r[1].headers["authorization"])
    assert.are.same({ model = "text-embedding-3-small", input = TEXTS, dimensions = 16,
                      encoding_format = "float" }, r[1].json)
    assert.are.equal(2, #e.vectors)
    assert.are.equal(16, #e.vectors[1])
    assert.are.equal("text-embedding-3-small", e.model)
    assert.are.equal(12, e.usage.input_tokens)   -- the mock counts words: 7 + 5
    assert.is_true(math.abs(dot(e.vectors[1], e.vectors[1]) - 1) < 1e-9)
    assert.are.equal("list", e.raw.object)
  end)

  it("Gemini: POST :batchEmbedContents with one request per text, key in x-goog-api-key", function()
    local c = client("gemini")
    local e = assert(c:embed(TEXTS, { model = "gemini-embedding-001", dimensions = 8 }))
    local r = requests()
    assert.are.equal("/v1beta/models/gemini-embedding-001:batchEmbedContents", r[1].path)
    assert.are.equal(KEY, r[1].headers["x-goog-api-key"])
    assert.is_nil(r[1].headers["authorization"])
    assert.are.same({ requests = {
      { model = "models/gemini-embedding-001", content = { parts = { { text = TEXTS[1] } } }, outputDimensionality = 8 },
      { model = "models/gemini-embedding-001", content = { parts = { { text = TEXTS[2] } } }, outputDimensionality = 8 },
    } }, r[1].json)
    assert.are.equal(2, #e.vectors)
    assert.are.equal(8, #e.vectors[2])
    assert.are.equal("gemini-embedding-001", e.model)
    assert.is_nil(e.usage.input_tokens)   -- Gemini reports none
  end)

  it("Ollama: POST /api/embed with model and input; usage from prompt_eval_count", function()
    local c = client("ollama", { api_key = false, embedding_model = "nomic-embed-text" })
    local e = assert(c:embed("just one text"))
    local r = requests()
    assert.are.equal("/api/embed", r[1].path)
    assert.are.same({ model = "nomic-embed-text", input = { "just one text" } }, r[1].json)
    assert.are.equal(1, #e.vectors)
    assert.are.equal(64, #e.vectors[1])   -- the mock's default size
    assert.are.equal("nomic-embed-text", e.model)
    assert.are.equal(3, e.usage.input_tokens)
  end)

  it("the same text gives the same vector on every provider route (the mock's vectors)", function()
    local a = assert(client("openai"):embed("purring cats", { model = "m" })).vectors[1]
    local b = assert(client("gemini"):embed("purring cats", { model = "m" })).vectors[1]
    local d = assert(client("ollama", { api_key = false }):embed("purring cats", { model = "m" })).vectors[1]
    assert.are.same(a, b)
    assert.are.same(a, d)
  end)

  it("Anthropic has no embeddings API: nil, err kind unsupported, nothing sent", function()
    local e, err = client("anthropic", { embedding_model = "x" }):embed("hi")
    assert.is_nil(e)
    assert.are.equal("unsupported", err.kind)
    assert.is_false(err.retryable)
    assert.is_truthy(tostring(err):find("anthropic", 1, true))
    assert.are.equal(0, #requests())
  end)

  it("takes the model from opts, else embedding_model, else raises", function()
    local c = client("openai", { embedding_model = "client-default" })
    assert(c:embed("x"))
    assert(c:embed("x", { model = "per-call" }))
    local r = requests()
    assert.are.equal("client-default", r[1].json.model)
    assert.are.equal("per-call", r[2].json.model)
    local bare = client("openai")
    assert.has_error(function() bare:embed("x") end,
      "client:embed: no model: pass { model = ... } or set the client option embedding_model")
  end)

  it("raises on bad texts and misspelt options, naming them", function()
    local c = client("openai", { embedding_model = "m" })
    assert.has_error(function() c:embed({}) end, "client:embed: texts must be a string or a non-empty list of strings")
    assert.has_error(function() c:embed({ "a", 2 }) end, "client:embed: texts[2] must be a string, got number")
    local ok, err = pcall(c.embed, c, "a", { dimension = 8 })
    assert.is_false(ok)
    assert.is_truthy(err:find("did you mean 'dimensions'", 1, true))
    assert.has_error(function() c:embed("a", { dimensions = 0 }) end)
    assert.are.equal(0, #requests())
  end)

  it("an HTTP error is nil, err in the provider's words, retried like any call", function()
    local c = client("openai", { embedding_model = "m", max_retries = 1,
      headers = { ["x-mock-sequence"] = "status=500|ok", ["x-mock-key"] = "emb-retry" } })
    local e = assert(c:embed("x"))
    assert.are.equal(1, #e.vectors)
    assert.are.equal(2, #requests())
    local c2 = client("gemini", { headers = { ["x-mock-fault"] = "status=400" } })
    local _, err = c2:embed("x", { model = "m" })
    assert.are.equal("bad_request", err.kind)
    assert.are.equal(400, err.status)
  end)

  it("a reply with fewer vectors than texts is a protocol error", function()
    local c = client("gemini")
    -- `extra` replaces the body's request list with one request: one vector for two texts
    local _, err = c:embed({ "a", "b" }, { model = "m", extra = { requests = { {
      model = "models/m", content = { parts = { { text = "a" } } } } } } })
    assert.are.equal("protocol", err.kind)
    assert.is_truthy(err.message:find("expected 2 embedding vectors", 1, true))
  end)
end)

---------------------------------------------------------------------------------------------

describe("embeddings, token counts and model lists take the one request path", function()
  it("fire the hooks of every call; an embedding's tokens are accounted, a count or a list is not", function()
    local seen = {}
    local function hook(name) return function(info)
      seen[#seen + 1] = { name, info.method, info.url:gsub("^.-//[^/]+", ""), info.model, info.status }
    end end
    local c = client("gemini", { embedding_model = "gemini-embedding-001",
      prices = { ["gemini-embedding-001"] = { input = 0.15, output = 0 } },
      hooks = { on_request = hook("on_request"), on_response = hook("on_response") } })
    assert(c:embed({ "one two three", "four five" }))
    assert(c:count_tokens("six seven"))
    assert(c:models())
    assert.are.same({
      { "on_request", "POST", "/v1beta/models/gemini-embedding-001:batchEmbedContents", "gemini-embedding-001" },
      { "on_response", "POST", "/v1beta/models/gemini-embedding-001:batchEmbedContents", "gemini-embedding-001", 200 },
      { "on_request", "POST", "/v1beta/models/gemini-test:countTokens", "gemini-test" },
      { "on_response", "POST", "/v1beta/models/gemini-test:countTokens", "gemini-test", 200 },
      { "on_request", "GET", "/v1beta/models?pageSize=1000" },
      { "on_response", "GET", "/v1beta/models?pageSize=1000", nil, 200 },
    }, seen)
    assert.are.equal(1, c.usage.requests)   -- the embedding call only
    local o = client("openai", { embedding_model = "text-embedding-3-small",
      prices = { ["text-embedding-3-small"] = { input = 0.02, output = 0 } } })
    assert(o:embed({ "one two three", "four five" }))
    assert.are.equal(1, o.usage.requests)
    assert.are.equal(5, o.usage.input_tokens)
    assert.are.equal(5, o.usage.by_model["text-embedding-3-small"].input_tokens)
    assert.is_true(math.abs(o.usage.cost - 5 * 0.02 / 1e6) < 1e-15)
  end)
end)

---------------------------------------------------------------------------------------------

describe("a reply that is JSON but not an object", function()
  local function fault(provider, text)
    return client(provider, { embedding_model = "e",
      headers = { ["x-mock-fault"] = "not-object" .. (text and ("=" .. text) or "") } })
  end

  it("is a protocol error naming what came, on every endpoint, before any decoder reads it", function()
    for _, call in ipairs{
      function() return fault("openai"):embed("a") end,
      function() return fault("anthropic"):count_tokens("a") end,
      function() return fault("gemini", "[1,2]"):models() end,
      function() return fault("openai", '"text"'):chat("a") end,
      function() return fault("openai", "null"):response("resp_1") end,
    } do
      local r, err = call()
      assert.is_nil(r)
      assert.are.equal("protocol", err.kind)
      assert.is_truthy(err.message:find("not a JSON object", 1, true), err.message)
    end
    local _, err = fault("openai", "[1,2]"):embed("a")
    assert.are.equal("response is an array, not a JSON object", err.message)
  end)

  it("is returned as it came by client:request, which takes any JSON", function()
    assert.are.equal(9, fault("openai"):request("GET", "/anything"))
    assert.are.same({ 1, 2 }, fault("openai", "[1,2]"):request("GET", "/anything"))
  end)
end)

---------------------------------------------------------------------------------------------

describe("client:count_tokens", function()
  local REQ = { system = "Be brief.", max_tokens = 100, temperature = 0.5,
                messages = { { role = "user", content = "How many tokens is this?" } } }

  it("Anthropic: POST /v1/messages/count_tokens with the Messages body minus max_tokens", function()
    local n = assert(client("anthropic"):count_tokens(REQ))
    local r = requests()
    assert.are.equal("/v1/messages/count_tokens", r[1].path)
    assert.are.equal(KEY, r[1].headers["x-api-key"])
    assert.are.equal("2023-06-01", r[1].headers["anthropic-version"])
    assert.are.same({ model = "claude-test", system = "Be brief.",
                      messages = { { role = "user", content = "How many tokens is this?" } } }, r[1].json)
    assert.are.same({ input_tokens = 7 }, n)   -- the mock counts words: 2 + 5
  end)

  it("Gemini: POST :countTokens with the whole generateContentRequest and its model", function()
    local n = assert(client("gemini"):count_tokens(REQ))
    local r = requests()
    assert.are.equal("/v1beta/models/gemini-test:countTokens", r[1].path)
    local g = r[1].json.generateContentRequest
    assert.are.equal("models/gemini-test", g.model)
    assert.are.same({ { role = "user", parts = { { text = "How many tokens is this?" } } } }, g.contents)
    assert.are.same({ parts = { { text = "Be brief." } } }, g.systemInstruction)
    assert.is_nil(r[1].json.contents)
    assert.are.same({ input_tokens = 7 }, n)
  end)

  it("a string is one user message; a misspelt field raises as for chat", function()
    assert.are.same({ input_tokens = 3 }, assert(client("anthropic"):count_tokens("one two three")))
    assert.has_error(function() client("anthropic"):count_tokens{ mesages = {} } end)
  end)

  it("OpenAI and Ollama have no such endpoint: nil, err kind unsupported", function()
    for _, p in ipairs{ "openai", "ollama", "azure" } do
      local n, err = client(p):count_tokens("hi")
      assert.is_nil(n)
      assert.are.equal("unsupported", err.kind)
    end
    assert.are.equal(0, #requests())
  end)
end)

---------------------------------------------------------------------------------------------

describe("client:models", function()
  it("OpenAI: GET /models -> id, created, owned_by", function()
    local list = assert(client("openai"):models())
    local r = requests()
    assert.are.equal("GET", r[1].method)
    assert.are.equal("/v1/models", r[1].path)
    assert.are.equal(3, #list)
    assert.are.equal("gpt-4.1-mini", list[1].id)
    assert.are.equal(1744318173, list[1].created)
    assert.are.equal("system", list[1].owned_by)
    assert.are.equal("model", list[1].raw.object)
  end)

  it("Anthropic: GET /v1/models, every page followed by after_id; created from created_at", function()
    local list = assert(client("anthropic", { headers = { ["x-mock-page-size"] = "2" } }):models())
    local r = requests()
    assert.are.equal(2, #r)
    assert.are.equal("/v1/models?limit=1000", r[1].path)
    assert.are.equal("/v1/models?after_id=claude-haiku-4-5-20251001&limit=1000", r[2].path)
    assert.are.equal("2023-06-01", r[1].headers["anthropic-version"])
    assert.are.equal(3, #list)
    assert.are.equal("claude-sonnet-4-5-20250929", list[1].id)
    assert.are.equal(1759104000, list[1].created)   -- 2025-09-29T00:00:00Z
    assert.are.equal("claude-opus-4-1-20250805", list[3].id)
    assert.are.equal("Claude Opus 4.1", list[3].raw.display_name)
  end)

  it("Gemini: GET /models, pages followed by pageToken; ids without models/", function()
    local list = assert(client("gemini", { headers = { ["x-mock-page-size"] = "2" } }):models())
    local r = requests()
    assert.are.equal(2, #r)
    assert.are.equal("/v1beta/models?pageSize=1000", r[1].path)
    assert.are.equal("/v1beta/models?pageSize=1000&pageToken=3", r[2].path)
    assert.are.same({ "gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001" },
      { list[1].id, list[2].id, list[3].id })
    assert.is_nil(list[1].created)
  end)

  it("Ollama: GET /api/tags", function()
    local list = assert(client("ollama", { api_key = false }):models())
    assert.are.equal("/api/tags", requests()[1].path)
    assert.are.equal(2, #list)
    assert.are.equal("llama3.2:latest", list[1].id)
    assert.are.equal("gguf", list[1].raw.details.format)
  end)

  it("an error is nil, err", function()
    local _, err = client("openai", { headers = { ["x-mock-fault"] = "status=401" } }):models()
    assert.are.equal("auth", err.kind)
  end)
end)

---------------------------------------------------------------------------------------------

describe("azure provider", function()
  it("sends the key in api-key (no Authorization) to <endpoint>/openai/v1", function()
    local c = llm.client("azure", { base_url = mock.url, api_key = KEY, model = "my-deployment" })
    assert.are.equal(mock.url .. "/openai/v1", c.base_url)
    local resp = assert(c:chat("Hello"))
    assert.are.equal("echo: Hello", resp.text)
    local r = requests()
    assert.are.equal("/openai/v1/chat/completions", r[1].path)
    assert.are.equal(KEY, r[1].headers["api-key"])
    assert.is_nil(r[1].headers["authorization"])
    assert.are.equal("my-deployment", r[1].json.model)
  end)

  it("takes the full URL as given, and adds /v1 to one ending in /openai", function()
    assert.are.equal(mock.url .. "/openai/v1",
      llm.client("azure", { base_url = mock.url .. "/openai/v1/", api_key = KEY }).base_url)
    assert.are.equal(mock.url .. "/openai/v1",
      llm.client("azure", { base_url = mock.url .. "/openai", api_key = KEY }).base_url)
    assert.are.equal(mock.url .. "/custom/path",
      llm.client("azure", { base_url = mock.url .. "/custom/path", api_key = KEY }).base_url)
  end)

  it("reads AZURE_OPENAI_API_KEY and AZURE_OPENAI_ENDPOINT, and has no default host", function()
    local p = llm.providers.azure
    assert.are.equal("AZURE_OPENAI_API_KEY", p.api_key_env)
    assert.are.equal("AZURE_OPENAI_ENDPOINT", p.base_url_env)
    assert.is_nil(p.base_url)
    if os.getenv("AZURE_OPENAI_ENDPOINT") == nil then
      local ok, err = pcall(llm.client, "azure", { api_key = KEY })
      assert.is_false(ok)
      assert.is_truthy(err:find("AZURE_OPENAI_ENDPOINT", 1, true))
    end
  end)

  it("streams, embeds, lists models and uses the Responses API under /openai/v1", function()
    local c = client("azure", { embedding_model = "emb" })
    local s = assert(c:stream("Hi there"))
    assert.are.equal("echo: Hi there", assert(s:final()).text)
    assert(c:embed("x"))
    assert(c:models())
    assert.are.equal("echo: yo", assert(c:chat{ api = "responses", input = "yo" }).text)
    local paths = {}
    for i, r in ipairs(requests()) do
      paths[i] = r.path
      assert.are.equal(KEY, r.headers["api-key"])
    end
    assert.are.same({ "/openai/v1/chat/completions", "/openai/v1/embeddings", "/openai/v1/models",
                      "/openai/v1/responses" }, paths)
  end)

  it("m:client(\"azure\") points at the mock's /openai/v1 with a key in api-key", function()
    local c = mock.server:client("azure")
    assert.are.equal(mock.url .. "/openai/v1", c.base_url)
    assert.are.equal("echo: Hi", assert(c:chat("Hi")).text)
    assert.are.equal("mock-key", requests()[1].headers["api-key"])
  end)

  it("a request without the api-key header is refused by the mock (so the header is what authenticates)", function()
    local c = client("azure", { api_key = false })
    local _, err = c:chat("Hi")
    assert.are.equal("auth", err.kind)
  end)

  it("never shows the key: echoed in an error, or in debug logs of the api-key header", function()
    local lines = {}
    local lib = llm.new()
    lib.configure{ log = function(_, msg) lines[#lines + 1] = msg end }
    local c = lib.client("azure", { base_url = mock.url, api_key = KEY, model = "d", max_retries = 0,
                                    headers = { ["x-mock-echo-key"] = "plain", ["x-mock-fault"] = "status=401" } })
    local _, err = c:chat("Hi")
    assert.are.equal("auth", err.kind)
    assert.is_nil(tostring(err):find(KEY, 1, true))
    assert.is_nil(tostring(err.request_id):find(KEY, 1, true))
    assert.is_nil(tostring(c):find(KEY, 1, true))
    local saw_header = false
    for _, l in ipairs(lines) do
      assert.is_nil(l:find(KEY, 1, true))
      assert.is_nil(l:find("SECRET", 1, true))
      if l:lower():find("api%-key:") then saw_header = true end
    end
    assert.is_true(saw_header)   -- libcurl's verbose output did show the header line, redacted
    assert.are.equal(KEY, requests()[1].headers["api-key"])
  end)
end)

---------------------------------------------------------------------------------------------

describe("anthropic spend-limit 429", function()
  it("error.details.error_code enforced_spend_limit_reached is kind quota, not retried", function()
    local c = client("anthropic", { max_retries = 2, headers = { ["x-mock-fault"] = "spend-limit" } })
    local resp, err = c:chat("Hi")
    assert.is_nil(resp)
    assert.are.equal("quota", err.kind)
    assert.are.equal(429, err.status)
    assert.is_false(err.retryable)
    assert.are.equal("enforced_spend_limit_reached", err.code)
    assert.are.equal(1, #requests())
  end)

  it("contract_spend_limit_reached too", function()
    local c = client("anthropic", { max_retries = 2, headers = { ["x-mock-fault"] = "spend-limit=contract" } })
    local _, err = c:chat("Hi")
    assert.are.equal("quota", err.kind)
    assert.are.equal("contract_spend_limit_reached", err.code)
    assert.are.equal(1, #requests())
  end)

  it("the message text is never read: a plain 429 that mentions a spend limit stays rate_limit", function()
    local c = client("anthropic", { max_retries = 1, headers = { ["x-mock-fault"] = "status=429;retry-after=0",
      ["x-mock-error-message"] = "You have reached your spend limit: enforced_spend_limit_reached" } })
    local _, err = c:chat("Hi")
    local last = err.kind == "retry" and err.last or err
    assert.are.equal("rate_limit", last.kind)
    assert.are.equal(2, #requests())   -- retried
  end)
end)

---------------------------------------------------------------------------------------------

describe("generated tool-call ids", function()
  local weather = { name = "weather", description = "Weather in a city",
                    parameters = { type = "object", properties = { city = { type = "string" } } } }
  local function calls_reply()
    mock.server:push{ tool_calls = { { name = "weather", arguments = { city = "Paris" } },
                                     { name = "weather", arguments = { city = "Tokyo" } } } }
  end

  for _, p in ipairs{ "gemini", "ollama" } do
    it(p .. ": calls without ids get call_1, call_2 (chat and stream)", function()
      local c = client(p, { api_key = p == "ollama" and false or KEY })
      calls_reply()
      local resp = assert(c:chat{ messages = { { role = "user", content = "Weather?" } }, tools = { weather } })
      assert.are.equal("call_1", resp.tool_calls[1].id)
      assert.are.equal("call_2", resp.tool_calls[2].id)
      calls_reply()
      local s = assert(c:stream{ messages = { { role = "user", content = "Weather?" } }, tools = { weather } })
      local ids = {}
      for ev in s:events() do
        if ev.type == "tool_call" and ev.id then ids[ev.index] = ev.id end
      end
      local final = assert(s:final())
      assert.are.same({ "call_1", "call_2" }, ids)
      assert.are.equal("call_2", final.tool_calls[2].id)
      -- the raw wire never had them
      local r = requests()
      assert.are.equal(2, #r)
    end)
  end

  it("a Gemini tool history replays to OpenAI and Anthropic with matching ids, and to Gemini without them", function()
    local g = client("gemini")
    calls_reply()
    local msgs = { { role = "user", content = "Weather in Paris and Tokyo?" } }
    local resp = assert(g:chat{ messages = msgs, tools = { weather } })
    msgs[#msgs + 1] = resp.message
    for _, call in ipairs(resp.tool_calls) do
      msgs[#msgs + 1] = { role = "tool", tool_call_id = call.id, content = { celsius = 20 } }
    end
    mock:reset()
    assert(client("openai"):chat{ messages = msgs, tools = { weather } })
    assert(client("anthropic"):chat{ messages = msgs, tools = { weather } })
    assert(g:chat{ messages = msgs, tools = { weather } })
    local r = requests()
    -- OpenAI: assistant tool_calls with ids, each answered by a tool message with that id
    local om = r[1].json.messages
    assert.are.equal("/v1/chat/completions", r[1].path)
    assert.are.equal("call_1", om[2].tool_calls[1].id)
    assert.are.equal("call_2", om[2].tool_calls[2].id)
    assert.are.equal("weather", om[2].tool_calls[1]["function"].name)
    assert.are.same({ "tool", "call_1" }, { om[3].role, om[3].tool_call_id })
    assert.are.same({ "tool", "call_2" }, { om[4].role, om[4].tool_call_id })
    -- Anthropic: tool_use blocks with ids, tool_result blocks naming them in one user turn
    local am = r[2].json.messages
    assert.are.equal("/v1/messages", r[2].path)
    assert.are.same({ type = "tool_use", id = "call_1", name = "weather", input = { city = "Paris" } }, am[2].content[1])
    assert.are.equal("call_2", am[2].content[2].id)
    assert.are.equal("user", am[3].role)
    assert.are.same({ "tool_result", "call_1" }, { am[3].content[1].type, am[3].content[1].tool_use_id })
    assert.are.same({ "tool_result", "call_2" }, { am[3].content[2].type, am[3].content[2].tool_use_id })
    -- Gemini: the ids it never sent are not sent back; results go by name
    local gc = r[3].json.contents
    assert.are.same({ name = "weather", args = { city = "Paris" } }, gc[2].parts[1].functionCall)
    assert.is_nil(gc[3].parts[1].functionResponse.id)
    assert.are.equal("weather", gc[3].parts[1].functionResponse.name)
  end)

  it("an Ollama tool history replays to OpenAI with matching ids, and to Ollama without them", function()
    local o = client("ollama", { api_key = false })
    calls_reply()
    local msgs = { { role = "user", content = "Weather?" } }
    local resp = assert(o:chat{ messages = msgs, tools = { weather } })
    msgs[#msgs + 1] = resp.message
    msgs[#msgs + 1] = { role = "tool", tool_call_id = "call_1", content = "sunny" }
    msgs[#msgs + 1] = { role = "tool", tool_call_id = "call_2", content = "rainy" }
    mock:reset()
    assert(client("openai"):chat{ messages = msgs, tools = { weather } })
    assert(o:chat{ messages = msgs, tools = { weather } })
    local r = requests()
    assert.are.equal("call_2", r[1].json.messages[2].tool_calls[2].id)
    assert.are.equal("call_2", r[1].json.messages[4].tool_call_id)
    local om = r[2].json.messages
    assert.is_nil(om[2].tool_calls[1].id)
    assert.are.same({ "tool", "weather", "rainy" }, { om[4].role, om[4].tool_name, om[4].content })
  end)
end)

---------------------------------------------------------------------------------------------

describe("background responses", function()
  local function responses_client(opts) return client("openai", merge({ api = "responses" }, opts)) end

  it("chat{ background = true } returns at once with state queued; response(id) follows it", function()
    local c = responses_client()
    local resp = assert(c:chat{ input = "Write a long essay", background = true })
    assert.are.equal("queued", resp.state)
    assert.are.equal(200, resp.status)   -- status stays the HTTP status
    assert.are.equal("", resp.text)
    assert.is_nil(resp.finish_reason)
    local r = requests()
    assert.are.equal("/v1/responses", r[1].path)
    assert.is_true(r[1].json.background)
    local id = resp.id
    local r1 = assert(c:response(id))
    assert.are.equal("queued", r1.state)
    local r2 = assert(c:response(id))
    assert.are.equal("in_progress", r2.state)
    local r3 = assert(c:response(id))
    assert.are.equal("completed", r3.state)
    assert.are.equal("echo: Write a long essay", r3.text)
    assert.are.equal("stop", r3.finish_reason)
    assert.are.equal(id, r3.id)
    r = requests()
    assert.are.same({ "GET", "/v1/responses/" .. id }, { r[2].method, r[2].path })
    assert.are.equal("Bearer " .. KEY, r[2].headers["authorization"])
  end)

  it("cancel_response(id) cancels a queued response", function()
    local c = responses_client()
    local resp = assert(c:chat{ input = "Long job", background = true })
    local cancelled = assert(c:cancel_response(resp.id))
    assert.are.equal("cancelled", cancelled.state)
    assert.are.equal("error", cancelled.finish_reason)
    local r = requests()
    assert.are.same({ "POST", "/v1/responses/" .. resp.id .. "/cancel" }, { r[2].method, r[2].path })
    assert.are.equal("cancelled", assert(c:response(resp.id)).state)
  end)

  it("stream_response(id, { starting_after }) resumes the events after that sequence number", function()
    local c = responses_client()
    local resp = assert(c:chat{ input = "one two three four", background = true })
    local s = assert(c:stream_response(resp.id, { starting_after = 6 }))
    local texts, seqs = {}, {}
    for ev in s:events() do
      if type(ev.raw) == "table" and ev.raw.sequence_number then seqs[#seqs + 1] = ev.raw.sequence_number end
      if ev.type == "text" then texts[#texts + 1] = ev.text end
    end
    local final = assert(s:final())
    local r = requests()
    assert.are.same({ "GET", "/v1/responses/" .. resp.id .. "?starting_after=6&stream=true" }, { r[2].method, r[2].path })
    assert.are.equal("text/event-stream", r[2].headers["accept"])
    -- events 0-3 open the response and its message; the deltas are 4 ("echo:") to 8 (" four")
    assert.are.equal(7, seqs[1])                   -- nothing at or before 6
    assert.are.same({ " three", " four" }, texts)  -- the deltas numbered 7 and 8 only
    assert.are.equal("echo: one two three four", final.text)   -- the whole stored response
    assert.are.equal("completed", final.state)
    -- from the start without starting_after
    local s2 = assert(c:stream_response(resp.id))
    local all = {}
    for t in s2:text() do all[#all + 1] = t end
    assert.are.equal("echo: one two three four", table.concat(all))
  end)

  it("a background stream cut mid-way resumes from its last sequence number, without a gap", function()
    local c = responses_client()
    mock.server:push{ text = "alpha beta gamma delta epsilon", cut_after = 7 }
    local s = assert(c:stream{ input = "go", background = true })
    local id, last, texts = nil, nil, {}
    local failed
    for ev in s:events() do
      if type(ev.raw) == "table" then
        if type(ev.raw.response) == "table" then id = id or ev.raw.response.id end
        last = ev.raw.sequence_number or last
      end
      if ev.type == "text" then texts[#texts + 1] = ev.text end
      if ev.type == "error" then failed = ev.error end
    end
    assert.is_truthy(failed)                 -- the connection was reset after 7 events
    assert.are.equal(6, last)                -- events 0..6 arrived
    assert.is_true(requests()[1].json.background)
    local rest = assert(c:stream_response(id, { starting_after = last }))
    for t in rest:text() do texts[#texts + 1] = t end
    assert.are.equal("alpha beta gamma delta epsilon", table.concat(texts))
    assert.are.equal("alpha beta gamma delta epsilon", assert(rest:final()).text)
  end)

  it("an unknown id is nil, err not_found", function()
    local _, err = responses_client():response("resp_nope")
    assert.are.equal("not_found", err.kind)
  end)

  it("providers without the Responses API answer unsupported; bad arguments raise", function()
    local _, err = client("anthropic"):response("resp_1")
    assert.are.equal("unsupported", err.kind)
    assert.has_error(function() responses_client():response(42) end)
    assert.has_error(function() responses_client():stream_response("resp_1", { after = 2 }) end)
    local ok, msg = pcall(client("anthropic").chat, client("anthropic"), { background = true })
    assert.is_false(ok)
    assert.is_truthy(msg:find("background", 1, true))
  end)
end)
