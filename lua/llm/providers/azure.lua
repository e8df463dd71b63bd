-- llm.providers.azure: Azure OpenAI through its v1 API, which speaks the OpenAI wire format
-- (Chat Completions, the Responses API, embeddings, models) under `<resource>/openai/v1`.
--
-- Choices particular to Azure:
-- * The key goes in the `api-key` header (AZURE_OPENAI_API_KEY); a Bearer token from Entra ID
--   can be sent instead with `api_key = false` and `headers = { authorization = ... }`.
-- * The base URL is AZURE_OPENAI_ENDPOINT (or `base_url`): the resource endpoint
--   (`https://NAME.openai.azure.com`, to which `/openai/v1` is added) or the full URL. There
--   is no default host, so a key is never sent anywhere the user did not name.
-- * `model` is the deployment name.
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat

local openai = require("llm.providers.openai")

local P = openai.derive{
  name = "azure",
  api_key_env = "AZURE_OPENAI_API_KEY",
  base_url_env = "AZURE_OPENAI_ENDPOINT",
}
P.base_url = nil   -- no default: the resource endpoint is the user's own
P.base = nil       -- a complete provider: nothing is inherited at resolution

function P.auth_headers(api_key)
  if api_key == nil or api_key == false or api_key == "" then return {} end
  return { ["api-key"] = api_key }
end

--- The base URL of the v1 API for a resource endpoint (`/openai/v1` added when the URL has
--- no path, `/v1` when it ends in `/openai`); a URL with any other path is used as given.
function P.normalize_base_url(url)
  local path = url:match("^%a[%w+.-]*://[^/?#]+(.*)$") or ""
  if path == "" or path == "/" then return (url:gsub("/+$", "")) .. "/openai/v1" end
  if path:match("^/openai/?$") then return (url:gsub("/+$", "")) .. "/v1" end
  return url
end

return P
