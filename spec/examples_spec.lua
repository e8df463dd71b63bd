-- Every example runs to completion against the mock server, as `make demo` runs them.
local mockmod = require("support.mock")

local mock
setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)

local function run(example)
  -- The examples choose the real API when a key is set; these runs must stay offline.
  -- LLM_EXAMPLE_SEED makes the examples that draw random numbers repeatable.
  local cmd = string.format("cd %s && env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u GEMINI_API_KEY "
    .. "-u OLLAMA_BASE_URL LLM_EXAMPLE_SEED=7 LLM_MOCK_URL=%s lua5.4 examples/%s 2>&1",
    os.getenv("LLM_ROOT") or ".", mock.url, example)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok and code == 0, out
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
  ["ollama.lua"] = { "ollama: echo: Say hello in French", "stop" },
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
end)
