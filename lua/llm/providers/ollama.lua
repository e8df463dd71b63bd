-- llm.providers.ollama: translation for Ollama's native chat API (POST /api/chat), whose
-- stream is newline-delimited JSON. The provider contract is described at the top of
-- llm/providers/openai.lua; this module follows it.
--
-- Choices particular to Ollama:
-- * No key is needed (`needs_key = false`); when OLLAMA_API_KEY (or `api_key`) is set it
--   is sent as a Bearer token (Ollama's hosted API, or a proxy in front of a server).
-- * `stream` is always sent: Ollama streams unless told `stream = false`.
-- * Images go in the message's `images` list as base64 (a `data:` URL is unpacked); Ollama
--   cannot take an image by http(s) URL, so such a part raises.
-- * Sampling options go in `options` (num_predict = max_tokens, temperature, top_p, stop);
--   `response_format` json_schema sends the schema as `format`, json_object sends "json".
-- * `reasoning` turns `think` on; an `effort` is passed as the level for gpt-oss models,
--   which take "low" / "medium" / "high"; `reasoning = false` sends `think = false`.
-- * Tool calls arrive whole (arguments already an object); a call without an id gets
--   `call_<n>` (the n-th call of the response), marked `provider_data.id_generated` and not
--   sent back to Ollama. Tool results are `{ role = "tool", content, tool_name }`, the name from the
--   tool message's `name`, else from the call with that id earlier in the history.
-- * Thinking comes back as a reasoning part with `provider_data = { provider = "ollama" }`
--   and is replayed as the assistant message's `thinking`.
-- * finish_reason: tool calls present -> tool_calls; done_reason "length" -> length;
--   anything else with done = true -> stop. A stream is complete iff a line with
--   `done: true` arrived; an `{"error": ...}` line ends it with an error.
-- * usage: input = prompt_eval_count, output = eval_count.
-- * finish_stream's `raw` is the final (`done: true`) line with the whole message
--   (content, thinking, tool_calls) filled in, the shape a non-streamed call returns.
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT

local json = require("llm.json")
local C = require("llm.providers.common")
local add_piece = C.add_piece

local type, ipairs, concat = type, ipairs, table.concat
local null = json.null
local val, str = C.val, C.str
local fast_ollama_text = require("llm.core").fast_ollama_text
local lazy_text_event = C.lazy_text_event

local PROVIDER = "ollama"

local P = {
  name = "ollama", base_url = "http://127.0.0.1:11434", needs_key = false,
  api_key_env = "OLLAMA_API_KEY", base_url_env = "OLLAMA_BASE_URL",
  framing = "ndjson",
  -- the optional contract fields (API §9) this API maps, and the part types it takes
  request_fields = { seed = true, top_k = true, presence_penalty = true, frequency_penalty = true },
  part_types = { text = true, image = { data = true } },   -- base64 in `images`; no URLs, files or audio
}

P.auth_headers = C.bearer_auth

---------------------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------------------

local function map_finish(done_reason, done, has_calls)
  if has_calls then return "tool_calls" end
  if done_reason == "length" then return "length" end
  if done_reason ~= nil or done then return "stop" end
  return nil
end
P.map_finish = map_finish

local function image_data(p)
  if p.data then return p.data end
  local b64 = type(p.url) == "string" and p.url:match("^data:[^;,]*;base64,(.*)$")
  if b64 then return b64 end
  error("ollama: an image part needs base64 `data` (Ollama does not fetch image URLs)", 0)
end

-- text, images and thinking of a message's content.
local function split_content(content)
  if type(content) ~= "table" then return content or "", nil, nil end
  local text, images, thinking = {}, nil, nil
  for _, p in ipairs(content) do
    if type(p) == "string" then
      text[#text + 1] = p
    elseif p.type == "text" then
      text[#text + 1] = p.text
    elseif p.type == "image" then
      images = images or json.array()
      images[#images + 1] = image_data(p)
    elseif p.type == "reasoning" and C.own_data(p.provider_data, PROVIDER)
        and type(p.text) == "string" then
      thinking = (thinking or "") .. p.text
    end
  end
  return concat(text), images, thinking
end

local function message_out(m, names)
  local role = m.role or "user"
  if role == "tool" then
    local out = { role = "tool", content = C.tool_result_text(m.content) }
    local name = m.name or (m.tool_call_id and names[m.tool_call_id])
    if name then out.tool_name = name end
    return out
  end
  local text, images, thinking = split_content(m.content)
  if role == "developer" then role = "system" end
  local out = { role = role, content = text }
  if images then out.images = images end
  if role == "assistant" then
    if thinking then out.thinking = thinking end
    if type(m.tool_calls) == "table" and #m.tool_calls > 0 then
      local calls = json.array()
      for i, c in ipairs(m.tool_calls) do
        if c.id and c.name then names[c.id] = c.name end
        calls[i] = { ["function"] = { name = c.name, arguments = C.arguments_table(c) } }
        local pd = C.own_data(c.provider_data, PROVIDER)
        if c.id and not (pd and pd.id_generated) then calls[i].id = c.id end
      end
      out.tool_calls = calls
    end
  end
  return out
end

local function tool_out(t)
  if not C.is_function_tool(t) then return t end
  if t.type == "function" and type(t["function"]) == "table" then return t end -- wire-shaped
  return { type = "function", ["function"] = { name = t.name, description = t.description,
    parameters = C.parameters(t.parameters) } }
end

local function think_of(r, model)
  if r == nil then return nil end
  if r == false or r == true then return r end
  if type(r) ~= "table" then return nil end
  if r.enabled == false then return false end
  if r.effort and type(model) == "string" and model:find("gpt%-oss") then return r.effort end
  return true
end

function P.build_request(req)
  local messages = json.array()
  local names = {}
  if req.system ~= nil then
    messages[1] = { role = "system", content = C.content_text(req.system) }
  end
  for _, m in ipairs(req.messages or {}) do messages[#messages + 1] = message_out(m, names) end
  local body = { model = req.model, messages = messages, stream = req.stream and true or false }
  body.tools = C.tools_list(req.tools, tool_out)
  local options = {}
  options.num_predict = req.max_tokens
  options.temperature = req.temperature
  options.top_p = req.top_p
  options.stop = C.stop_list(req.stop)
  options.seed = req.seed
  options.top_k = req.top_k
  options.presence_penalty = req.presence_penalty
  options.frequency_penalty = req.frequency_penalty
  if next(options) ~= nil then body.options = options end
  local rf = req.response_format
  if type(rf) == "table" then
    if rf.type == "json_schema" then body.format = C.schema(rf.schema) or "json"
    elseif rf.type == "json_object" then body.format = "json" end
  elseif type(rf) == "string" then
    body.format = rf
  end
  body.think = think_of(req.reasoning, req.model)
  return C.post("/api/chat", body, req, "application/x-ndjson")
end

--- Embeddings of several texts in one call (POST /api/embed).
function P.build_embed(req)
  local body = { model = req.model, input = C.text_list(req.input), dimensions = req.dimensions }
  C.merge_extra(body, req.extra)
  return { method = "POST", path = "/api/embed", body = body }
end

function P.decode_embed(body)
  local vectors = {}
  local list = type(body) == "table" and val(body.embeddings) or nil
  for i, v in ipairs(type(list) == "table" and list or {}) do vectors[i] = C.vector(v) end
  return { vectors = vectors, model = type(body) == "table" and str(body.model) or nil,
           usage = { input_tokens = type(body) == "table" and C.int(val(body.prompt_eval_count)) or nil } }
end

-- The local models (GET /api/tags); one page.
function P.build_models()
  return { method = "GET", path = "/api/tags" }
end

function P.decode_models(body)
  local out = {}
  local list = type(body) == "table" and val(body.models) or nil
  for _, m in ipairs(type(list) == "table" and list or {}) do
    local id = type(m) == "table" and (str(m.model) or str(m.name)) or nil
    if id then out[#out + 1] = { id = id, raw = m } end
  end
  return out, nil
end

---------------------------------------------------------------------------------------
-- Responses
---------------------------------------------------------------------------------------

local function usage_of(obj)
  if val(obj.prompt_eval_count) == nil and val(obj.eval_count) == nil then return {} end
  return C.usage(obj.prompt_eval_count, obj.eval_count, nil)
end

-- Normalized calls from a message's tool_calls (whole calls, arguments an object).
local function calls_of(tcs, into)
  for _, tc in ipairs(type(tcs) == "table" and tcs or {}) do
    local fn = type(tc) == "table" and val(tc["function"]) or nil
    if type(fn) == "table" then
      local args = val(fn.arguments)
      local id, pd = str(tc.id), nil
      if not id then   -- unique within the response, so a history replays to any provider
        id, pd = "call_" .. (#into + 1), { provider = PROVIDER, id_generated = true }
      end
      into[#into + 1] = C.decoded_tool_call(id, str(fn.name), args,
        type(args) == "string" and args or "", pd)
    end
  end
  return into
end

local function build(obj, text, thinking, calls, raw, req)
  local done = val(obj.done) == true
  local done_reason = str(obj.done_reason)
  local resp = {
    text = text, tool_calls = calls,
    finish_reason = done and map_finish(done_reason, true, #calls > 0) or nil,
    raw_finish_reason = done_reason,
    usage = usage_of(obj), reasoning = (thinking and thinking ~= "") and thinking or nil,
    message = C.assistant_message(text, thinking, calls, PROVIDER),
    model = str(obj.model), raw = raw,
  }
  return C.structured(resp, req)
end

function P.decode_response(body, req)
  local obj = type(body) == "table" and body or {}
  local m = val(obj.message)
  if type(m) ~= "table" then m = {} end
  local calls = calls_of(val(m.tool_calls), {})
  return build(obj, str(m.content) or "", str(m.thinking), calls, body, req)
end

---------------------------------------------------------------------------------------
-- Errors
---------------------------------------------------------------------------------------

local function error_message(t)
  return (C.error_fields(t).message)
end

function P.decode_error(status, headers, body_text)
  local t, body = C.decode_body(body_text)
  return C.http_error(status, body_text, body,
    { message = error_message(t), request_id = C.request_id(headers) })
end

---------------------------------------------------------------------------------------
-- Streams
---------------------------------------------------------------------------------------

function P.new_stream_state(req)
  return { req = req, text = {}, thinking = {}, calls = {}, usage = {}, final = nil,
           model = nil, error = nil }
end

--- The common line, a text delta once the model is known, without decoding its tables (its
-- `raw` is decoded on first read); nil for any other line, which decode_event then decodes
-- in full. Same state change and event.
function P.decode_fast(state, data, name)
  if state.model == nil then return nil end
  local t = fast_ollama_text(data)
  if not t then return nil end
  add_piece(state.text, t)
  return lazy_text_event("text", t, data, name)
end

local text_batch = C.fast_batch("ollama")

--- decode_fast over a batch of the core: queues the events of the common records from index
-- `i` on into `queue`; returns the index of the first other record and how many it queued.
function P.decode_batch(state, batch, i, queue)
  if state.model == nil then return i, 0 end
  return text_batch(batch, i, state.text, queue)
end

function P.decode_event(state, ev)
  local name = ev.name
  local fe = P.decode_fast(state, ev.data, name)
  if fe then return { fe } end
  local obj, derr = json.decode(ev.data)
  if type(obj) ~= "table" or obj == null then return C.bad_json(state, ev, derr, "line") end
  if val(obj.error) ~= nil then
    return C.stream_error(state, { kind = "server", message = error_message(obj) or "error in stream",
      body = obj }, obj, name)
  end
  state.model = state.model or str(obj.model)
  local out, n = {}, 0
  local m = val(obj.message)
  if type(m) == "table" then
    local th = str(m.thinking)
    if th and th ~= "" then
      add_piece(state.thinking, th)
      n = n + 1; out[n] = { type = "reasoning", text = th, raw = obj, name = name }
    end
    local t = str(m.content)
    if t and t ~= "" then
      add_piece(state.text, t)
      n = n + 1; out[n] = { type = "text", text = t, raw = obj, name = name }
    end
    local first = #state.calls + 1
    calls_of(val(m.tool_calls), state.calls)
    if #state.calls >= first then n = C.push_whole_calls(out, n, state.calls, first, obj, name) end
  end
  if val(obj.done) == true then
    state.final, state.complete = obj, true
    n = C.push_usage(state, usage_of(obj), out, n, obj, name)
  end
  if n == 0 then out[1] = { type = "raw", raw = obj, name = name } end
  return out
end

function P.finish_stream(state)
  local err = C.unfinished(state, state.final, "a line with done: true")
  if err then return nil, err end
  local final = state.final
  local text = concat(state.text)
  local thinking = #state.thinking > 0 and concat(state.thinking) or nil
  local raw = {}
  for k, v in each(final) do raw[k] = v end
  local rmsg = { role = "assistant", content = text }
  if thinking then rmsg.thinking = thinking end
  if #state.calls > 0 then
    local tcs = json.array()
    for i, c in ipairs(state.calls) do
      tcs[i] = { ["function"] = { name = c.name, arguments = c.arguments or json.object() } }
      if c.id and not (c.provider_data and c.provider_data.id_generated) then tcs[i].id = c.id end
    end
    rmsg.tool_calls = tcs
  end
  raw.message = rmsg
  local resp = build(final, text, thinking, state.calls, raw, state.req)
  resp.usage = C.copy_usage(state.usage)
  return resp
end

return P
