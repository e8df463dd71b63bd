-- Shared set-up for the examples: module paths when run from the repository root, and a
-- client for the real API when its key is set, else for the mock server (the one `make demo`
-- starts, in LLM_MOCK_URL, or one started for the run).
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = (os.getenv("LLM_BUILD") or "build") .. "/?.so;" .. package.cpath

local llm = require("llm")

local M = { llm = llm }

local DEFAULTS = {
  openai = { env = "OPENAI_API_KEY", model = "gpt-4.1-mini", mock = "/v1" },
  anthropic = { env = "ANTHROPIC_API_KEY", model = "claude-sonnet-4-5", mock = "" },
  gemini = { env = "GEMINI_API_KEY", model = "gemini-2.5-flash", mock = "/v1beta" },
  ollama = { env = "OLLAMA_BASE_URL", model = "llama3.2", mock = "" },   -- a local server, no key
}

local mock_url
local mock_guard   -- anchors the server's stopper until exit
--- The mock server's address: LLM_MOCK_URL (make demo sets it), else a server started
-- from build/llm-mock for this run and stopped at exit.
function M.mock_url()
  mock_url = mock_url or os.getenv("LLM_MOCK_URL")
  if mock_url then return mock_url end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  assert(os.execute(("build/llm-mock --port 0 --port-file %s/port --quiet >/dev/null 2>&1 & echo $! > %s/pid")
    :format(dir, dir)))
  local port
  for _ = 1, 100 do
    local f = io.open(dir .. "/port")
    if f then port = f:read("n"); f:close() end
    if port then break end
    os.execute("sleep 0.05")
  end
  local pid = assert(io.open(dir .. "/pid")):read("n")
  assert(port, "the mock server did not start (build it: make build)")
  mock_guard = setmetatable({}, { __gc = function() os.execute(("kill %d; rm -rf %s"):format(pid, dir)) end })
  mock_url = "http://127.0.0.1:" .. port
  return mock_url
end

--- A client for `provider`: the real service when its key is set, else the mock server,
-- with `mock_headers` (x-mock-* controls) on every request. Returns client, mocked.
function M.client(provider, opts, mock_headers)
  local d = assert(DEFAULTS[provider], "provider: openai, anthropic, gemini or ollama")
  opts = opts or {}
  opts.model = opts.model or d.model
  if os.getenv(d.env) then return llm.client(provider, opts), false end
  opts.base_url = M.mock_url() .. d.mock
  opts.api_key = "mock-key"
  opts.headers = opts.headers or {}
  for k, v in pairs(mock_headers or {}) do opts.headers[k] = v end
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
