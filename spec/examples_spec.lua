-- Every example runs to completion against the mock server, as `make demo` runs them.
local mockmod = require("support.mock")
local V = require("support.version")

local mock
setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)

local function run(example)
  -- The examples choose the real API when a key is set; these runs must stay offline.
  -- LLM_EXAMPLE_SEED makes the examples that draw random numbers repeatable.
  -- Under the interpreter of the build under test.
  local out, code = V.run(string.format("cd %s && env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u GEMINI_API_KEY "
    .. "-u OLLAMA_BASE_URL LLM_EXAMPLE_SEED=7 LLM_BULK_COUNT=200 LLM_MOCK_URL=%s %s examples/%s",
    os.getenv("LLM_ROOT") or ".", mock.url, V.lua, example))
  return code == 0, out
end

local EXPECT = {
  ["chat.lua"] = { "openai%s+%(mock%) echo: What is the capital of Korea%?", "anthropic%s*%(mock%) echo:" },
  ["stream.lua"] = { "The keeper counted ships", "finish: stop" },
  ["errors.lua"] = { "kind=rate_limit", "kind=quota", "stream ended with: .*connection" },
  ["flaky.lua"] = { "got 42 after %d+ attempt" },
  ["retry_chat.lua"] = { "attempt 1 failed %(server%)", "after 3 attempts" },
  ["conversation.lua"] = { "%[chat%] echo: What's my name%?  %(history: 4 messages%)", "chained on" },
  ["responses.lua"] = { "web search events" },
  ["gemini.lua"] = { "chat:   echo: Name a planet", "stream: echo: Name two moons" },
  ["tools.lua"] = { "Seoul is 21 C and Busan is 24 C", "2 model round trips" },
  ["agent.lua"] = { "calculator%(", "29032 feet" },
  ["embeddings.lua"] = { "Which planet has rings%?%s+%-> The telescope revealed rings",
                         "What sauce goes with pasta%?%s+%-> Fresh basil",
                         "Why did the markets drop%?%s+%-> Stock markets",
                         "How does exercise help the heart%?%s+%-> Regular exercise",
                         "Where is the cat sleeping%?%s+%-> The cat purrs" },
  ["ollama.lua"] = { "ollama: echo: Say hello in French", "stop" },
  ["costs.lua"] = { "openai%s+2%s+2824%s+1280%s+70%s+0%s+0%.000858", "anthropic%s+1%s+1412%s+1400%s+60%s+0%s+0%.001356",
                    "tool loop%s+2%s+840", "gemini%s+1%s+11%s+0%s+180%s+150", "total cost: %$0%.005937 over 6 HTTP responses" },
  ["vision.lua"] = { "anthropic echo: .*%[image image/png 101 bytes%] %[file application/pdf 581 bytes%]",
                     "gemini%s+echo: .*%[file application/pdf 581 bytes%]", "ollama%s+ollama: file parts are not supported" },
  ["extract.lua"] = { 'openai%s+partial: {"title":"Casablanca"}', 'anthropic partial: {"title":"Casablanca","year":1942}',
                      "anthropic parsed:  Casablanca %(1942%), Humphrey Bogart, Ingrid Bergman, Paul Henreid" },
  ["bulk.lua"] = { "200 texts labelled", "positive%s+60\n", "negative%s+80\n", "neutral%s+60\n",
                   "200/200 labelled", "calls failed: 0; the server answered 429 to 0" },
  ["luv.lua"] = { "It is sunny in Paris and raining in Tokyo%.\n", "luv: %d+ wake%-ups, %d+ text deltas, 2 tool calls" },
}

describe("examples", function()
  local p = io.popen("ls examples")
  for name in p:lines() do
    if name:match("%.lua$") and name ~= "common.lua" then
      it(name .. " runs against the mock server", function()
        local ok, out = run(name)
        assert.is_true(ok, out)
        for _, pat in ipairs(EXPECT[name] or {}) do
          assert.matches(pat, out)
        end
      end)
    end
  end
  p:close()

  it("bulk.lua --batch labels the texts as one batch job on the mock", function()
    mock:reset()
    local ok, out = run("bulk.lua --batch")
    assert.is_true(ok, out)
    for _, pat in ipairs{ "200 texts labelled in [%d.]+ s %(batch mode", "positive%s+60\n", "negative%s+80\n",
                          "neutral%s+60\n", "batch batch_%S+ completed: 200 results", "completed%s+200/200 done",
                          "calls failed: 0" } do
      assert.matches(pat, out)
    end
    -- one upload and one batch, no chat call: the mock labelled the texts inside the batch
    local n = { files = 0, batches = 0, chat = 0 }
    for _, r in ipairs(mock:requests()) do
      if r.method == "POST" and r.path == "/v1/files" then n.files = n.files + 1 end
      if r.method == "POST" and r.path == "/v1/batches" then n.batches = n.batches + 1 end
      if r.path:match("/chat/completions$") then n.chat = n.chat + 1 end
    end
    assert.same({ files = 1, batches = 1, chat = 0 }, n)
  end)
end)

describe("examples, the first five minutes", function()
  local root = os.getenv("LLM_ROOT") or "."
  local function sh(cmd)
    local out, code = V.run(cmd)
    return code == 0, out
  end

  it("run from any folder", function()
    local ok, out = sh(string.format("cd / && env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u GEMINI_API_KEY "
      .. "-u OLLAMA_BASE_URL LLM_MOCK_URL=%s %s %s/examples/chat.lua", mock.url, V.lua, root))
    assert.is_true(ok, out)
    assert.matches("openai%s+%(mock%) echo: What is the capital of Korea%?", out)
  end)

  it("LLM_MOCK_URL wins over a key in the environment: no request leaves for the real API", function()
    mock:reset()
    local ok, out = sh(string.format("cd %s && env -u OLLAMA_BASE_URL OPENAI_API_KEY=sk-must-not-be-used "
      .. "ANTHROPIC_API_KEY=sk-ant-no GEMINI_API_KEY=no LLM_MOCK_URL=%s %s examples/chat.lua", root, mock.url, V.lua))
    assert.is_true(ok, out)
    assert.matches("openai%s+%(mock%)", out)
    assert.matches("anthropic%s*%(mock%)", out)
    local reqs = mock:requests()
    assert.is_true(#reqs >= 2)
    for _, r in ipairs(reqs) do
      assert.not_matches("sk%-must%-not%-be%-used", r.headers.authorization or "")
      assert.not_matches("sk%-ant%-no", r.headers["x-api-key"] or "")
    end
  end)

  it("start their own mock server through llm.mock without LLM_MOCK_URL or a key", function()
    local ok, out = sh(string.format("cd / && env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u GEMINI_API_KEY "
      .. "-u OLLAMA_BASE_URL -u LLM_MOCK_URL %s %s/examples/stream.lua", V.lua, root))
    assert.is_true(ok, out)
    assert.matches("-- openai (mock server) --", out, 1, true)
    assert.matches("The keeper counted ships", out, 1, true)
  end)

  it("make demo uses LLM_MOCK_URL even with keys set", function()
    mock:reset()
    local ok, out = sh(string.format("cd %s && env OPENAI_API_KEY=sk-must-not-be-used "
      .. "ANTHROPIC_API_KEY=sk-ant-no LLM_MOCK_URL=%s sh tools/demo.sh %s", root, mock.url,
      os.getenv("LLM_BUILD") or "build"))
    assert.is_true(ok, out)
    assert.matches("-- openai (mock server) --", out, 1, true)
    local reqs = mock:requests()
    assert.equal(1, #reqs)
    assert.equal("Bearer mock-key", reqs[1].headers.authorization)
  end)
end)
