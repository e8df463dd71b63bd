-- Shared set-up for the examples: module paths when run from the repository root, and a
-- client for the real API when its key is set, else for the mock server that `make demo`
-- starts (its address in LLM_MOCK_URL).
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = (os.getenv("LLM_BUILD") or "build") .. "/?.so;" .. package.cpath

local llm = require("llm")

local M = { llm = llm }

local MOCK = os.getenv("LLM_MOCK_URL")
local DEFAULTS = {
  openai = { env = "OPENAI_API_KEY", model = "gpt-4.1-mini", mock = "/v1" },
  anthropic = { env = "ANTHROPIC_API_KEY", model = "claude-sonnet-4-5", mock = "" },
  gemini = { env = "GEMINI_API_KEY", model = "gemini-2.5-flash", mock = "/v1beta" },
  ollama = { env = nil, model = "llama3.2", mock = "" },
}

--- A client for `provider`: the real service when its key is set, else the mock server.
function M.client(provider, opts)
  local d = DEFAULTS[provider]
  opts = opts or {}
  opts.model = opts.model or d.model
  local real = d.env and os.getenv(d.env)
  if provider == "ollama" then real = os.getenv("OLLAMA_BASE_URL") end
  if real or not MOCK then
    return llm.client(provider, opts), false
  end
  opts.base_url = MOCK .. d.mock
  opts.api_key = "mock-key"
  return llm.client(provider, opts), true
end

--- The first provider whose key is set, else "openai" on the mock server.
function M.default_provider()
  if os.getenv("OPENAI_API_KEY") then return "openai" end
  if os.getenv("ANTHROPIC_API_KEY") then return "anthropic" end
  if os.getenv("GEMINI_API_KEY") then return "gemini" end
  return "openai"
end

return M
