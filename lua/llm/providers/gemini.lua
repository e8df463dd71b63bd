-- llm.providers.gemini: translation for the Google Gemini API (generateContent and
-- streamGenerateContent?alt=sse). The provider contract is described at the top of
-- llm/providers/openai.lua; this module follows it.
--
-- Choices particular to Gemini:
-- * The key goes only in the `x-goog-api-key` header, never in the URL.
-- * `system` and system-role messages become `systemInstruction`; assistant turns have
--   role "model"; tool results become `functionResponse` parts of one user turn
--   (consecutive results merged), named by the tool message's `name` (else the name of the
--   call with that id earlier in the history), with `response = { output = ... }` or
--   `{ error = ... }` when `is_error`.
-- * Gemini's `thoughtSignature` is kept as `provider_data = { provider = "gemini",
--   thought_signature = ... }` on the tool call, reasoning part or text part it came with,
--   and sent back on the same kind of part; thought parts (`thought: true`) are reasoning.
-- * Function calls often have no id: the normalized id is then generated, `call_<n>` for
--   the n-th call of the response, and `provider_data.id_generated` says so; such an id is
--   not sent back to Gemini (a history replays to other providers with it).
-- * finish_reason: STOP -> tool_calls when a functionCall part is present, else stop;
--   MAX_TOKENS -> length; SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII,
--   IMAGE_SAFETY -> content_filter; anything else -> error. A prompt blocked before any
--   candidate (`promptFeedback.blockReason`) -> content_filter.
-- * usage: input = promptTokenCount, output = candidatesTokenCount + thoughtsTokenCount,
--   reasoning_tokens = thoughtsTokenCount, from the last chunk that reports usage (the
--   counts may go down between chunks).
-- * Errors are google.rpc status bodies: ErrorInfo reason API_KEY_INVALID -> auth; a 429
--   is quota only when a QuotaFailure quota id contains "PerDay"; RetryInfo.retryDelay
--   ("34.4s") becomes `retry_after` seconds.
-- * A stream is complete iff a finishReason (or a blockReason) arrived. finish_stream's
--   `raw` is a rebuilt GenerateContentResponse (one candidate with all parts merged).
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT

local json = require("llm.json")
local C = require("llm.providers.common")
local add_piece = C.add_piece
local media = require("llm.media")

local type, ipairs, concat = type, ipairs, table.concat
local null = json.null
local val, str = C.val, C.str

local PROVIDER = "gemini"

local P = {
  name = "gemini", base_url = "https://generativelanguage.googleapis.com/v1beta",
  api_key_env = "GEMINI_API_KEY", base_url_env = "GEMINI_BASE_URL",
  framing = "sse",
  -- the optional contract fields (API §9) this API maps, and the part types it takes
  request_fields = { n = true, seed = true, top_k = true, presence_penalty = true,
                     frequency_penalty = true, logprobs = true, top_logprobs = true },
  -- every media part, inline (data) or by URI (url); documented limits: 100 MB of inline
  -- data per request, 50 MB per PDF
  part_types = { text = true, image = true, file = true, audio = true },
  media_limits = { file = 50 * 1048576, request = 100 * 1048576 },
}

function P.auth_headers(api_key)
  if api_key == nil or api_key == false or api_key == "" then return {} end
  return { ["x-goog-api-key"] = api_key }
end

---------------------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------------------

local FINISH = { STOP = "stop", MAX_TOKENS = "length", SAFETY = "content_filter",
                 RECITATION = "content_filter", BLOCKLIST = "content_filter",
                 PROHIBITED_CONTENT = "content_filter", SPII = "content_filter",
                 IMAGE_SAFETY = "content_filter" }

local map_finish = C.finish_mapper(FINISH, "error", "STOP")
P.map_finish = map_finish

-- Thinking budgets for an effort when no budget_tokens is given (Gemini 2.5 models).
local EFFORT_BUDGET = { minimal = 0, low = 1024, medium = 8192, high = 24576 }

local function signature_of(pd)
  pd = C.own_data(pd, PROVIDER)
  return pd and pd.thought_signature
end

-- An image, file or audio part (resolved by llm.media): inline_data, or file_data for a URL.
local function image_part(p)
  local default = p.type == "image" and "image/png" or nil
  if p.data then
    return { inline_data = { mime_type = p.mime_type or default, data = p.data } }
  end
  local url = p.url or ""
  local mime, b64 = url:match("^data:([^;,]+);base64,(.*)$")
  if mime then return { inline_data = { mime_type = mime, data = b64 } } end
  return { file_data = { mime_type = p.mime_type or media.mime_of(url)
                           or (p.type == "image" and "image/jpeg" or nil), file_uri = url } }
end

-- A text part; an empty text part is left out unless it carries a signature (a bare string
-- in a list is kept).
local function text_part(s, part)
  if not part then return { text = s } end
  local sig = signature_of(part.provider_data)
  if s ~= "" or sig then return { text = s, thoughtSignature = sig } end
  return nil
end

-- Thought parts come back only when they came from Gemini; file and audio parts map as
-- images do.
local function thought_part(p)
  if p.type == "file" or p.type == "audio" then return image_part(p) end
  if p.type ~= "reasoning" then return nil end
  local pd = C.own_data(p.provider_data, PROVIDER)
  if not pd then return nil end
  return { text = p.text or "", thought = true, thoughtSignature = pd.thought_signature }
end

-- Parts of a user or model turn.
local function parts_of(content)
  if type(content) == "string" then
    local out = json.array()
    if content ~= "" then out[1] = { text = content } end
    return out
  end
  return C.map_parts(content or {}, text_part, image_part, thought_part)
end

local function function_response(m, names, generated)
  local name = m.name or (m.tool_call_id and names[m.tool_call_id])
  local value = m.content
  if type(value) ~= "table" or (type(value[1]) == "table" and value[1].type == "text") then
    value = C.tool_result_text(value)
  end
  local response = m.is_error and { error = value } or { output = value }
  local fr = { name = name, response = response }
  if m.tool_call_id and not generated[m.tool_call_id] then fr.id = m.tool_call_id end
  return { functionResponse = fr }
end

-- Keywords Gemini's OpenAPI-subset Schema does not take.
local DROP_SCHEMA_KEYS = { additionalProperties = true, ["$schema"] = true, ["$id"] = true,
                           strict = true }

local function gemini_schema(s)
  if type(s) ~= "table" or s == null then return s end
  local out = {}
  for k, v in each(s) do
    if not (type(k) == "string" and DROP_SCHEMA_KEYS[k]) then
      out[k] = type(v) == "table" and gemini_schema(v) or v
    end
  end
  return setmetatable(out, getmetatable(s))
end

local function has_properties(schema)
  if type(schema) ~= "table" then return false end
  if schema.type ~= nil and schema.type ~= "object" then return true end
  return type(schema.properties) == "table" and next(schema.properties) ~= nil
end

-- Gemini's `tools` list: one entry with every functionDeclaration, then hosted tools.
local function tools_out(tools)
  local decls = json.array()
  local out = json.array()
  for _, t in ipairs(tools) do
    local fn = t
    if t.type == "function" and type(t["function"]) == "table" then fn = t["function"] end
    if fn.name and C.is_function_tool(t) then
      local d = { name = fn.name, description = fn.description }
      if has_properties(fn.parameters) then d.parameters = gemini_schema(C.schema(fn.parameters)) end
      decls[#decls + 1] = d
    elseif type(t.type) == "string" then
      -- hosted tool { type = "google_search", ... } -> { google_search = { ... } }
      local cfg = json.object()
      for k, v in each(t) do if k ~= "type" then cfg[k] = v end end
      out[#out + 1] = { [t.type] = cfg }
    else
      out[#out + 1] = t -- already wire-shaped ({ googleSearch = {} } ...)
    end
  end
  if #decls > 0 then table.insert(out, 1, { functionDeclarations = decls }) end
  return out
end

local function tool_config(tc)
  if tc == nil then return nil end
  local cfg
  if tc == "auto" then cfg = { mode = "AUTO" }
  elseif tc == "none" then cfg = { mode = "NONE" }
  elseif tc == "required" or tc == "any" then cfg = { mode = "ANY" }
  elseif type(tc) == "table" and tc.name then
    cfg = { mode = "ANY", allowedFunctionNames = json.array({ tc.name }) }
  elseif type(tc) == "table" then return tc -- already a toolConfig
  else return nil end
  return { functionCallingConfig = cfg }
end

local function thinking_config(r, model)
  if r == nil or r == false then return nil end
  if r == true then return { includeThoughts = true } end
  if type(r) ~= "table" then return nil end
  local cfg = { includeThoughts = r.include_thoughts ~= false }
  if r.budget_tokens then
    cfg.thinkingBudget = r.budget_tokens
  elseif r.effort then
    if type(model) == "string" and model:find("gemini%-3") then
      cfg.thinkingLevel = r.effort
    else
      cfg.thinkingBudget = EFFORT_BUDGET[r.effort]
    end
  end
  return cfg
end

-- The turn of a user or model message; `names` learns the name of each call's id.
local function content_out(m, names, generated)
  if m.role ~= "assistant" and m.role ~= "model" then
    return { role = "user", parts = parts_of(m.content) }
  end
  local parts = parts_of(m.content)
  for _, call in ipairs(m.tool_calls or {}) do
    if call.id and call.name then names[call.id] = call.name end
    local fc = { name = call.name, args = C.arguments_table(call) }
    local pd = C.own_data(call.provider_data, PROVIDER)
    if call.id and not (pd and pd.id_generated) then fc.id = call.id end
    if pd and pd.id_generated and call.id then generated[call.id] = true end
    parts[#parts + 1] = { functionCall = fc, thoughtSignature = signature_of(call.provider_data) }
  end
  return { role = "model", parts = parts }
end

-- "models/<name>" for a model name given with or without the prefix.
local function model_name(model)
  return "models/" .. tostring(model or ""):gsub("^models/", "")
end

-- The path of a method on a model: the name is one escaped path segment.
local function model_path(model, method)
  return "/models/" .. C.url_escape((tostring(model or ""):gsub("^models/", ""))) .. ":" .. method
end

function P.build_request(req)
  local names = {} -- tool-call id -> name, for results that carry no name
  local generated = {} -- ids this library made up, which Gemini never saw
  local system, contents = C.turns(req, "parts",
    function(m) return function_response(m, names, generated) end,
    function(m) return content_out(m, names, generated) end)

  local body = { contents = contents }
  if #system > 0 then
    body.systemInstruction = { parts = json.array({ { text = concat(system, "\n\n") } }) }
  end
  if type(req.tools) == "table" and #req.tools > 0 then body.tools = tools_out(req.tools) end
  body.toolConfig = tool_config(req.tool_choice)

  local gc = {}
  gc.maxOutputTokens = req.max_tokens
  gc.temperature = req.temperature
  gc.topP = req.top_p
  gc.stopSequences = C.stop_list(req.stop)
  gc.candidateCount = req.n
  gc.seed = req.seed
  gc.topK = req.top_k
  gc.presencePenalty = req.presence_penalty
  gc.frequencyPenalty = req.frequency_penalty
  gc.responseLogprobs = req.logprobs
  gc.logprobs = req.top_logprobs
  local rf = req.response_format
  if type(rf) == "table" then
    if rf.type == "json_schema" then
      gc.responseMimeType = "application/json"
      if rf.schema then gc.responseSchema = gemini_schema(C.schema(rf.schema)) end
    elseif rf.type == "json_object" then
      gc.responseMimeType = "application/json"
    end
  end
  gc.thinkingConfig = thinking_config(req.reasoning, req.model)
  if next(gc) ~= nil then body.generationConfig = gc end

  -- the model is one path segment: "a/../../x" must not walk the path
  local path = model_path(req.model, req.stream and "streamGenerateContent?alt=sse" or "generateContent")
  return C.post(path, body, req)
end

--- Embeddings of several texts in one call (POST /models/{model}:batchEmbedContents).
function P.build_embed(req)
  local requests = json.array()
  for i, text in ipairs(req.input) do
    requests[i] = { model = model_name(req.model), content = { parts = json.array({ { text = text } }) },
                    outputDimensionality = req.dimensions }
  end
  local body = { requests = requests }
  C.merge_extra(body, req.extra)
  return { method = "POST", path = model_path(req.model, "batchEmbedContents"), body = body }
end

function P.decode_embed(body, req)
  local vectors = {}
  local list = type(body) == "table" and val(body.embeddings) or nil
  for i, e in ipairs(type(list) == "table" and list or {}) do
    vectors[i] = C.vector(type(e) == "table" and val(e.values) or nil)
  end
  return { vectors = vectors, model = req and req.model, usage = {} }
end

--- The token count of the request a chat call would send (POST /models/{model}:countTokens,
--- with the whole generateContent request so the system prompt and tools count too).
function P.build_count_tokens(req)
  local built = P.build_request(req)
  local inner = built.body
  inner.model = model_name(req.model)
  built.body = { generateContentRequest = inner }
  built.path = model_path(req.model, "countTokens")
  return built
end

function P.decode_count_tokens(body)
  return { input_tokens = type(body) == "table" and C.int(val(body.totalTokens)) or nil }
end

-- GET /models pages through `pageToken`; 1000 is the largest page the API serves.
function P.build_models(page)
  local query = { pageSize = "1000" }
  if page then query.pageToken = page end
  return { method = "GET", path = "/models", query = query }
end

function P.decode_models(body)
  local out = {}
  local list = type(body) == "table" and val(body.models) or nil
  for _, m in ipairs(type(list) == "table" and list or {}) do
    if type(m) == "table" and str(m.name) then
      out[#out + 1] = { id = (m.name:gsub("^models/", "")), raw = m }
    end
  end
  local tok = type(body) == "table" and str(body.nextPageToken) or nil
  return out, (tok and tok ~= "") and tok or nil
end

---------------------------------------------------------------------------------------
-- Responses
---------------------------------------------------------------------------------------

local function usage_of(u)
  if type(u) ~= "table" or u == null then return {} end
  local cand, thoughts = C.int(val(u.candidatesTokenCount)), C.int(val(u.thoughtsTokenCount))
  local output
  if cand or thoughts then output = (cand or 0) + (thoughts or 0) end
  local extra = {}
  if thoughts then extra.reasoning_tokens = thoughts end
  if val(u.cachedContentTokenCount) ~= nil then extra.cached_input_tokens = u.cachedContentTokenCount end
  return C.usage(u.promptTokenCount, output, u.totalTokenCount, extra)
end

-- Gathers the parts of one candidate into `g` = { text, reasoning, parts, calls }:
-- runs of text / thought parts merge into one normalized part; a signature opens a new one
-- only when the current part already has one.
local function new_gather()
  return { text = {}, reasoning = {}, parts = {}, calls = {}, cur = nil }
end

local function add_text(g, kind, text, sig)
  local cur = g.cur
  if not cur or cur.kind ~= kind or (sig and cur.sig) then
    cur = { kind = kind, text = {}, sig = nil }
    g.parts[#g.parts + 1] = cur
    g.cur = cur
  end
  add_piece(cur.text, text)
  if sig then cur.sig = sig end
end

local function add_call(g, fc, sig)
  local id, pd = str(fc.id), sig and { provider = PROVIDER, thought_signature = sig } or nil
  if not id then   -- unique within the response, so a history replays to any provider
    id = "call_" .. (#g.calls + 1)
    pd = pd or { provider = PROVIDER }
    pd.id_generated = true
  end
  local call = C.decoded_tool_call(id, str(fc.name), val(fc.args), "{}", pd)
  g.calls[#g.calls + 1] = call
  g.parts[#g.parts + 1] = { kind = "call", call = call }
  g.cur = nil
end

-- Reads one candidate's parts; returns the text and reasoning it added.
local function read_parts(g, parts)
  local text, reasoning = {}, {}
  for _, p in ipairs(type(parts) == "table" and parts or {}) do
    if type(p) == "table" then
      local sig = str(p.thoughtSignature) or str(p.thought_signature)
      local fc = val(p.functionCall) or val(p.function_call)
      if type(fc) == "table" then
        add_call(g, fc, sig)
      elseif str(p.text) then
        if p.thought == true then
          reasoning[#reasoning + 1] = p.text
          add_piece(g.reasoning, p.text)
          add_text(g, "thought", p.text, sig)
        else
          text[#text + 1] = p.text
          add_piece(g.text, p.text)
          if p.text ~= "" or sig then add_text(g, "text", p.text, sig) end
        end
      elseif sig and g.cur then
        g.cur.sig = g.cur.sig or sig
      end
      -- executableCode, codeExecutionResult, inlineData ... stay in `raw`
    end
  end
  return concat(text), concat(reasoning)
end

-- The normalized message content and wire parts (for a rebuilt raw body) of a gather.
local function message_of(g)
  local content, wire = {}, json.array()
  local plain = true
  for _, part in ipairs(g.parts) do
    if part.kind == "call" then
      local c = part.call
      local fc = { name = c.name, args = c.arguments or json.object() }
      if c.id and not (c.provider_data and c.provider_data.id_generated) then fc.id = c.id end
      wire[#wire + 1] = { functionCall = fc,
        thoughtSignature = c.provider_data and c.provider_data.thought_signature or nil }
    else
      local s = concat(part.text)
      local pd = part.sig and { provider = PROVIDER, thought_signature = part.sig } or nil
      if part.kind == "thought" then
        plain = false
        content[#content + 1] = { type = "reasoning", text = s,
                                  provider_data = pd or { provider = PROVIDER } }
        wire[#wire + 1] = { text = s, thought = true, thoughtSignature = part.sig }
      else
        if pd then plain = false end
        content[#content + 1] = { type = "text", text = s, provider_data = pd }
        wire[#wire + 1] = { text = s, thoughtSignature = part.sig }
      end
    end
  end
  local text = concat(g.text)
  local message = { role = "assistant", content = plain and text or content }
  if #g.calls > 0 then message.tool_calls = g.calls end
  return message, wire
end

local function finish_candidate(g, raw_finish, index)
  local message = message_of(g)
  local text = concat(g.text)
  return { index = index, text = text, tool_calls = g.calls,
           finish_reason = map_finish(raw_finish, #g.calls > 0), raw_finish_reason = raw_finish,
           reasoning = #g.reasoning > 0 and concat(g.reasoning) or nil, message = message }
end

local function block_reason(body)
  local pf = val(body.promptFeedback)
  return type(pf) == "table" and str(pf.blockReason) or nil
end

function P.decode_response(body, req)
  local obj = type(body) == "table" and body or {}
  local cands = val(obj.candidates)
  local list = {}
  for i, cand in ipairs(type(cands) == "table" and cands or {}) do
    local g = new_gather()
    local content = val(cand.content)
    read_parts(g, type(content) == "table" and val(content.parts) or nil)
    list[#list + 1] = finish_candidate(g, str(cand.finishReason), C.int(val(cand.index)) or (i - 1))
  end
  local c0 = list[1]
  if not c0 then
    local g = new_gather()
    c0 = finish_candidate(g, nil, 0)
    local br = block_reason(obj)
    if br then c0.finish_reason, c0.raw_finish_reason = "content_filter", br end
  end
  local resp = {
    text = c0.text, tool_calls = c0.tool_calls, finish_reason = c0.finish_reason,
    raw_finish_reason = c0.raw_finish_reason, usage = usage_of(val(obj.usageMetadata)),
    reasoning = c0.reasoning, message = c0.message,
    id = str(obj.responseId), model = str(obj.modelVersion), raw = body,
  }
  if #list > 1 then resp.choices = list end
  return C.structured(resp, req)
end

---------------------------------------------------------------------------------------
-- Errors
---------------------------------------------------------------------------------------

-- google.rpc status codes, for errors that carry no HTTP status (inside a stream).
local STATUS_KIND = {
  INVALID_ARGUMENT = "bad_request", FAILED_PRECONDITION = "bad_request",
  OUT_OF_RANGE = "bad_request", UNAUTHENTICATED = "auth", PERMISSION_DENIED = "permission",
  NOT_FOUND = "not_found", RESOURCE_EXHAUSTED = "rate_limit", INTERNAL = "server",
  UNAVAILABLE = "server", DEADLINE_EXCEEDED = "timeout", UNKNOWN = "server",
  ABORTED = "server", CANCELLED = "server",
}
P.error_kinds = STATUS_KIND

local DETAIL = "type.googleapis.com/google.rpc."

--- Seconds of a google.protobuf.Duration in JSON form ("34.4s", "2s").
local function duration_seconds(s)
  if type(s) ~= "string" then return nil end
  local n = s:match("^%s*([%d%.]+)s%s*$")
  return n and tonumber(n) or nil
end
P.duration_seconds = duration_seconds

-- Facts from a google.rpc.Status: message, status, code, retry delay, daily quota, reason.
local function status_fields(t)
  local f = {}
  if type(t) == "table" and t[1] ~= nil and t.error == nil then t = t[1] end -- [ {error} ]
  if type(t) ~= "table" then return f end
  local e = val(t.error)
  if type(e) ~= "table" then
    if type(e) == "string" then f.message = e end
    return f
  end
  f.message, f.type, f.code = str(e.message), str(e.status), C.int(val(e.code))
  for _, d in ipairs(type(val(e.details)) == "table" and e.details or {}) do
    if type(d) == "table" then
      local at = str(d["@type"]) or ""
      if at == DETAIL .. "RetryInfo" then
        f.retry_after = duration_seconds(val(d.retryDelay))
      elseif at == DETAIL .. "QuotaFailure" then
        for _, v in ipairs(type(val(d.violations)) == "table" and d.violations or {}) do
          local q = type(v) == "table" and str(v.quotaId) or nil
          if q and q:find("PerDay", 1, true) then f.daily = true end
        end
      elseif at == DETAIL .. "ErrorInfo" then
        f.reason = str(d.reason)
      end
    end
  end
  return f
end

local function kind_of(f, status)
  local kind = status and C.kind_for_status(status) or STATUS_KIND[f.type] or "server"
  if f.reason == "API_KEY_INVALID" or f.type == "UNAUTHENTICATED" then kind = "auth" end
  if f.daily and (kind == "rate_limit" or f.type == "RESOURCE_EXHAUSTED") then kind = "quota" end
  return kind
end

function P.decode_error(status, headers, body_text)
  local t, body = C.decode_body(body_text)
  local f = status_fields(t)
  f.kind, f.request_id = kind_of(f, status), C.request_id(headers)
  local e = C.http_error(status, body_text, body, f)
  e.retry_after, e.reason = f.retry_after, f.reason
  return e
end

---------------------------------------------------------------------------------------
-- Streams
---------------------------------------------------------------------------------------

function P.new_stream_state(req)
  return { req = req, g = new_gather(), usage = {}, raw_usage = nil, finish = nil,
           error = nil, id = nil, model = nil }
end

function P.decode_event(state, ev)
  local name = ev.name
  local obj, derr = json.decode(ev.data)
  if type(obj) ~= "table" or obj == null then return C.bad_json(state, ev, derr) end
  if val(obj.error) ~= nil then
    local f = status_fields(obj)
    return C.stream_error(state, { kind = kind_of(f, nil), message = f.message or "error in stream",
      code = f.code, type = f.type, retry_after = f.retry_after, body = obj }, obj, name)
  end
  state.id = state.id or str(obj.responseId)
  state.model = state.model or str(obj.modelVersion)

  local out, n = {}, 0
  local cands = val(obj.candidates)
  local cand
  if type(cands) == "table" then
    for _, c in ipairs(cands) do
      if type(c) == "table" and (C.int(val(c.index)) or 0) == 0 then cand = c; break end
    end
  end
  local text, reasoning = "", ""
  local first_call = #state.g.calls + 1 -- the calls this record adds start here
  if cand then
    local content = val(cand.content)
    text, reasoning = read_parts(state.g, type(content) == "table" and val(content.parts) or nil)
    local fr = str(cand.finishReason)
    if fr then state.finish = fr end
  end
  local br = block_reason(obj)
  if br and not state.finish then state.finish, state.blocked = br, true end

  -- within one record: reasoning, text, tool calls, usage (API.md §9)
  if reasoning ~= "" then n = n + 1; out[n] = { type = "reasoning", text = reasoning, raw = obj, name = name } end
  if text ~= "" then n = n + 1; out[n] = { type = "text", text = text, raw = obj, name = name } end
  -- Gemini sends each call whole: one delta with every argument, then its done event
  if #state.g.calls >= first_call then
    n = C.push_whole_calls(out, n, state.g.calls, first_call, obj, name)
  end
  local u = val(obj.usageMetadata)
  if type(u) == "table" then n = C.push_usage_of(state, u, usage_of, out, n, obj, name) end
  if n == 0 then out[1] = { type = "raw", raw = obj, name = name } end
  return out
end

function P.finish_stream(state)
  local err = C.unfinished(state, state.finish, "a finishReason")
  if err then return nil, err end
  local g = state.g
  local message, wire = message_of(g)
  local finish = map_finish(state.finish, #g.calls > 0)
  if state.blocked then finish = "content_filter" end
  local raw = { candidates = json.array(), usageMetadata = state.raw_usage,
                modelVersion = state.model, responseId = state.id }
  if not state.blocked then
    raw.candidates[1] = { content = { role = "model", parts = wire }, finishReason = state.finish,
                          index = 0 }
  else
    raw.promptFeedback = { blockReason = state.finish }
  end
  local text = concat(g.text)
  local resp = {
    text = text, tool_calls = g.calls, finish_reason = finish, raw_finish_reason = state.finish,
    usage = C.copy_usage(state.usage), reasoning = #g.reasoning > 0 and concat(g.reasoning) or nil,
    message = message, id = state.id, model = state.model, raw = raw,
  }
  return C.structured(resp, state.req)
end

return P
