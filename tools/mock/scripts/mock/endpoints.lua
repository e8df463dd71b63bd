-- Endpoints beyond chat, each in the shape its provider's API reference gives:
--   embeddings   OpenAI POST /embeddings, Gemini POST /models/{m}:batchEmbedContents and
--                :embedContent, Ollama POST /api/embed
--   token counts Anthropic POST /v1/messages/count_tokens, Gemini POST /models/{m}:countTokens
--   model lists  OpenAI GET /models, Anthropic GET /v1/models (with anthropic-version; pages
--                by limit / after_id), Gemini GET /models (pageSize / pageToken), Ollama GET /api/tags
--   stored responses (Responses API) GET /responses/{id} (?stream=true&starting_after=n) and
--                POST /responses/{id}/cancel
-- Every OpenAI path is also served under /v1 and under Azure's /openai/v1.
--
-- Embedding vectors are deterministic and carry meaning: each word (lower-cased, stop words
-- dropped, a plural "s" cut) adds to a dimension picked by a hash of the word, and the vector
-- is scaled to length 1. Texts that share words point the same way, so a cosine-similarity
-- search over them finds the sentence that shares the query's words.
local json = require "mock.json"
local util = require "mock.util"
local responses = require "mock.providers.openai_responses"
local O, A, null = json.O, json.A, json.null

local M = {}

local DIMENSIONS = 64

local STOP = {}
for w in ([[a an the and or of to in on at by for with is are was were be been it its this that
  these those what which who whom how why when where do does did can could should would will i
  you he she we they me my your our their his her them us as from into about than then so not
  no yes there here has have had]]):gmatch("%a+") do STOP[w] = true end

local function hash(s)   -- FNV-1a, 32 bits
  local h = 2166136261
  for i = 1, #s do h = ((h ~ s:byte(i)) * 16777619) & 0xFFFFFFFF end
  return h
end

--- The embedding of a text: a list of `dims` numbers of length 1. A text without a content
--- word gets the first unit vector.
function M.vector(text, dims)
  dims = dims or DIMENSIONS
  local v = {}
  for i = 1, dims do v[i] = 0 end
  for w in tostring(text):lower():gmatch("%a+") do
    if not STOP[w] then
      if #w > 3 and w:sub(-1) == "s" and w:sub(-2) ~= "ss" then w = w:sub(1, -2) end
      local h = hash(w)
      local sign = (h >> 16) & 1 == 1 and -1 or 1
      local i = h % dims + 1
      v[i] = v[i] + sign
    end
  end
  local n = 0
  for i = 1, dims do n = n + v[i] * v[i] end
  if n == 0 then v[1], n = 1, 1 end
  n = math.sqrt(n)
  for i = 1, dims do v[i] = v[i] / n end
  return v
end

local function floats(v)
  local out = A()
  for i, x in ipairs(v) do out[i] = x + 0.0 end
  return out
end

local function jsonr(status, obj, extra_headers)
  local h = { { "content-type", "application/json" } }
  for _, x in ipairs(extra_headers or {}) do h[#h + 1] = x end
  return { status = status, headers = h, body = json.encode(obj) }
end

local function openai_error(status, msg, code)
  return jsonr(status, O("error", O("message", msg, "type", "invalid_request_error", "param", null,
    "code", code or null)))
end

local function gemini_error(status, msg)
  local st = status == 404 and "NOT_FOUND" or "INVALID_ARGUMENT"
  return jsonr(status, O("error", O("code", status, "message", msg, "status", st)))
end

local function texts_of(input)
  if type(input) == "string" then return { input } end
  if type(input) ~= "table" or #input == 0 then return nil end
  for _, t in ipairs(input) do if type(t) ~= "string" then return nil end end
  return input
end

local function dims_of(v)
  if v == nil then return nil end
  if math.type(v) ~= "integer" or v < 1 or v > 4096 then return false end
  return v
end

---------------------------------------------------------------- embeddings

local function openai_embeddings(req, ctx, body)
  if type(body) ~= "table" or type(body.model) ~= "string" then
    return openai_error(400, "you must provide a model parameter")
  end
  local texts = texts_of(body.input)
  if not texts then return openai_error(400, "'input' must be a string or a non-empty array of strings") end
  local dims = dims_of(body.dimensions)
  if dims == false then return openai_error(400, "Invalid value for 'dimensions'") end
  local data, tokens = A(), 0
  for i, t in ipairs(texts) do
    data[i] = O("object", "embedding", "index", i - 1, "embedding", floats(M.vector(t, dims)))
    tokens = tokens + util.count_tokens(t)
  end
  return jsonr(200, O("object", "list", "data", data, "model", body.model,
    "usage", O("prompt_tokens", tokens, "total_tokens", tokens)),
    { { "x-request-id", "req_mock" .. ctx.seq } })
end

local function content_text(content)
  local out = {}
  if type(content) == "table" and type(content.parts) == "table" then
    for _, p in ipairs(content.parts) do
      if type(p) == "table" and type(p.text) == "string" then out[#out + 1] = p.text end
    end
  end
  return #out > 0 and table.concat(out, " ") or nil
end

local function gemini_embed_one(r, model)
  if type(r) ~= "table" then return nil, "each request must be an object" end
  if r.model ~= nil and r.model ~= "models/" .. model then
    return nil, "Model in request " .. tostring(r.model) .. " does not match the batch model models/" .. model
  end
  local text = content_text(r.content)
  if not text then return nil, "content must have parts with text" end
  local dims = dims_of(r.outputDimensionality)
  if dims == false then return nil, "outputDimensionality must be a positive integer" end
  return O("values", floats(M.vector(text, dims)))
end

local function gemini_batch_embed(req, ctx, body, model)
  if type(body) ~= "table" or type(body.requests) ~= "table" or #body.requests == 0 then
    return gemini_error(400, "* BatchEmbedContentsRequest.requests: at least one request is required")
  end
  local out = A()
  for i, r in ipairs(body.requests) do
    local e, err = gemini_embed_one(r, model)
    if not e then return gemini_error(400, "requests[" .. (i - 1) .. "]: " .. err) end
    out[i] = e
  end
  return jsonr(200, O("embeddings", out))
end

local function gemini_embed(req, ctx, body, model)
  local e, err = gemini_embed_one(body, model)
  if not e then return gemini_error(400, err) end
  return jsonr(200, O("embedding", e))
end

local function ollama_embed(req, ctx, body)
  if type(body) ~= "table" or type(body.model) ~= "string" then
    return jsonr(400, O("error", "model is required"))
  end
  local texts = texts_of(body.input)
  if not texts then return jsonr(400, O("error", "invalid input type")) end
  local dims = dims_of(body.dimensions)
  if dims == false then return jsonr(400, O("error", "dimensions must be a positive integer")) end
  local out, tokens = A(), 0
  for i, t in ipairs(texts) do
    out[i] = floats(M.vector(t, dims))
    tokens = tokens + util.count_tokens(t)
  end
  return jsonr(200, O("model", body.model, "embeddings", out, "total_duration", 14143917,
    "load_duration", 1019500, "prompt_eval_count", tokens))
end

---------------------------------------------------------------- token counts

-- Words in every string under `v` (a rough count that moves with the input).
local function words(v, acc)
  acc = acc or { n = 0 }
  if type(v) == "string" then
    for _ in v:gmatch("%S+") do acc.n = acc.n + 1 end
  elseif type(v) == "table" then
    for k, x in pairs(v) do
      if k ~= "model" and k ~= "role" and k ~= "type" then words(x, acc) end
    end
  end
  return acc.n
end

-- The fields /v1/messages/count_tokens takes (its reference: no max_tokens, no stream).
local COUNT_FIELDS = { model = true, messages = true, system = true, tools = true, tool_choice = true,
                       thinking = true, mcp_servers = true, context_management = true,
                       output_config = true, output_format = true }

local function anthropic_count(req, ctx, body)
  local function bad(msg)
    return jsonr(400, O("type", "error", "error", O("type", "invalid_request_error", "message", msg),
      "request_id", "req_mock" .. ctx.seq))
  end
  if type(body) ~= "table" then return bad("body must be a JSON object") end
  if type(body.model) ~= "string" then return bad("model: Field required") end
  if type(body.messages) ~= "table" then return bad("messages: Field required") end
  for k in pairs(body) do
    if not COUNT_FIELDS[k] then return bad(k .. ": Extra inputs are not permitted") end
  end
  return jsonr(200, O("input_tokens", words(body.messages) + words(body.system) + words(body.tools)),
    { { "request-id", "req_mock" .. ctx.seq } })
end

local function gemini_count(req, ctx, body, model)
  if type(body) ~= "table" then return gemini_error(400, "body must be a JSON object") end
  local n
  if body.generateContentRequest ~= nil then
    local g = body.generateContentRequest
    if body.contents ~= nil then
      return gemini_error(400, "contents and generateContentRequest cannot both be set")
    end
    if type(g) ~= "table" or g.model ~= "models/" .. model then
      return gemini_error(400, "generateContentRequest.model must be models/" .. model)
    end
    n = words(g.contents) + words(g.systemInstruction) + words(g.tools)
  elseif type(body.contents) == "table" then
    n = words(body.contents)
  else
    return gemini_error(400, "either contents or generateContentRequest is required")
  end
  return jsonr(200, O("totalTokens", n, "promptTokensDetails", A(O("modality", "TEXT", "tokenCount", n))))
end

---------------------------------------------------------------- model lists

local OPENAI_MODELS = {
  { "gpt-4.1-mini", 1744318173, "system" }, { "gpt-4.1", 1744316542, "system" },
  { "text-embedding-3-small", 1705948997, "system" },
}
local ANTHROPIC_MODELS = {
  { "claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z" },
  { "claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z" },
  { "claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z" },
}
local GEMINI_MODELS = {
  { "gemini-2.5-flash", "Gemini 2.5 Flash", { "generateContent", "countTokens" } },
  { "gemini-2.5-pro", "Gemini 2.5 Pro", { "generateContent", "countTokens" } },
  { "gemini-embedding-001", "Gemini Embedding 001", { "embedContent", "batchEmbedContents" } },
}
local OLLAMA_MODELS = { "llama3.2:latest", "nomic-embed-text:latest" }

local function query_param(req, name)
  for k, v in ("&" .. (req.query or "")):gmatch("&([^=&]+)=([^&]*)") do
    if k == name then return (v:gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end)) end
  end
  return nil
end

local function openai_models(req, ctx)
  local data = A()
  for i, m in ipairs(OPENAI_MODELS) do
    data[i] = O("id", m[1], "object", "model", "created", m[2], "owned_by", m[3])
  end
  return jsonr(200, O("object", "list", "data", data), { { "x-request-id", "req_mock" .. ctx.seq } })
end

-- x-mock-page-size: N caps the page size a client asked for, so paging can be tested.
local function page_cap(req, n)
  local cap = math.tointeger(tonumber(req.headers["x-mock-page-size"] or ""))
  if cap and n and cap < n then return cap end
  return n
end

local function anthropic_models(req, ctx)
  local limit = math.tointeger(tonumber(query_param(req, "limit") or "20"))
  if not limit or limit < 1 or limit > 1000 then
    return jsonr(400, O("type", "error", "error", O("type", "invalid_request_error",
      "message", "limit: Input should be less than or equal to 1000")))
  end
  limit = page_cap(req, limit)
  local after = query_param(req, "after_id")
  local start = 1
  if after then
    start = nil
    for i, m in ipairs(ANTHROPIC_MODELS) do if m[1] == after then start = i + 1 end end
    if not start then
      return jsonr(404, O("type", "error", "error", O("type", "not_found_error", "message", "after_id not found")))
    end
  end
  local data = A()
  local last = math.min(#ANTHROPIC_MODELS, start + limit - 1)
  for i = start, last do
    local m = ANTHROPIC_MODELS[i]
    data[#data + 1] = O("type", "model", "id", m[1], "display_name", m[2], "created_at", m[3])
  end
  local first_m, last_m = ANTHROPIC_MODELS[start], ANTHROPIC_MODELS[last]
  return jsonr(200, O("data", data, "has_more", last < #ANTHROPIC_MODELS,
    "first_id", #data > 0 and first_m[1] or null, "last_id", #data > 0 and last_m[1] or null),
    { { "request-id", "req_mock" .. ctx.seq } })
end

local function gemini_models(req, ctx)
  local size = page_cap(req, math.tointeger(tonumber(query_param(req, "pageSize") or "50")) or 50)
  local start = math.tointeger(tonumber(query_param(req, "pageToken") or "1")) or 1
  local list = A()
  for i = start, math.min(#GEMINI_MODELS, start + size - 1) do
    local m = GEMINI_MODELS[i]
    list[#list + 1] = O("name", "models/" .. m[1], "version", "001", "displayName", m[2],
      "inputTokenLimit", 1048576, "outputTokenLimit", 65536, "supportedGenerationMethods", A(table.unpack(m[3])))
  end
  local nxt = start + size
  return jsonr(200, O("models", list, "nextPageToken", nxt <= #GEMINI_MODELS and tostring(nxt) or nil))
end

local function ollama_tags()
  local list = A()
  for i, name in ipairs(OLLAMA_MODELS) do
    list[i] = O("name", name, "model", name, "modified_at", "2025-05-04T17:37:44.706015396-07:00",
      "size", 2019393189, "digest", string.format("%064x", i),
      "details", O("parent_model", "", "format", "gguf", "family", "llama", "families", A("llama"),
        "parameter_size", "3.2B", "quantization_level", "Q4_K_M"))
  end
  return jsonr(200, O("models", list))
end

---------------------------------------------------------------- stored responses

local function stored_response(req, ctx, id, tail)
  local s = responses.stored[id]
  if not s then
    return openai_error(404, "Response with id '" .. id .. "' not found.")
  end
  if tail == "/cancel" then
    if req.method ~= "POST" then return openai_error(405, "Method not allowed") end
    if not s.background then
      return openai_error(400, "Only responses created with background=true can be cancelled.")
    end
    if s.status == "queued" or s.status == "in_progress" then s.status = "cancelled" end
    return responses.stored_object(s)
  end
  if req.method ~= "GET" then return openai_error(405, "Method not allowed") end
  if query_param(req, "stream") == "true" then
    if not s.background then
      return openai_error(400, "Only responses created with background=true can be streamed again.")
    end
    local after = math.tointeger(tonumber(query_param(req, "starting_after") or "-1")) or -1
    s.status = "completed"
    return responses.stored_stream(s, after)
  end
  -- each fetch moves a background response on by one state: queued, in_progress, completed
  local obj = responses.stored_object(s)
  if s.status == "queued" then s.status = "in_progress"
  elseif s.status == "in_progress" then s.status = "completed" end
  return obj
end

---------------------------------------------------------------- routing

--- The endpoint of a request: { shape = <mock provider name>, handle = fn(req, ctx, body) },
--- or nil for the chat routes and unknown paths.
function M.route(req)
  local path, m = req.path, req.method
  local p = path:gsub("^/openai/v1/", "/"):gsub("^/v1/", "/")
  if m == "POST" and p == "/embeddings" then return { shape = "openai_chat", handle = openai_embeddings } end
  if m == "POST" and path == "/api/embed" then return { shape = "ollama", handle = ollama_embed } end
  if m == "GET" and path == "/api/tags" then return { shape = "ollama", handle = ollama_tags } end
  if m == "POST" and path == "/v1/messages/count_tokens" then
    return { shape = "anthropic", handle = anthropic_count }
  end
  if m == "GET" and path == "/v1/models" and req.headers["anthropic-version"] then
    return { shape = "anthropic", handle = anthropic_models }
  end
  if m == "GET" and path:match("^/v1[%w]*/models$") and path ~= "/v1/models" then
    return { shape = "gemini", handle = gemini_models }
  end
  if m == "GET" and p == "/models" then return { shape = "openai_chat", handle = openai_models } end
  local model, method = path:match("^/v1[%w]*/models/([^/:]+):(%a+)$")
  if model and m == "POST" then
    local h = ({ batchEmbedContents = gemini_batch_embed, embedContent = gemini_embed,
                 countTokens = gemini_count })[method]
    if h then
      return { shape = "gemini", handle = function(r, ctx, body) return h(r, ctx, body, model) end }
    end
  end
  local id, tail = p:match("^/responses/([^/]+)(/?[%a]*)$")
  if id and (tail == "" or tail == "/cancel") then
    return { shape = "openai_responses", handle = function(r, ctx) return stored_response(r, ctx, id, tail) end }
  end
  return nil
end

return M
