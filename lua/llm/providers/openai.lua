-- llm.providers.openai: translation for the OpenAI Chat Completions API (and every
-- OpenAI-compatible server: OpenRouter, DeepSeek, LiteLLM, Groq, llama.cpp, vLLM ...).
--
-- THE PROVIDER CONTRACT (every module in lua/llm/providers/ follows it; docs/providers.md)
--
-- A provider is pure translation: no I/O, no coroutines, no clocks. It is a table:
--
--   P.name, P.base_url, P.api_key_env, P.base_url_env
--   P.framing = "sse" | "ndjson"        how the core frames a streamed body
--   P.auth_headers(api_key) -> headers  lower-case names
--   P.build_request(req) -> { method, path, headers, body }
--       req is the normalized request (model, system, messages, max_tokens, temperature,
--       top_p, stop, tools, tool_choice, parallel_tool_calls, reasoning, response_format,
--       extra, stream, n); body is a table for llm.json.encode (empty lists are marked).
--   P.decode_response(body_table, req) -> normalized response (API.md §2):
--       { text, tool_calls, finish_reason, raw_finish_reason, usage, reasoning, refusal,
--         message, id, model, raw, choices?, parsed? }
--   P.decode_error(status, headers, body_text) -> { kind, message, status, request_id?,
--       body, code?, type?, param? }   (retryable / retry_after are the client's business)
--   P.new_stream_state(req) -> state
--   P.decode_event(state, ev) -> list of normalized events
--       ev = { name, data, id } from the framer. Events are API.md §3 / §9: text,
--       reasoning, refusal, tool_call, tool_call_done, usage, raw, error; each carries
--       `raw` (the decoded provider event) and `name` (ev.name). Never "done".
--       Sets `state.complete = true` at the stream's terminal event ([DONE], message_stop,
--       response.completed, done: true): the client then stops reading (DESIGN "Timeouts
--       and content"). Which events are content (text, reasoning, tool_call, refusal) is
--       decided by the types returned here: metadata and pings must come back as raw or {}.
--   P.finish_stream(state) -> response | nil, errfields
--       complete iff the finish signal was seen and no error came.
--
-- Optional endpoints; a provider without one answers `nil, err` kind "unsupported":
--   P.build_embed(req) -> request       req = { model, input = { texts }, dimensions, extra }
--   P.decode_embed(body, req) -> { vectors = { {numbers}, ... }, model, usage = { input_tokens } }
--   P.build_count_tokens(req) -> request   req is a normalized chat request
--   P.decode_count_tokens(body) -> { input_tokens }
--   P.build_models(page) -> request     page: the next page's token (nil for the first)
--   P.decode_models(body) -> list of { id, created?, owned_by?, raw }, the next page's token
--
-- Derived providers: `P.derive{ name =, base_url =, api_key_env =, ... }` returns a copy
-- of this table with those fields replaced; the client does this for a user table with
-- `base = "openai"` (API.md §1).
--
-- Normalized tool-call events: `index` is the 1-based position of the call in
-- `resp.tool_calls`, not the provider's own index. On a "tool_call" event `name` is the
-- tool's name (first delta only, API.md §3), which takes the place of the SSE event name
-- that every other event carries as `name`.
--
-- finish_stream's `raw` is a reconstructed `chat.completion` object (id, model, created,
-- choices with message and finish_reason, usage), the shape a non-streamed call returns.
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT

local json = require("llm.json")
local C = require("llm.providers.common")
local add_piece = C.add_piece
local media = require("llm.media")

local type, ipairs, concat = type, ipairs, table.concat
local null = json.null
local val, str = C.val, C.str
local fast_chat_text = require("llm.core").fast_chat_text
local lazy_text_event = C.lazy_text_event

local P = {
  name = "openai", base_url = "https://api.openai.com/v1",
  api_key_env = "OPENAI_API_KEY", base_url_env = "OPENAI_BASE_URL",
  framing = "sse",
  -- the optional contract fields (API §9) this API maps, and the part types it takes
  request_fields = { n = true, seed = true, presence_penalty = true, frequency_penalty = true,
                     logprobs = true, top_logprobs = true, user = true, metadata = true,
                     service_tier = true, store = true, prompt_cache_key = true },
  -- the parts Chat Completions takes, by source (API §12), and its documented size limits:
  -- 50 MB of images per request, 32 MB of PDF content
  part_types = { text = true, image = { url = true, data = true },
                 file = { data = true, mime = { ["application/pdf"] = true } },   -- Chat takes PDFs only
                 audio = { data = true, mime = { ["audio/wav"] = true, ["audio/x-wav"] = true,
                                                 ["audio/mpeg"] = true, ["audio/mp3"] = true } } },
  media_limits = { image = 50 * 1048576, file = 32 * 1048576, request = 50 * 1048576 },
}

--- A copy of this provider with some fields replaced (OpenAI-compatible servers).
function P.derive(fields)
  local d = {}
  for k, v in each(P) do d[k] = v end
  for k, v in each(fields or {}) do d[k] = v end
  -- a provider with its own host does not take OPENAI_BASE_URL / OPENAI_API_KEY (API §9)
  if fields and fields.base_url ~= nil then
    if fields.base_url_env == nil then d.base_url_env = nil end
    if fields.api_key_env == nil then d.api_key_env = nil end
  end
  d.base = "openai"
  return d
end

P.auth_headers = C.bearer_auth

---------------------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------------------

local FINISH = { stop = "stop", length = "length", tool_calls = "tool_calls",
                 function_call = "tool_calls", content_filter = "content_filter" }

-- Unknown finish reasons from compatible servers ("eos", "end_turn" ...) count as "stop";
-- the provider's own value stays in raw_finish_reason.
local map_finish = C.finish_mapper(FINISH, "stop")
P.map_finish = map_finish

local function text_part(s) return { type = "text", text = s } end

local function image_part(p)
  local image_url = { url = C.image_url(p) }
  if p.detail then image_url.detail = p.detail end
  return { type = "image_url", image_url = image_url }
end

local AUDIO_FORMAT = { ["audio/wav"] = "wav", ["audio/x-wav"] = "wav", ["audio/mpeg"] = "mp3",
                       ["audio/mp3"] = "mp3" }

-- file and audio parts (resolved by llm.media: data and mime_type); reasoning parts are
-- not part of a user turn here
local function media_part(p)
  if p.type == "file" then
    return { type = "file", file = { filename = p.name or "file", file_data = media.data_url(p) } }
  elseif p.type == "audio" then
    return { type = "input_audio", input_audio = { data = p.data, format = AUDIO_FORMAT[p.mime_type] or "wav" } }
  end
  return nil
end

local function user_parts(content)
  if type(content) ~= "table" then return content end
  return C.map_parts(content, text_part, image_part, media_part)
end

local function tool_calls_out(calls)
  local out = json.array()
  for i, c in ipairs(calls) do
    out[i] = { id = c.id, type = "function",
               ["function"] = { name = c.name, arguments = C.arguments_text(c) } }
  end
  return out
end

local function message_out(m)
  local role = m.role
  if role == "tool" then
    return { role = "tool", tool_call_id = m.tool_call_id, content = C.tool_result_text(m.content) }
  elseif role == "assistant" then
    -- Chat Completions takes no reasoning back: reasoning parts are dropped (DeepSeek and
    -- others reject reasoning_content in the input).
    local out = { role = "assistant" }
    local text = C.content_text(m.content)
    local has_calls = type(m.tool_calls) == "table" and #m.tool_calls > 0
    if text ~= "" or not has_calls then out.content = text end
    if has_calls then out.tool_calls = tool_calls_out(m.tool_calls) end
    if m.name then out.name = m.name end
    return out
  elseif role == "system" or role == "developer" then
    return { role = role, content = C.content_text(m.content) }
  else
    local out = { role = role or "user", content = user_parts(m.content) }
    if m.name then out.name = m.name end
    return out
  end
end

local function tool_out(t)
  if not C.is_function_tool(t) then return t end -- hosted tool: unchanged
  if t.type == "function" and type(t["function"]) == "table" then return t end -- already wire-shaped
  local fn = { name = t.name, description = t.description, parameters = C.parameters(t.parameters) }
  if t.strict ~= nil then fn.strict = t.strict end
  return { type = "function", ["function"] = fn }
end

local function tool_choice_out(tc)
  if tc == nil then return nil end
  if type(tc) == "string" then return tc end
  if type(tc) == "table" and tc.name then
    return { type = "function", ["function"] = { name = tc.name } }
  end
  return tc -- already wire-shaped
end

function P.build_request(req)
  local messages = json.array()
  if req.system ~= nil then
    messages[1] = { role = "system", content = C.content_text(req.system) }
  end
  for _, m in ipairs(req.messages or {}) do
    messages[#messages + 1] = message_out(m)
  end
  local body = { model = req.model, messages = messages }
  if req.max_tokens ~= nil then body.max_completion_tokens = req.max_tokens end
  body.temperature = req.temperature
  body.top_p = req.top_p
  body.stop = C.stop_list(req.stop)
  body.n = req.n
  body.seed = req.seed
  body.presence_penalty = req.presence_penalty
  body.frequency_penalty = req.frequency_penalty
  body.logprobs = req.logprobs
  body.top_logprobs = req.top_logprobs
  body.user = req.user
  body.metadata = req.metadata
  body.service_tier = req.service_tier
  body.store = req.store
  body.prompt_cache_key = req.prompt_cache_key
  body.tools = C.tools_list(req.tools, tool_out)
  body.tool_choice = tool_choice_out(req.tool_choice)
  if req.parallel_tool_calls ~= nil then body.parallel_tool_calls = req.parallel_tool_calls end
  if type(req.reasoning) == "table" and req.reasoning.effort then
    body.reasoning_effort = req.reasoning.effort
  end
  local rf = req.response_format
  if type(rf) == "table" then
    if rf.type == "json_schema" then
      body.response_format = { type = "json_schema", json_schema = {
        name = rf.name or "response", schema = C.schema(rf.schema),
        strict = rf.strict } }
    else
      body.response_format = rf
    end
  end
  if req.stream then
    body.stream = true
    body.stream_options = { include_usage = true }
  end
  return C.post("/chat/completions", body, req)
end

---------------------------------------------------------------------------------------
-- Responses
---------------------------------------------------------------------------------------

local usage_of = C.usage_reader("prompt_tokens", "completion_tokens",
  "completion_tokens_details", "prompt_tokens_details")

local function reasoning_of(m)
  return str(m.reasoning_content) or str(m.reasoning)
end

local function assistant_message(text, reasoning, calls)
  return C.assistant_message(text, reasoning, calls, "openai")
end

local function decode_choice(ch)
  local m = val(ch.message) or {}
  local text = str(m.content) or ""
  local calls = {}
  local raw_calls = val(m.tool_calls)
  if type(raw_calls) == "table" then
    for _, tc in ipairs(raw_calls) do
      local fn = val(tc["function"]) or {}
      calls[#calls + 1] = C.tool_call(str(tc.id), str(fn.name), str(fn.arguments) or "")
    end
  end
  local raw_finish = str(ch.finish_reason)
  local reasoning = reasoning_of(m)
  return {
    index = C.int(ch.index), text = text, tool_calls = calls,
    finish_reason = map_finish(raw_finish), raw_finish_reason = raw_finish,
    refusal = str(m.refusal), reasoning = reasoning,
    message = assistant_message(text, reasoning, calls),
  }
end

function P.decode_response(body, req)
  local choices = type(body) == "table" and val(body.choices) or nil
  local list = {}
  if type(choices) == "table" then
    for _, ch in ipairs(choices) do list[#list + 1] = decode_choice(ch) end
  end
  local c0 = list[1] or { text = "", tool_calls = {}, message = assistant_message("", nil, {}) }
  for _, c in ipairs(list) do
    if c.index == 0 then c0 = c end
  end
  local resp = {
    text = c0.text, tool_calls = c0.tool_calls, finish_reason = c0.finish_reason,
    raw_finish_reason = c0.raw_finish_reason, usage = usage_of(body and body.usage),
    reasoning = c0.reasoning, refusal = c0.refusal, message = c0.message,
    id = str(body and body.id), model = str(body and body.model), raw = body,
  }
  if #list > 1 then resp.choices = list end
  return C.structured(resp, req)
end

---------------------------------------------------------------------------------------
-- Errors
---------------------------------------------------------------------------------------

-- Kind from the error object alone (used in streams, where there is no status, and to
-- refine a status: insufficient_quota is a 429 that waiting cannot fix).
local TYPE_KIND = {
  insufficient_quota = "quota", invalid_api_key = "auth", authentication_error = "auth",
  rate_limit_exceeded = "rate_limit", server_error = "server", invalid_request_error = "bad_request",
  permission_error = "permission", not_found_error = "not_found",
}

-- Besides `error`, compatible servers send `{"message": ...}` or `{"detail": ...}`.
local function top_level(f, t) f.message = str(t.message) or str(t.detail) end

function P.decode_error(status, headers, body_text)
  local t, body = C.decode_body(body_text)
  local f = C.error_fields(t, top_level)
  f.kind = C.openai_error_kind(f)
  f.request_id = C.request_id(headers) or (t and str(t.request_id))
  return C.http_error(status, body_text, body, f)
end

---------------------------------------------------------------------------------------
-- Streams
---------------------------------------------------------------------------------------

-- A choice's pieces: `text` always; `reasoning`, `refusal`, `calls` and `by_index` (tool
-- calls by their index) when the first one comes, since most streams never send them.
local function new_choice()
  return { text = {} }
end

local EMPTY = {}

-- The choice's list `k`, made on first use.
local function list_of(c, k)
  local l = c[k]
  if not l then l = {}; c[k] = l end
  return l
end

function P.new_stream_state(req)
  return { req = req, choices = { [0] = new_choice() }, order = { 0 },
           usage = {}, raw_usage = nil, finish = nil, done = false, error = nil }
end

local function get_choice(state, idx)
  local c = state.choices[idx]
  if not c then
    c = new_choice()
    state.choices[idx] = c
    state.order[#state.order + 1] = idx
  end
  return c
end

-- Closes the calls of a finished choice; returns them in order.
local function close_calls(c)
  local done = {}
  for _, call in ipairs(c.calls or EMPTY) do
    if not call.done then
      call.done = true
      call.final = C.tool_call(call.id, call.name, concat(call.args))
      done[#done + 1] = call.final
    end
  end
  return done
end

--- The common event, a text delta of choice 0 once the stream's id, model and created are
-- known, without decoding its tables (its `raw` is decoded on first read); nil for any
-- other event, which decode_event then decodes in full. Same state change and event.
function P.decode_fast(state, data, name)
  if state.created == nil or state.model == nil or state.id == nil then return nil end
  local t = fast_chat_text(data)
  if not t then return nil end
  add_piece(state.choices[0].text, t)
  return lazy_text_event("text", t, data, name)
end

local chat_batch = C.fast_batch("chat")

--- decode_fast over a batch of the core: queues the events of the common records from index
-- `i` on into `queue`; returns the index of the first other record and how many it queued.
function P.decode_batch(state, batch, i, queue)
  if state.created == nil or state.model == nil or state.id == nil then return i, 0 end
  return chat_batch(batch, i, state.choices[0].text, queue)
end

function P.decode_event(state, ev)
  local data = ev.data
  local name = ev.name
  local fe = P.decode_fast(state, data, name)
  if fe then return { fe } end
  if data == "[DONE]" then
    state.done, state.complete = true, true
    return {}
  end
  local obj, derr = json.decode(data)
  if type(obj) ~= "table" or obj == null then return C.bad_json(state, ev, derr) end
  local out, n = {}, 0
  local e = val(obj.error)
  if e ~= nil then
    local f = C.error_fields(obj, top_level)
    local kind = TYPE_KIND[f.code] or TYPE_KIND[f.type] or "server"
    return C.stream_error(state, { kind = kind, message = f.message or "error in stream",
      code = f.code, type = f.type, param = f.param, body = obj }, obj, name)
  end
  if state.id == nil then state.id = str(obj.id) end
  if state.model == nil then state.model = str(obj.model) end
  if state.created == nil then state.created = val(obj.created) end

  local choices = val(obj.choices)
  local reasoning_ev, text_ev, refusal_ev, call_evs, done_evs
  if type(choices) == "table" then
    for _, ch in ipairs(choices) do
      local idx = C.int(val(ch.index)) or 0
      local c = get_choice(state, idx)
      local delta = val(ch.delta)
      if type(delta) == "table" then
        local r = str(delta.reasoning_content) or str(delta.reasoning)
        if r and r ~= "" then
          add_piece(list_of(c, "reasoning"), r)
          if idx == 0 then reasoning_ev = r end
        end
        local t = str(delta.content)
        if t and t ~= "" then
          add_piece(c.text, t)
          if idx == 0 then text_ev = t end
        end
        local rf = str(delta.refusal)
        if rf and rf ~= "" then
          add_piece(list_of(c, "refusal"), rf)
          if idx == 0 then refusal_ev = rf end
        end
        local tcs = val(delta.tool_calls)
        if type(tcs) == "table" then
          for k, tc in ipairs(tcs) do
            local pidx = C.int(val(tc.index)) or (k - 1)
            local by_index, calls = list_of(c, "by_index"), list_of(c, "calls")
            local call = by_index[pidx]
            local fn = val(tc["function"]) or {}
            local first = false
            if not call then
              call = { id = str(tc.id), name = str(fn.name), args = {}, pos = #calls + 1 }
              by_index[pidx] = call
              calls[call.pos] = call
              first = true
            else
              call.id = call.id or str(tc.id)
              call.name = call.name or str(fn.name)
            end
            local a = str(fn.arguments) or ""
            if a ~= "" then add_piece(call.args, a) end
            if idx == 0 and (first or a ~= "") then
              call_evs = call_evs or {}
              call_evs[#call_evs + 1] = { type = "tool_call", index = call.pos, id = call.id,
                name = first and call.name or nil, arguments_delta = a, raw = obj }
            end
          end
        end
      end
      local fr = str(ch.finish_reason)
      if fr then
        c.finish = fr
        local closed = close_calls(c)
        if idx == 0 then
          state.finish = fr
          for _, call in ipairs(closed) do
            done_evs = done_evs or {}
            done_evs[#done_evs + 1] = call
          end
        end
      end
    end
  end

  -- within one record: reasoning, text, refusal, tool calls, usage (API.md §9)
  if reasoning_ev then n = n + 1; out[n] = { type = "reasoning", text = reasoning_ev, raw = obj, name = name } end
  if text_ev then n = n + 1; out[n] = { type = "text", text = text_ev, raw = obj, name = name } end
  if refusal_ev then n = n + 1; out[n] = { type = "refusal", text = refusal_ev, raw = obj, name = name } end
  if call_evs then
    for _, ce in ipairs(call_evs) do n = n + 1; out[n] = ce end
  end
  if done_evs then
    for _, call in ipairs(done_evs) do
      n = n + 1; out[n] = { type = "tool_call_done", call = call, raw = obj, name = name }
    end
  end
  local u = val(obj.usage)
  if type(u) == "table" then n = C.push_usage_of(state, u, usage_of, out, n, obj, name) end
  if n == 0 then out[1] = { type = "raw", raw = obj, name = name } end
  return out
end

local function final_choice(c, idx)
  -- calls still open (a choice that never sent its own finish_reason) are closed here
  close_calls(c)
  local calls = {}
  for i, call in ipairs(c.calls or EMPTY) do calls[i] = call.final end
  local text = concat(c.text)
  local reasoning = c.reasoning and concat(c.reasoning) or nil
  local refusal = c.refusal and concat(c.refusal) or nil
  return { index = idx, text = text, tool_calls = calls, finish_reason = map_finish(c.finish),
           raw_finish_reason = c.finish, reasoning = reasoning, refusal = refusal,
           message = assistant_message(text, reasoning, calls) }
end

function P.finish_stream(state)
  local err = C.unfinished(state, state.finish, "a finish_reason")
  if err then return nil, err end
  local list = {}
  local order = {}
  for _, idx in ipairs(state.order) do order[#order + 1] = idx end
  table.sort(order)
  local raw_choices = json.array()
  for _, idx in ipairs(order) do
    local c = state.choices[idx]
    if idx ~= 0 or #c.text > 0 or c.finish or c.calls or #state.order == 1 then
      local fc = final_choice(c, idx)
      list[#list + 1] = fc
      local rmsg = { role = "assistant", content = fc.text ~= "" and fc.text or null }
      if fc.refusal then rmsg.refusal = fc.refusal end
      if fc.reasoning then rmsg.reasoning_content = fc.reasoning end
      if #fc.tool_calls > 0 then rmsg.tool_calls = tool_calls_out(fc.tool_calls) end
      raw_choices[#raw_choices + 1] = { index = idx, message = rmsg,
                                        finish_reason = fc.raw_finish_reason or null }
    end
  end
  local c0 = list[1]
  local raw = { id = state.id, object = "chat.completion", created = state.created,
                model = state.model, choices = raw_choices, usage = state.raw_usage }
  local resp = {
    text = c0.text, tool_calls = c0.tool_calls, finish_reason = c0.finish_reason,
    raw_finish_reason = c0.raw_finish_reason, usage = C.copy_usage(state.usage),
    reasoning = c0.reasoning, refusal = c0.refusal, message = c0.message,
    id = state.id, model = state.model, raw = raw,
  }
  if #list > 1 then resp.choices = list end
  return C.structured(resp, state.req)
end

---------------------------------------------------------------------------------------
-- Embeddings and models
---------------------------------------------------------------------------------------

function P.build_embed(req)
  local body = { model = req.model, input = C.text_list(req.input), encoding_format = "float",
                 dimensions = req.dimensions }
  C.merge_extra(body, req.extra)
  return { method = "POST", path = "/embeddings", body = body }
end

function P.decode_embed(body)
  local vectors = {}
  local data = type(body) == "table" and val(body.data) or nil
  for i, item in ipairs(type(data) == "table" and data or {}) do
    local idx = type(item) == "table" and C.int(val(item.index)) or nil
    vectors[(idx and idx + 1) or i] = C.vector(type(item) == "table" and val(item.embedding) or nil)
  end
  local u = type(body) == "table" and val(body.usage) or nil
  return { vectors = vectors, model = type(body) == "table" and str(body.model) or nil,
           usage = { input_tokens = type(u) == "table" and C.int(val(u.prompt_tokens)) or nil } }
end

function P.build_models()
  return { method = "GET", path = "/models" }
end

function P.decode_models(body)
  local out = {}
  local data = type(body) == "table" and val(body.data) or nil
  for _, m in ipairs(type(data) == "table" and data or {}) do
    if type(m) == "table" and str(m.id) then
      out[#out + 1] = { id = m.id, created = C.int(val(m.created)), owned_by = str(m.owned_by), raw = m }
    end
  end
  return out, nil
end

-- The Responses API is a variant of this provider: the client uses it for api = "responses".
P.responses = require("llm.providers.openai_responses")

return P
