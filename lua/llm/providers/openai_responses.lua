-- llm.providers.openai_responses: translation for the OpenAI Responses API (POST /responses).
-- The provider contract is described at the top of llm/providers/openai.lua; this module
-- follows it. The client reaches it as `require("llm.providers.openai").responses` when a
-- call says `api = "responses"`.
--
-- Choices particular to the Responses API:
-- * The input is `req.input` (a string, or a list of items sent as given) or `req.messages`
--   turned into items: user / system messages, an assistant's text as an assistant message,
--   its tool calls as `function_call` items (call_id = the call's id), tool results as
--   `function_call_output` items, and reasoning parts that came from this provider
--   (`provider_data.provider == "openai_responses"`) as `reasoning` items with their id
--   and `encrypted_content`. When both are given, the messages come first.
-- * `instructions` is `req.instructions`, else `req.system`.
-- * Function tools become `{ type = "function", name, description, parameters, strict }`;
--   hosted tools (a `type` and no `run` / `parameters`) are sent unchanged.
-- * A normalized tool call's `id` is the `call_id`; the `fc_...` item id is kept in
--   `provider_data.id` and sent back with the call.
-- * `reasoning = { effort, summary }` is sent as is; with `store = false` the request also
--   asks for `reasoning.encrypted_content`, so reasoning can be replayed without server state.
-- * finish_reason: `completed` -> tool_calls when a function_call item is present, else
--   stop; `incomplete` -> length (reason max_output_tokens or unknown) or content_filter;
--   `failed` / `cancelled` -> error. raw_finish_reason is the status, plus
--   `:<incomplete_details.reason>` when incomplete.
-- * A stream is complete iff `response.completed` or `response.incomplete` arrived;
--   `response.failed` and `error` events end it with an error. Events without a
--   normalized meaning come out as `{ type = "raw" }`.
-- * finish_stream's `raw` is the response object of the terminal event (the shape a
--   non-streamed call returns); text, reasoning and tool calls are the streamed ones.
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat

local json = require("llm.json")
local C = require("llm.providers.common")
local add_piece = C.add_piece
local media = require("llm.media")

local type, ipairs, concat = type, ipairs, table.concat
local null = json.null
local val, str = C.val, C.str
local fast_responses_text = require("llm.core").fast_responses_text
local lazy_text_event = C.lazy_text_event

local PROVIDER = "openai_responses"

local P = {
  name = "openai_responses", api = "responses", base_url = "https://api.openai.com/v1",
  api_key_env = "OPENAI_API_KEY", base_url_env = "OPENAI_BASE_URL",
  framing = "sse",
  request_fields = { input = true, instructions = true, previous_response_id = true,
                     store = true, include = true, top_logprobs = true, user = true,
                     metadata = true, service_tier = true, prompt_cache_key = true,
                     background = true },
  part_types = { text = true, image = { url = true, data = true }, file = { url = true, data = true },
                 input_text = true, input_image = true, input_file = true },
  media_limits = { image = 50 * 1048576, file = 32 * 1048576, request = 50 * 1048576 },
  wire_items = true,   -- input items in the API's own form ({ type = "function_call_output", ... })
}

P.auth_headers = C.bearer_auth

---------------------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------------------

local function is_ours(pd)
  return C.own_data(pd, PROVIDER) ~= nil
end

local function input_text(s) return { type = "input_text", text = s } end

local function input_image(p)
  return { type = "input_image", image_url = C.image_url(p), detail = p.detail or "auto" }
end

local WIRE_PARTS = { input_text = true, input_image = true, input_file = true }

local function wire_part(p)
  if WIRE_PARTS[p.type] then return p end -- already wire-shaped
  if p.type == "file" then
    if p.url then return { type = "input_file", file_url = p.url } end
    return { type = "input_file", filename = p.name or "file", file_data = media.data_url(p) }
  end
  return nil
end

-- Content of a user (or system) message: a string stays a string, parts become
-- input_text / input_image parts.
local function input_content(content)
  if type(content) ~= "table" then return content or "" end
  return C.map_parts(content, input_text, input_image, wire_part)
end

local function reasoning_item(p)
  local pd = p.provider_data
  local summary = json.array()
  if type(pd.summary) == "table" and #pd.summary > 0 then
    for _, s in ipairs(pd.summary) do summary[#summary + 1] = { type = "summary_text", text = s } end
  elseif type(p.text) == "string" and p.text ~= "" then
    summary[1] = { type = "summary_text", text = p.text }
  end
  local item = { type = "reasoning", id = pd.id, summary = summary }
  if pd.encrypted_content then item.encrypted_content = pd.encrypted_content end
  return item
end

-- Appends the input items of one normalized message to `items`.
local function message_items(m, items)
  local role = m.role
  if role == "tool" then
    items[#items + 1] = { type = "function_call_output", call_id = m.tool_call_id,
                          output = C.tool_result_text(m.content) }
  elseif role == "assistant" then
    if type(m.content) == "table" then
      for _, p in ipairs(m.content) do
        if type(p) == "table" and p.type == "reasoning" and is_ours(p.provider_data) then
          items[#items + 1] = reasoning_item(p)
        end
      end
    end
    local text = C.content_text(m.content)
    if text ~= "" then
      items[#items + 1] = { type = "message", role = "assistant", content = text }
    end
    for _, c in ipairs(m.tool_calls or {}) do
      local item = { type = "function_call", call_id = c.id, name = c.name,
                     arguments = C.arguments_text(c) }
      if is_ours(c.provider_data) and c.provider_data.id then item.id = c.provider_data.id end
      items[#items + 1] = item
    end
  elseif role == "system" or role == "developer" then
    items[#items + 1] = { type = "message", role = role, content = C.content_text(m.content) }
  elseif role == nil and m.type ~= nil then
    items[#items + 1] = m -- an item already in wire form
  else
    items[#items + 1] = { type = "message", role = role or "user", content = input_content(m.content) }
  end
end

local function tool_out(t)
  if not C.is_function_tool(t) then return t end -- hosted tool: unchanged
  local fn = C.function_of(t)
  local out = { type = "function", name = fn.name, description = fn.description,
                parameters = C.parameters(fn.parameters) }
  if fn.strict ~= nil then out.strict = fn.strict end
  return out
end

local function tool_choice_out(tc)
  if tc == nil or type(tc) == "string" then return tc end
  if type(tc) == "table" and tc.name and tc.type == nil then
    return { type = "function", name = tc.name }
  end
  return tc -- already wire-shaped
end

function P.build_request(req)
  local body = { model = req.model }
  local items = json.array()
  for _, m in ipairs(req.messages or {}) do message_items(m, items) end
  local input = req.input
  if type(input) == "string" then
    if #items == 0 then body.input = input
    else items[#items + 1] = { type = "message", role = "user", content = input } end
  elseif type(input) == "table" then
    for _, it in ipairs(input) do message_items(it, items) end
  end
  if body.input == nil then body.input = items end

  local instructions = req.instructions
  if instructions == nil and req.system ~= nil then instructions = C.content_text(req.system) end
  body.instructions = instructions
  body.max_output_tokens = req.max_tokens
  body.temperature = req.temperature
  body.top_p = req.top_p
  body.tools = C.tools_list(req.tools, tool_out)
  body.tool_choice = tool_choice_out(req.tool_choice)
  if req.parallel_tool_calls ~= nil then body.parallel_tool_calls = req.parallel_tool_calls end
  if req.previous_response_id ~= nil then body.previous_response_id = req.previous_response_id end
  if req.store ~= nil then body.store = req.store end
  if req.background ~= nil then body.background = req.background end
  if req.include ~= nil then body.include = json.array(req.include) end
  body.top_logprobs = req.top_logprobs
  body.user = req.user
  body.metadata = req.metadata
  body.service_tier = req.service_tier
  body.prompt_cache_key = req.prompt_cache_key
  local r = req.reasoning
  if type(r) == "table" and (r.effort or r.summary) then
    body.reasoning = { effort = r.effort, summary = r.summary }
    if req.store == false and body.include == nil then
      body.include = json.array({ "reasoning.encrypted_content" })
    end
  end
  local rf = req.response_format
  if type(rf) == "table" then
    if rf.type == "json_schema" then
      body.text = { format = { type = "json_schema", name = rf.name or "response",
                               schema = C.schema(rf.schema), strict = rf.strict } }
    else
      body.text = { format = rf }
    end
  end
  if req.stream then body.stream = true end
  return C.post("/responses", body, req)
end

---------------------------------------------------------------------------------------
-- Responses
---------------------------------------------------------------------------------------

local usage_of = C.usage_reader("input_tokens", "output_tokens",
  "output_tokens_details", "input_tokens_details")

--- Normalized finish reason and the raw one for a response object's status.
local function finish_of(resp_obj, has_calls)
  local status = str(resp_obj.status)
  if status == nil then return nil, nil end
  if status == "completed" then
    return has_calls and "tool_calls" or "stop", status
  elseif status == "incomplete" then
    local d = val(resp_obj.incomplete_details)
    local reason = type(d) == "table" and str(d.reason) or nil
    local raw = reason and (status .. ":" .. reason) or status
    if reason == "content_filter" then return "content_filter", raw end
    return "length", raw
  elseif status == "failed" or status == "cancelled" then
    return "error", status
  end
  return nil, status -- queued / in_progress (background responses)
end

local function reasoning_texts(item)
  local texts = {}
  local summary = val(item.summary)
  if type(summary) == "table" then
    for _, s in ipairs(summary) do
      if type(s) == "table" and str(s.text) then texts[#texts + 1] = s.text end
    end
  end
  local content = val(item.content)
  if type(content) == "table" then
    for _, c in ipairs(content) do
      if type(c) == "table" and c.type == "reasoning_text" and str(c.text) then
        texts[#texts + 1] = c.text
      end
    end
  end
  return texts
end

local function reasoning_part(item, text, summaries)
  return { type = "reasoning", text = text,
           provider_data = { provider = PROVIDER, id = str(item.id),
                             encrypted_content = str(item.encrypted_content),
                             summary = summaries } }
end

-- The normalized response from parts gathered from output items (or from a stream).
-- `g` = { text, refusal, reasoning (list), parts (reasoning parts), calls }.
local function build(g, resp_obj, usage, raw, req)
  local finish, raw_finish = finish_of(resp_obj, #g.calls > 0)
  local text = g.text
  local content = text
  if #g.parts > 0 then
    content = {}
    for i, p in ipairs(g.parts) do content[i] = p end
    content[#content + 1] = { type = "text", text = text }
  end
  local message = { role = "assistant", content = content }
  if #g.calls > 0 then message.tool_calls = g.calls end
  local resp = {
    text = text, tool_calls = g.calls, finish_reason = finish, raw_finish_reason = raw_finish,
    usage = usage, reasoning = #g.reasoning > 0 and concat(g.reasoning) or nil,
    refusal = g.refusal, message = message, id = str(resp_obj.id), model = str(resp_obj.model),
    raw = raw, state = str(resp_obj.status),
  }
  local e = val(resp_obj.error)
  if type(e) == "table" then resp.error = { message = str(e.message), code = val(e.code) } end
  return C.structured(resp, req)
end

function P.decode_response(body, req)
  local obj = type(body) == "table" and body or {}
  local text, refusal, reasoning, parts, calls = {}, {}, {}, {}, {}
  local output = val(obj.output)
  for _, item in ipairs(type(output) == "table" and output or {}) do
    local t = type(item) == "table" and item.type or nil
    if t == "message" then
      for _, c in ipairs(val(item.content) or {}) do
        if c.type == "output_text" and str(c.text) then text[#text + 1] = c.text
        elseif c.type == "refusal" and str(c.refusal) then refusal[#refusal + 1] = c.refusal end
      end
    elseif t == "function_call" then
      calls[#calls + 1] = C.tool_call(str(item.call_id), str(item.name),
        str(item.arguments) or "", { provider = PROVIDER, id = str(item.id) })
    elseif t == "reasoning" then
      local texts = reasoning_texts(item)
      local s = concat(texts)
      if s ~= "" then reasoning[#reasoning + 1] = s end
      parts[#parts + 1] = reasoning_part(item, s, json.array(texts))
    end
    -- hosted-tool items (web_search_call, file_search_call ...) stay in `raw`
  end
  local g = { text = concat(text), refusal = #refusal > 0 and concat(refusal) or nil,
              reasoning = reasoning, parts = parts, calls = calls }
  return build(g, obj, usage_of(obj.usage), body, req)
end

---------------------------------------------------------------------------------------
-- Stored responses: fetch, cancel, resume a stream (background = true)
---------------------------------------------------------------------------------------

local function response_path(id, tail)
  return "/responses/" .. C.url_escape(id) .. (tail or "")
end

--- GET /responses/{id}: the response as it stands.
function P.build_retrieve(id)
  return { method = "GET", path = response_path(id) }
end

--- POST /responses/{id}/cancel: cancel a background response.
function P.build_cancel(id)
  return { method = "POST", path = response_path(id, "/cancel"), body = json.object() }
end

--- GET /responses/{id}?stream=true: its events again, after sequence number `after`.
function P.build_resume(id, after)
  local query = { stream = "true" }
  if after ~= nil then query.starting_after = string.format("%d", after) end
  return { method = "GET", path = response_path(id), query = query }
end

---------------------------------------------------------------------------------------
-- Errors
---------------------------------------------------------------------------------------

-- Kinds for error codes and types seen in bodies and inside streams.
local CODE_KIND = {
  insufficient_quota = "quota", invalid_api_key = "auth", authentication_error = "auth",
  rate_limit_exceeded = "rate_limit", server_error = "server", invalid_request_error = "bad_request",
  invalid_prompt = "bad_request", permission_error = "permission", not_found_error = "not_found",
  vector_store_timeout = "timeout",
}

-- Without an `error` member (an `error` stream event) the fields are the object's own.
local function top_level(f, t)
  f.message, f.code, f.param = str(t.message), val(t.code), val(t.param)
end

function P.decode_error(status, headers, body_text)
  local t, body = C.decode_body(body_text)
  local f = C.error_fields(t, top_level)
  f.kind = C.openai_error_kind(f)
  f.request_id = C.request_id(headers)
  return C.http_error(status, body_text, body, f)
end

---------------------------------------------------------------------------------------
-- Streams
---------------------------------------------------------------------------------------

function P.new_stream_state(req)
  return { req = req, text = {}, refusal = {}, calls = {}, by_item = {}, by_output = {},
           items = {}, item_order = {}, reasoning = {}, usage = {}, response = nil,
           finished = false, error = nil }
end

local function one(type_, obj, name, fields)
  local e = fields or {}
  e.type, e.raw, e.name = type_, obj, name
  return { e }
end

-- The record of an output item by its output_index (created on first sight).
local function item_rec(state, idx, item)
  local rec = idx ~= nil and state.items[idx] or nil
  if not rec then
    rec = { reasoning = {}, item = item }
    if idx ~= nil then
      state.items[idx] = rec
      state.item_order[#state.item_order + 1] = idx
    end
  end
  if type(item) == "table" then rec.item = item end
  return rec
end

local function find_call(state, obj)
  local id = str(obj.item_id)
  return (id and state.by_item[id]) or state.by_output[val(obj.output_index) or false]
end

local function new_call(state, item, idx)
  local call = { id = str(item.call_id), name = str(item.name), item_id = str(item.id),
                 args = {}, pos = #state.calls + 1 }
  state.calls[call.pos] = call
  if call.item_id then state.by_item[call.item_id] = call end
  if idx ~= nil then state.by_output[idx] = call end
  return call
end

-- Closes a call with the server's final argument text; a tail the deltas lacked is sent as
-- one more delta first, so the deltas always reassemble to arguments_json.
local function close_call(call, final_args, obj, name)
  local out = {}
  local have = concat(call.args)
  if type(final_args) == "string" and final_args ~= have and final_args:sub(1, #have) == have then
    local tail = final_args:sub(#have + 1)
    add_piece(call.args, tail)
    out[#out + 1] = { type = "tool_call", index = call.pos, id = call.id, arguments_delta = tail,
                      raw = obj }
    have = final_args
  end
  call.done = true
  call.final = C.tool_call(call.id, call.name, have, { provider = PROVIDER, id = call.item_id })
  out[#out + 1] = { type = "tool_call_done", call = call.final, raw = obj, name = name }
  return out
end

local TERMINAL = { ["response.completed"] = true, ["response.incomplete"] = true }

--- The common event, response.output_text.delta with a non-empty delta, without decoding
-- its tables (its `raw` is decoded on first read); nil for any other event, which
-- decode_event then decodes in full. Same state change and event.
function P.decode_fast(state, data, name)
  local d = fast_responses_text(data)
  if not d then return nil end
  add_piece(state.text, d)
  return lazy_text_event("text", d, data, name)
end

local text_batch = C.fast_batch("responses")

--- decode_fast over a batch of the core: queues the events of the common records from index
-- `i` on into `queue`; returns the index of the first other record and how many it queued.
function P.decode_batch(state, batch, i, queue)
  return text_batch(batch, i, state.text, queue)
end

function P.decode_event(state, ev)
  local name = ev.name
  local fe = P.decode_fast(state, ev.data, name)
  if fe then return { fe } end
  if ev.data == "[DONE]" then   -- OpenRouter ends a Responses stream as a chat stream does
    state.complete = true
    return {}
  end
  local obj, derr = json.decode(ev.data)
  if type(obj) ~= "table" or obj == null then return C.bad_json(state, ev, derr) end
  local t = str(obj.type) or name
  if t == "response.output_text.delta" then
    local d = str(obj.delta) or ""
    add_piece(state.text, d)
    if d == "" then return one("raw", obj, name) end
    return one("text", obj, name, { text = d })
  elseif t == "response.function_call_arguments.delta" then
    local call = find_call(state, obj)
    if not call then
      call = new_call(state, { id = obj.item_id }, val(obj.output_index))
    end
    local d = str(obj.delta) or ""
    add_piece(call.args, d)
    return { { type = "tool_call", index = call.pos, id = call.id, arguments_delta = d, raw = obj } }
  elseif t == "response.reasoning_summary_text.delta" or t == "response.reasoning_text.delta" then
    local d = str(obj.delta) or ""
    local rec = item_rec(state, val(obj.output_index))
    add_piece(rec.reasoning, d)
    rec.streamed = true
    add_piece(state.reasoning, d)
    if d == "" then return one("raw", obj, name) end
    return one("reasoning", obj, name, { text = d })
  elseif t == "response.refusal.delta" then
    local d = str(obj.delta) or ""
    state.refusal[#state.refusal + 1] = d
    if d == "" then return one("raw", obj, name) end
    return one("refusal", obj, name, { text = d })
  elseif t == "response.output_item.added" or t == "response.output_item.done" then
    local item = val(obj.item)
    local idx = val(obj.output_index)
    if type(item) ~= "table" then return one("raw", obj, name) end
    item_rec(state, idx, item)
    if item.type == "function_call" then
      local call = (str(item.id) and state.by_item[item.id]) or (idx ~= nil and state.by_output[idx])
      local out = {}
      if not call then
        call = new_call(state, item, idx)
        out[1] = { type = "tool_call", index = call.pos, id = call.id, name = call.name,
                   arguments_delta = "", raw = obj }
      else
        call.id = call.id or str(item.call_id)
        call.name = call.name or str(item.name)
      end
      if t == "response.output_item.done" and not call.done then
        for _, e in ipairs(close_call(call, str(item.arguments), obj, name)) do out[#out + 1] = e end
      end
      if #out == 0 then out[1] = { type = "raw", raw = obj, name = name } end
      return out
    end
    return one("raw", obj, name)
  elseif t == "response.function_call_arguments.done" then
    local call = find_call(state, obj)
    if call and not call.done then return close_call(call, str(obj.arguments), obj, name) end
    return one("raw", obj, name)
  elseif TERMINAL[t] then
    local r = val(obj.response)
    state.finished, state.complete = true, true
    state.response = type(r) == "table" and r or {}
    local out = {}
    local n = C.push_usage(state, usage_of(val(state.response.usage)), out, 0, obj, name)
    if n == 0 then out[1] = { type = "raw", raw = obj, name = name } end
    return out
  elseif t == "response.failed" then
    local r = val(obj.response)
    local e = type(r) == "table" and val(r.error) or nil
    local f = C.error_fields({ error = e }, top_level)
    local kind = CODE_KIND[f.code] or CODE_KIND[f.type] or "server"
    return C.stream_error(state, { kind = kind, message = f.message or "response failed",
      code = f.code, type = f.type, body = obj }, obj, name)
  elseif t == "error" then
    local f = C.error_fields(obj, top_level)
    local kind = CODE_KIND[f.code] or CODE_KIND[f.type] or "server"
    return C.stream_error(state, { kind = kind, message = f.message or "error in stream", code = f.code,
      type = f.type, param = f.param, body = obj }, obj, name)
  elseif t == "response.created" or t == "response.in_progress" or t == "response.queued" then
    local r = val(obj.response)
    if type(r) == "table" then state.started = r end
    return one("raw", obj, name)
  end
  -- content_part.*, *.done, reasoning_summary_part.*, web_search_call.*, unknown: raw
  return one("raw", obj, name)
end

function P.finish_stream(state)
  local err = C.unfinished(state, state.finished,
    "response.completed or response.incomplete")
  if err then return nil, err end
  local calls = {}
  for i, call in ipairs(state.calls) do
    if not call.final then
      call.final = C.tool_call(call.id, call.name, concat(call.args),
        { provider = PROVIDER, id = call.item_id })
    end
    calls[i] = call.final
  end
  local order = {}
  for i, idx in ipairs(state.item_order) do order[i] = idx end
  table.sort(order)
  local parts, reasoning = {}, {}
  for _, idx in ipairs(order) do
    local rec = state.items[idx]
    local item = rec.item
    if type(item) == "table" and item.type == "reasoning" then
      local texts = rec.streamed and rec.reasoning or reasoning_texts(item)
      local s = concat(texts)
      if s ~= "" then reasoning[#reasoning + 1] = s end
      parts[#parts + 1] = reasoning_part(item, s, json.array(reasoning_texts(item)))
    end
  end
  if #state.reasoning > 0 then reasoning = { concat(state.reasoning) } end
  local g = { text = concat(state.text), refusal = #state.refusal > 0 and concat(state.refusal) or nil,
              reasoning = reasoning, parts = parts, calls = calls }
  local r = state.response
  -- A resumed stream missed the events before its starting point: the terminal event's
  -- response object holds the whole output.
  if state.req and state.req.resumed then return P.decode_response(r, state.req) end
  return build(g, r, C.copy_usage(state.usage), r, state.req)
end

return P
