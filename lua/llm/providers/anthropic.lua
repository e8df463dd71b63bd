-- llm.providers.anthropic: translation for the Anthropic Messages API (/v1/messages).
-- The provider contract is described at the top of llm/providers/openai.lua and in
-- docs/providers.md; this module follows it.
--
-- Choices particular to Anthropic:
-- * `system` (and every system-role message) is hoisted to the top-level `system` field.
-- * Tool results become `tool_result` blocks in a user message; consecutive tool results
--   are merged into one user message, `is_error` kept.
-- * Thinking comes back as reasoning parts whose provider_data is
--   `{ provider = "anthropic", type = "thinking", signature = ... }` or
--   `{ provider = "anthropic", type = "redacted_thinking", data = ... }`, and is replayed
--   unchanged; reasoning parts from any other provider are dropped.
-- * `response_format = { type = "json_schema", schema }` is sent as an instruction appended
--   to the system prompt ("reply with only a JSON value matching this schema"); the reply
--   stays ordinary text, so `text` holds the JSON and `parsed` its decoded value.
-- * `reasoning.budget_tokens` (or an effort: low 1024, medium 4096, high 16384) becomes
--   `thinking = { type = "enabled", budget_tokens }`; when max_tokens is not given it is
--   4096, or budget + 4096 when thinking is on (the API wants max_tokens > budget).
-- * finish_stream's `raw` is a reconstructed Message object (id, model, role, content
--   blocks, stop_reason, stop_sequence, usage), the shape a non-streamed call returns.

local json = require("llm.json")
local C = require("llm.providers.common")

local type, pairs, ipairs, concat = type, pairs, ipairs, table.concat
local null = json.null
local val, str = C.val, C.str

local P = {
  name = "anthropic",
  base_url = "https://api.anthropic.com",
  api_key_env = "ANTHROPIC_API_KEY",
  base_url_env = "ANTHROPIC_BASE_URL",
  framing = "sse",
  keepalive_events = { "ping" },
  version = "2023-06-01",
  default_max_tokens = 4096,
}

function P.auth_headers(api_key)
  local h = { ["anthropic-version"] = P.version }
  if api_key ~= nil and api_key ~= false and api_key ~= "" then h["x-api-key"] = api_key end
  return h
end

---------------------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------------------

local FINISH = { end_turn = "stop", stop_sequence = "stop", pause_turn = "stop",
                 max_tokens = "length", model_context_window_exceeded = "length",
                 tool_use = "tool_calls", refusal = "content_filter" }

local function map_finish(raw)
  if raw == nil then return nil end
  return FINISH[raw] or "stop"
end
P.map_finish = map_finish

local EFFORT_BUDGET = { minimal = 1024, low = 1024, medium = 4096, high = 16384 }

local function image_block(p)
  if p.url then return { type = "image", source = { type = "url", url = p.url } } end
  return { type = "image", source = { type = "base64", media_type = p.mime_type or "image/png",
                                      data = p.data } }
end

-- Content blocks of a user or assistant message; reasoning parts only when they came from
-- this provider.
local function blocks(content)
  local out = json.array()
  if type(content) == "string" then
    if content ~= "" then out[1] = { type = "text", text = content } end
    return out
  end
  for _, p in ipairs(content or {}) do
    if type(p) == "string" then
      out[#out + 1] = { type = "text", text = p }
    elseif p.type == "text" then
      if p.text ~= "" then out[#out + 1] = { type = "text", text = p.text } end
    elseif p.type == "image" then
      out[#out + 1] = image_block(p)
    elseif p.type == "reasoning" then
      local pd = p.provider_data
      if type(pd) == "table" and pd.provider == "anthropic" then
        if pd.type == "redacted_thinking" then
          out[#out + 1] = { type = "redacted_thinking", data = pd.data }
        else
          out[#out + 1] = { type = "thinking", thinking = p.text or "", signature = pd.signature }
        end
      end
    end
  end
  return out
end

local function tool_result_block(m)
  local b = { type = "tool_result", tool_use_id = m.tool_call_id }
  if type(m.content) == "table" and type(m.content[1]) == "table" and m.content[1].type then
    b.content = blocks(m.content) -- text and image parts
  else
    b.content = C.tool_result_text(m.content)
  end
  if m.is_error then b.is_error = true end
  return b
end

local function tool_out(t)
  if not C.is_function_tool(t) then return t end -- hosted (server) tool: unchanged
  local fn = t
  if t.type == "function" and type(t["function"]) == "table" then fn = t["function"] end
  return { name = fn.name, description = fn.description,
           input_schema = C.schema(fn.parameters) or { type = "object", properties = json.object() } }
end

local function tool_choice_out(tc, parallel)
  local out
  if tc == "auto" then out = { type = "auto" }
  elseif tc == "none" then out = { type = "none" }
  elseif tc == "required" or tc == "any" then out = { type = "any" }
  elseif type(tc) == "table" and tc.name then out = { type = "tool", name = tc.name }
  elseif type(tc) == "table" then out = tc
  end
  if parallel == false then
    out = out or { type = "auto" }
    if out.type ~= "none" then out.disable_parallel_tool_use = true end
  end
  return out
end

function P.build_request(req)
  local system = {}
  if req.system ~= nil then system[1] = C.content_text(req.system) end
  local messages = json.array()
  local pending_results -- the user message collecting consecutive tool results
  for _, m in ipairs(req.messages or {}) do
    local role = m.role
    if role == "system" or role == "developer" then
      system[#system + 1] = C.content_text(m.content)
    elseif role == "tool" then
      if not pending_results then
        pending_results = { role = "user", content = json.array() }
        messages[#messages + 1] = pending_results
      end
      local c = pending_results.content
      c[#c + 1] = tool_result_block(m)
    else
      pending_results = nil
      if role == "assistant" then
        local content = blocks(m.content)
        for _, call in ipairs(m.tool_calls or {}) do
          content[#content + 1] = { type = "tool_use", id = call.id, name = call.name,
                                    input = C.arguments_table(call) }
        end
        -- a plain-text turn stays a string (also the form of an assistant prefill)
        if type(m.content) == "string" and #content <= 1 and not m.tool_calls then
          messages[#messages + 1] = { role = "assistant", content = m.content }
        else
          messages[#messages + 1] = { role = "assistant", content = content }
        end
      else
        if type(m.content) == "string" then
          messages[#messages + 1] = { role = "user", content = m.content }
        else
          messages[#messages + 1] = { role = "user", content = blocks(m.content) }
        end
      end
    end
  end

  local rf = req.response_format
  if type(rf) == "table" and rf.type == "json_schema" then
    system[#system + 1] = "Reply with only a JSON value (no prose, no code fence) matching this JSON schema: "
      .. json.encode(C.schema(rf.schema) or json.object())
  elseif type(rf) == "table" and rf.type == "json_object" then
    system[#system + 1] = "Reply with only a JSON object (no prose, no code fence)."
  end

  local body = { model = req.model, messages = messages }
  if #system > 0 then body.system = concat(system, "\n\n") end

  local budget
  local r = req.reasoning
  if type(r) == "table" then
    budget = r.budget_tokens or EFFORT_BUDGET[r.effort]
    if budget then body.thinking = { type = "enabled", budget_tokens = budget } end
  end
  body.max_tokens = req.max_tokens or (budget and budget + P.default_max_tokens)
    or P.default_max_tokens
  body.temperature = req.temperature
  body.top_p = req.top_p
  body.stop_sequences = C.stop_list(req.stop)
  if type(req.tools) == "table" and #req.tools > 0 then
    local tools = json.array()
    for i, t in ipairs(req.tools) do tools[i] = tool_out(t) end
    body.tools = tools
  end
  body.tool_choice = tool_choice_out(req.tool_choice, req.parallel_tool_calls)
  if req.stream then body.stream = true end
  C.merge_extra(body, req.extra)
  local headers = { ["content-type"] = "application/json" }
  if req.stream then headers["accept"] = "text/event-stream" end
  return { method = "POST", path = "/v1/messages", headers = headers, body = body }
end

---------------------------------------------------------------------------------------
-- Responses
---------------------------------------------------------------------------------------

-- Usage with Anthropic's conventions (fixture README): input from message_start unless
-- message_delta carries it; output is cumulative; cache counts are reported apart.
local function merge_usage(cur, u)
  if type(u) ~= "table" or u == null then return cur end
  local input = val(u.input_tokens) or cur.input_tokens
  local output = val(u.output_tokens) or cur.output_tokens
  local extra = {
    cached_input_tokens = val(u.cache_read_input_tokens) or cur.cached_input_tokens,
    cache_creation_input_tokens = val(u.cache_creation_input_tokens) or cur.cache_creation_input_tokens,
  }
  return C.usage(input, output, nil, extra)
end

-- The normalized response from a list of content blocks (decoded Message or rebuilt).
local function build_response(content, stop_reason, usage, id, model, raw, req, calls_in)
  local text, reasoning, parts, calls = {}, {}, {}, {}
  for _, b in ipairs(content) do
    local t = b.type
    if t == "text" then
      text[#text + 1] = b.text
      parts[#parts + 1] = { type = "text", text = b.text }
    elseif t == "thinking" then
      reasoning[#reasoning + 1] = b.thinking
      parts[#parts + 1] = { type = "reasoning", text = b.thinking,
        provider_data = { provider = "anthropic", type = "thinking", signature = str(b.signature) } }
    elseif t == "redacted_thinking" then
      parts[#parts + 1] = { type = "reasoning", text = "",
        provider_data = { provider = "anthropic", type = "redacted_thinking", data = str(b.data) } }
    elseif t == "tool_use" then
      if calls_in then
        calls[#calls + 1] = calls_in[b]
      else
        local input = val(b.input)
        local call = C.tool_call(str(b.id), str(b.name), "")
        if type(input) == "table" then
          call.arguments = input
          call.arguments_json = json.encode(input)
        end
        calls[#calls + 1] = call
      end
    end
    -- server_tool_use and *_tool_result blocks (hosted tools) stay in `raw`
  end
  local text_s = concat(text)
  local message = { role = "assistant", content = parts }
  if #calls > 0 then message.tool_calls = calls end
  local resp = {
    text = text_s, tool_calls = calls, finish_reason = map_finish(stop_reason),
    raw_finish_reason = stop_reason, usage = usage,
    reasoning = #reasoning > 0 and concat(reasoning) or nil,
    message = message, id = id, model = model, raw = raw,
  }
  resp.parsed = C.parsed(req, text_s)
  return resp
end

function P.decode_response(body, req)
  local content = type(body) == "table" and val(body.content) or nil
  if type(content) ~= "table" then content = {} end
  return build_response(content, str(body and body.stop_reason),
    merge_usage({}, body and body.usage), str(body and body.id), str(body and body.model),
    body, req)
end

---------------------------------------------------------------------------------------
-- Errors
---------------------------------------------------------------------------------------

local TYPE_KIND = {
  invalid_request_error = "bad_request", authentication_error = "auth",
  permission_error = "permission", not_found_error = "not_found",
  request_too_large = "bad_request", rate_limit_error = "rate_limit",
  billing_error = "quota", api_error = "server", overloaded_error = "overloaded",
  timeout_error = "timeout",
}
P.error_kinds = TYPE_KIND

-- Types that refine the status-derived kind (API.md §9).
local REFINE = { billing_error = "quota", overloaded_error = "overloaded",
                 rate_limit_error = "rate_limit", api_error = "server",
                 authentication_error = "auth" }

local function error_fields(t)
  local f = {}
  if type(t) ~= "table" then return f end
  local e = val(t.error)
  if type(e) == "table" then
    f.message = str(e.message)
    f.type = str(e.type)
  elseif type(e) == "string" then
    f.message = e
  else
    f.message = str(t.message)
  end
  f.request_id = str(t.request_id)
  return f
end

function P.decode_error(status, headers, body_text)
  local t, body = C.decode_body(body_text)
  local f = error_fields(t)
  local kind = C.kind_for_status(status)
  if f.type and REFINE[f.type] then kind = REFINE[f.type] end
  return {
    kind = kind, status = status,
    message = f.message or C.fallback_message(status, body_text),
    request_id = C.header(headers, "request-id") or C.header(headers, "x-request-id") or f.request_id,
    body = body, type = f.type,
  }
end

---------------------------------------------------------------------------------------
-- Streams
---------------------------------------------------------------------------------------

function P.new_stream_state(req)
  return { req = req, blocks = {}, order = {}, calls = {}, usage = {}, raw_usage = nil,
           stop_reason = nil, stop_sequence = nil, stopped = false, error = nil }
end

local function ev1(type_, obj, name)
  return { { type = type_, raw = obj, name = name } }
end

local function usage_event(state, u, obj, name, out)
  state.raw_usage = u
  local nu = merge_usage(state.usage, u)
  if C.usage_changed(state.usage, nu) then
    state.usage = nu
    out[#out + 1] = { type = "usage", usage = C.copy_usage(nu), raw = obj, name = name }
  end
end

local function fail(state, fields, obj, name)
  state.error = fields
  return { { type = "error", error = fields, raw = obj, name = name } }
end

function P.decode_event(state, ev)
  local name = ev.name
  if name == "ping" then return {} end
  local obj, derr = json.decode(ev.data)
  if type(obj) ~= "table" or obj == null then
    return fail(state, { kind = "protocol",
      message = "bad JSON in stream event: " .. tostring(derr or "not an object") }, ev.data, name)
  end
  local t = obj.type
  if t == "content_block_delta" then
    local d = obj.delta
    local b = state.blocks[obj.index]
    if type(d) ~= "table" or not b then return ev1("raw", obj, name) end
    local dt = d.type
    if dt == "text_delta" then
      b.text[#b.text + 1] = d.text
      if d.text == "" then return ev1("raw", obj, name) end
      return { { type = "text", text = d.text, raw = obj, name = name } }
    elseif dt == "thinking_delta" then
      b.text[#b.text + 1] = d.thinking
      if d.thinking == "" then return ev1("raw", obj, name) end
      return { { type = "reasoning", text = d.thinking, raw = obj, name = name } }
    elseif dt == "input_json_delta" then
      local pj = str(d.partial_json) or ""
      b.args[#b.args + 1] = pj
      b.got_delta = true
      return { { type = "tool_call", index = b.call_pos, id = b.id, arguments_delta = pj,
                 raw = obj } }
    elseif dt == "signature_delta" then
      b.signature = (b.signature or "") .. (str(d.signature) or "")
    end
    return ev1("raw", obj, name)
  elseif t == "content_block_start" then
    local cb = val(obj.content_block)
    local idx = obj.index
    if type(cb) ~= "table" or idx == nil then return ev1("raw", obj, name) end
    local b = { type = cb.type, text = {}, args = {}, start = cb, id = str(cb.id),
                name = str(cb.name), signature = str(cb.signature), data = str(cb.data) }
    state.blocks[idx] = b
    state.order[#state.order + 1] = idx
    if cb.type == "text" then
      local s = str(cb.text)
      if s and s ~= "" then
        b.text[1] = s
        return { { type = "text", text = s, raw = obj, name = name } }
      end
    elseif cb.type == "thinking" then
      local s = str(cb.thinking)
      if s and s ~= "" then
        b.text[1] = s
        return { { type = "reasoning", text = s, raw = obj, name = name } }
      end
    elseif cb.type == "tool_use" then
      state.calls[#state.calls + 1] = b
      b.call_pos = #state.calls
      return { { type = "tool_call", index = b.call_pos, id = b.id, name = b.name,
                 arguments_delta = "", raw = obj } }
    end
    return ev1("raw", obj, name)
  elseif t == "content_block_stop" then
    local b = state.blocks[obj.index]
    if b and b.type == "tool_use" and not b.call then
      local args = concat(b.args)
      local input = val(b.start.input)
      if not b.got_delta and type(input) == "table" and next(input) ~= nil then
        -- the whole input came with content_block_start
        b.call = C.tool_call(b.id, b.name, json.encode(input))
        b.call.arguments = input
      else
        b.call = C.tool_call(b.id, b.name, args)
      end
      return { { type = "tool_call_done", call = b.call, raw = obj, name = name } }
    end
    return ev1("raw", obj, name)
  elseif t == "message_start" then
    local m = val(obj.message)
    local out = {}
    if type(m) == "table" then
      state.id, state.model, state.role = str(m.id), str(m.model), str(m.role)
      usage_event(state, val(m.usage), obj, name, out)
    end
    if #out == 0 then out[1] = { type = "raw", raw = obj, name = name } end
    return out
  elseif t == "message_delta" then
    local d = val(obj.delta)
    if type(d) == "table" then
      local sr = str(d.stop_reason)
      if sr then state.stop_reason = sr end
      if val(d.stop_sequence) ~= nil then state.stop_sequence = d.stop_sequence end
    end
    local out = {}
    usage_event(state, val(obj.usage), obj, name, out)
    if #out == 0 then out[1] = { type = "raw", raw = obj, name = name } end
    return out
  elseif t == "message_stop" then
    state.stopped = true
    return ev1("raw", obj, name)
  elseif t == "ping" then
    return {}
  elseif t == "error" then
    local f = error_fields(obj)
    return fail(state, { kind = TYPE_KIND[f.type] or "server",
      message = f.message or "error in stream", type = f.type,
      request_id = f.request_id, body = obj }, obj, name)
  end
  return ev1("raw", obj, name)
end

function P.finish_stream(state)
  if state.error then return nil, state.error end
  if not state.stop_reason then
    return nil, { kind = "protocol", message = "stream ended before message_delta.stop_reason" }
  end
  -- rebuild the Message's content blocks in index order
  local idxs = {}
  for i, idx in ipairs(state.order) do idxs[i] = idx end
  table.sort(idxs)
  local content = json.array()
  local calls_by_block = {}
  for _, idx in ipairs(idxs) do
    local b = state.blocks[idx]
    local blk
    if b.type == "text" then
      blk = { type = "text", text = concat(b.text) }
    elseif b.type == "thinking" then
      blk = { type = "thinking", thinking = concat(b.text), signature = b.signature or "" }
    elseif b.type == "redacted_thinking" then
      blk = { type = "redacted_thinking", data = b.data }
    elseif b.type == "tool_use" then
      if not b.call then b.call = C.tool_call(b.id, b.name, concat(b.args)) end
      blk = { type = "tool_use", id = b.id, name = b.name,
              input = b.call.arguments or json.object() }
      calls_by_block[blk] = b.call
    else
      blk = b.start -- hosted-tool blocks as they started
    end
    content[#content + 1] = blk
  end
  local raw = { id = state.id, type = "message", role = state.role or "assistant",
                model = state.model, content = content, stop_reason = state.stop_reason,
                stop_sequence = state.stop_sequence or null, usage = state.raw_usage }
  return build_response(content, state.stop_reason, C.copy_usage(state.usage), state.id,
    state.model, raw, state.req, calls_by_block)
end

return P
