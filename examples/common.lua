-- Shared set-up for the examples: module paths, and a client for the real API when its
-- key is set, else for the mock server. LLM_MOCK_URL (make demo sets it) always wins, so an
-- offline run never spends money; without it and without a key, a mock is started for the
-- run through llm.mock. Runs from any folder: a source checkout's modules (lua/, build/)
-- come first when it has been built, else the installed ones.
local here = (debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$") or ".")
local root = here .. "/.."
-- build/ holds the Lua 5.4 build; make build LUA=luajit (lua5.3, lua5.1) builds into build-luajit/ ...
local lua = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
local build = os.getenv("LLM_BUILD") or (root .. (lua == "lua5.4" and "/build" or "/build-" .. lua))
local so = io.open(build .. "/llm/core.so", "rb")
if so then
  so:close()
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = build .. "/?.so;" .. package.cpath
end

local llm = require("llm")

local M = { llm = llm }

local DEFAULTS = {
  openai = { env = "OPENAI_API_KEY", model = "gpt-4.1-mini", mock = "/v1" },
  anthropic = { env = "ANTHROPIC_API_KEY", model = "claude-sonnet-4-5", mock = "" },
  gemini = { env = "GEMINI_API_KEY", model = "gemini-2.5-flash", mock = "/v1beta" },
  ollama = { env = "OLLAMA_BASE_URL", model = "llama3.2", mock = "" },   -- a local server, no key
}

local mock_url
local mock_server   -- anchors the server until exit (it stops with the Lua state)
--- The mock server's address: LLM_MOCK_URL, else a server started for this run.
function M.mock_url()
  mock_url = mock_url or os.getenv("LLM_MOCK_URL")
  if mock_url and mock_url ~= "" then return mock_url end
  mock_server = assert(require("llm.mock").start())
  mock_url = mock_server.url
  return mock_url
end

--- True when the examples run against the mock (LLM_MOCK_URL set, or no key for provider).
function M.offline(provider)
  local url = os.getenv("LLM_MOCK_URL")
  if url and url ~= "" then return true end
  return not os.getenv(DEFAULTS[provider].env)
end

--- A client for `provider`: the real service when its key is set, else the mock server,
-- with `mock_headers` (x-mock-* controls) on every request. Returns client, mocked.
function M.client(provider, opts, mock_headers)
  local d = assert(DEFAULTS[provider], "provider: openai, anthropic, gemini or ollama")
  opts = opts or {}
  opts.model = opts.model or d.model
  if not M.offline(provider) then return llm.client(provider, opts), false end
  opts.base_url = M.mock_url() .. d.mock
  opts.api_key = "mock-key"
  opts.headers = opts.headers or {}
  for k, v in pairs(mock_headers or {}) do opts.headers[k] = v end
  return llm.client(provider, opts), true
end

--- The first provider whose key is set, else "openai" on the mock server.
function M.default_provider()
  local url = os.getenv("LLM_MOCK_URL")
  if url and url ~= "" then return "openai" end
  if os.getenv("OPENAI_API_KEY") then return "openai" end
  if os.getenv("ANTHROPIC_API_KEY") then return "anthropic" end
  if os.getenv("GEMINI_API_KEY") then return "gemini" end
  return "openai"
end

return M
