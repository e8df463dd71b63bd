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
-- * `response_format = { type = "json_schema", name, schema }` becomes a forced tool whose
--   input is the object (a schema that is not an object is wrapped as `{ value = ... }` and
--   unwrapped again). That tool's call is not a tool call: its input is `text` (streamed as
--   text deltas), `finish_reason` is "stop", and `parsed` / `parse_error` are checked as on
--   every route. With the request's own tools, tool_choice is "any" (a call of some tool;
--   the forced one is the answer), so run_tools rounds still work. With thinking on,
--   tool_choice must stay "auto" (the API refuses a forced tool then), so the system prompt
--   asks for the tool instead. `json_object` stays an
--   instruction in the system prompt.
-- * `reasoning.budget_tokens` (or an effort: low 1024, medium 4096, high 16384) becomes
--   `thinking = { type = "enabled", budget_tokens }`; when max_tokens is not given it is
--   4096, or budget + 4096 when thinking is on (the API wants max_tokens > budget).
-- * finish_stream's `raw` is a reconstructed Message object (id, model, role, content
--   blocks, stop_reason, stop_sequence, usage), the shape a non-streamed call returns.
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT

local json = require("llm.json")
local C = require("llm.providers.common")
local add_piece = C.add_piece
local media = require("llm.media")

local type, ipairs, concat = type, ipairs, table.concat
local null = json.null
local val, str = C.val, C.str
local fast_anthropic_text = require("llm.core").fast_anthropic_text
local lazy_text_event = C.lazy_text_event

local P = {
  name = "anthropic", base_url = "https://api.anthropic.com",
  api_key_env = "ANTHROPIC_API_KEY", base_url_env = "ANTHROPIC_BASE_URL",
  framing = "sse",
  version = "2023-06-01", default_max_tokens = 4096,
  -- the optional contract fields (API §9) this API maps, and the part types it takes
  request_fields = { top_k = true, metadata = true, user = true, service_tier = true },
  -- the parts Messages takes (API §12) and its documented limits: 5 MB per image and 32 MB
  -- per request, both counted on the base64 text the API receives
  part_types = { text = true,
                 image = { url = true, data = true, mime = { ["image/jpeg"] = true, ["image/png"] = true,
                                                             ["image/gif"] = true, ["image/webp"] = true } },
                 file = { url = true, data = true, mime = { ["application/pdf"] = true, ["text/plain"] = true } } },
  media_limits = { image = 5 * 1048576, file = 32 * 1048576, request = 32 * 1048576, encoded = true },
  max_cache_breakpoints = 4,
  -- usage.input_tokens leaves out cache reads and writes, which are reported beside it
  -- (client.usage adds them back: llm.accounting)
  usage_input_excludes_cache = true,
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

local map_finish = C.finish_mapper(FINISH, "stop")
P.map_finish = map_finish

local EFFORT_BUDGET = { minimal = 1024, low = 1024, medium = 4096, high = 16384 }

-- The forced tool of a structured-output request: { name, schema, wrap }, or nil.
local function forced_tool(req)
  local rf = type(req) == "table" and req.response_format or nil
  if type(rf) ~= "table" or rf.type ~= "json_schema" then return nil end
  local name = (tostring(rf.name or "response"):gsub("[^%w_%-]", "_")):sub(1, 64)
  local schema = C.schema(rf.schema) or { type = "object", properties = json.object() }
  return { name = name, schema = schema, wrap = schema.type ~= "object", description = rf.description }
end
P.forced_tool = forced_tool

-- The JSON text of the forced tool's input (unwrapped when the schema was wrapped).
local function forced_text(input, wrap)
  if wrap then input = type(input) == "table" and input.value or nil end
  if input == nil then return "null" end
  return json.encode(input)
end
-- A part with `cache = true` ends a cacheable prefix: its block gets the breakpoint.
local function cached(block, part)
  if part.cache then block.cache_control = { type = "ephemeral" } end
  return block
end

local function image_block(p)
  if p.url then return cached({ type = "image", source = { type = "url", url = p.url } }, p) end
  return cached({ type = "image", source = { type = "base64", media_type = p.mime_type or "image/png",
                                             data = p.data } }, p)
end

-- A file part (resolved by llm.media) as a document block: a PDF by URL or as base64, a
-- plain-text file as its text.
local function document_block(p)
  local source
  if p.url then
    source = { type = "url", url = p.url }
  elseif p.mime_type == "text/plain" then
    local text, derr = media.base64_decode(p.data)
    if not text then error("anthropic: a text file part's data is " .. tostring(derr), 0) end
    source = { type = "text", media_type = "text/plain", data = text }
  else
    source = { type = "base64", media_type = p.mime_type or "application/pdf", data = p.data }
  end
  return cached({ type = "document", source = source, title = p.name }, p)
end

-- A text block; an empty text part is left out (a bare string in a list is kept).
local function text_block(s, part)
  if part and s == "" then return nil end
  local b = { type = "text", text = s }
  if part then cached(b, part) end
  return b
end

-- Thinking blocks come back only when they came from this provider.
local function thinking_block(p)
  if p.type ~= "reasoning" then return nil end
  local pd = C.own_data(p.provider_data, "anthropic")
  if not pd then return nil end
  if pd.type == "redacted_thinking" then return { type = "redacted_thinking", data = pd.data } end
  return { type = "thinking", thinking = p.text or "", signature = pd.signature }
end

local function other_block(p)
  if p.type == "file" then return document_block(p) end
  return thinking_block(p)
end

-- Content blocks of a user or assistant message.
local function blocks(content)
  if type(content) == "string" then
    local out = json.array()
    if content ~= "" then out[1] = { type = "text", text = content } end
    return out
  end
  return C.map_parts(content or {}, text_block, image_block, other_block)
end

local function count_breakpoints(list)
  local n = 0
  for _, b in ipairs(list or {}) do
    if type(b) == "table" and b.cache_control then n = n + 1 end
  end
  return n
end

-- `cache = true` on the request: breakpoints after the system prompt, the tools and the
-- last user turn (API §12); then at most max_cache_breakpoints in all, as the API allows.
local function cache_breakpoints(body, req)
  if req.cache then
    if type(body.system) == "string" then
      body.system = json.array({ { type = "text", text = body.system, cache_control = { type = "ephemeral" } } })
    end
    if body.tools and #body.tools > 0 then
      local last = {}   -- a copy: a hosted tool is the user's own table
      for k, v in each(body.tools[#body.tools]) do last[k] = v end
      last.cache_control = { type = "ephemeral" }
      body.tools[#body.tools] = last
    end
    for i = #body.messages, 1, -1 do
      local m = body.messages[i]
      if m.role == "user" then
        if type(m.content) == "string" then
          m.content = json.array({ { type = "text", text = m.content } })
        end
        local last = m.content[#m.content]
        if last then last.cache_control = { type = "ephemeral" } end
        break
      end
    end
  end
  local n = count_breakpoints(type(body.system) == "table" and body.system or nil) + count_breakpoints(body.tools)
  for _, m in ipairs(body.messages) do
    if type(m.content) == "table" then
      n = n + count_breakpoints(m.content)
      for _, b in ipairs(m.content) do
        if type(b) == "table" and b.type == "tool_result" and type(b.content) == "table" then
          n = n + count_breakpoints(b.content)
        end
      end
    end
  end
  if n > P.max_cache_breakpoints then
    error(string.format("anthropic: at most %d cache breakpoints per request (cache = true on parts "
      .. "and on the request make %d)", P.max_cache_breakpoints, n), 0)
  end
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
  local fn = C.function_of(t)
  return { name = fn.name, description = fn.description, input_schema = C.parameters(fn.parameters) }
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

-- The message of a user or assistant turn.
local function message_out(m)
  if m.role == "assistant" then
    local content = blocks(m.content)
    for _, call in ipairs(m.tool_calls or {}) do
      content[#content + 1] = { type = "tool_use", id = call.id, name = call.name,
                                input = C.arguments_table(call) }
    end
    -- a plain-text turn stays a string (also the form of an assistant prefill)
    if type(m.content) == "string" and #content <= 1 and not m.tool_calls then
      return { role = "assistant", content = m.content }
    end
    return { role = "assistant", content = content }
  end
  if type(m.content) == "string" then return { role = "user", content = m.content } end
  return { role = "user", content = blocks(m.content) }
end

function P.build_request(req)
  local system, messages = C.turns(req, "content", tool_result_block, message_out)

  local rf = req.response_format
  local forced = forced_tool(req)
  if type(rf) == "table" and rf.type == "json_object" then
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
  body.top_k = req.top_k
  body.service_tier = req.service_tier
  if req.metadata ~= nil or req.user ~= nil then   -- `user` is Anthropic's metadata.user_id
    local md = {}
    for k, v in each(req.metadata or {}) do md[k] = v end
    if req.user ~= nil then md.user_id = req.user end
    body.metadata = md
  end
  body.tools = C.tools_list(req.tools, tool_out)
  body.tool_choice = tool_choice_out(req.tool_choice, req.parallel_tool_calls)
  if forced then
    local input_schema = forced.schema
    if forced.wrap then
      input_schema = { type = "object", properties = { value = forced.schema }, required = json.array({ "value" }) }
    end
    local own_tools = body.tools ~= nil and #body.tools > 0
    body.tools = body.tools or json.array()
    body.tools[#body.tools + 1] = { name = forced.name, input_schema = input_schema,
      description = forced.description or "Give the answer as this tool's input." }
    if body.thinking then
      body.tool_choice = { type = "auto" }
      local ask = "Answer by calling the tool " .. forced.name .. " once, with the answer as its input."
      if type(body.system) == "string" then body.system = body.system .. "\n\n" .. ask else body.system = ask end
    elseif own_tools then
      -- the request's own tools stay callable (run_tools rounds); some tool must be called,
      -- and calling the forced one is the answer
      local parallel = body.tool_choice and body.tool_choice.disable_parallel_tool_use
      body.tool_choice = { type = "any", disable_parallel_tool_use = parallel }
    else
      body.tool_choice = { type = "tool", name = forced.name }
    end
  end
  if req.stream then body.stream = true end
  cache_breakpoints(body, req)
  return C.post("/v1/messages", body, req)
end

-- The fields of a Messages body that /v1/messages/count_tokens takes.
local COUNT_FIELDS = { model = true, messages = true, system = true, tools = true,
                       tool_choice = true, thinking = true }

--- The token count of the request a chat call would send (POST /v1/messages/count_tokens).
function P.build_count_tokens(req)
  local built = P.build_request(req)
  local body = {}
  for k, v in each(built.body) do
    if COUNT_FIELDS[k] then body[k] = v end
  end
  built.body, built.path = body, "/v1/messages/count_tokens"
  return built
end

function P.decode_count_tokens(body)
  return { input_tokens = type(body) == "table" and C.int(val(body.input_tokens)) or nil }
end

-- GET /v1/models pages through `after_id`; 1000 is the largest page the API serves.
function P.build_models(page)
  local query = { limit = "1000" }
  if page then query.after_id = page end
  return { method = "GET", path = "/v1/models", query = query }
end

function P.decode_models(body)
  local out = {}
  local data = type(body) == "table" and val(body.data) or nil
  for _, m in ipairs(type(data) == "table" and data or {}) do
    if type(m) == "table" and str(m.id) then
      out[#out + 1] = { id = m.id, created = C.rfc3339_seconds(val(m.created_at)), raw = m }
    end
  end
  local more = type(body) == "table" and val(body.has_more) == true
  return out, more and str(body.last_id) or nil
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
local function build_response(content, stop_reason, usage, id, model, raw, req, calls_in, texts_in)
  local text, reasoning, parts, calls = {}, {}, {}, {}
  local forced = forced_tool(req)
  local answered = false
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
    elseif t == "tool_use" and forced and b.name == forced.name then
      -- structured output: the forced tool's input is the reply's text
      local s = texts_in and texts_in[b] or forced_text(val(b.input), forced.wrap)
      text[#text + 1] = s
      parts[#parts + 1] = { type = "text", text = s }
      answered = true
    elseif t == "tool_use" then
      if calls_in then
        calls[#calls + 1] = calls_in[b]
      else
        calls[#calls + 1] = C.decoded_tool_call(str(b.id), str(b.name), val(b.input), "")
      end
    end
    -- server_tool_use and *_tool_result blocks (hosted tools) stay in `raw`
  end
  local text_s = concat(text)
  local message = { role = "assistant", content = parts }
  if #calls > 0 then message.tool_calls = calls end
  local finish = map_finish(stop_reason)
  if answered and #calls == 0 and finish == "tool_calls" then finish = "stop" end
  local resp = {
    text = text_s, tool_calls = calls, finish_reason = finish,
    raw_finish_reason = stop_reason, usage = usage,
    reasoning = #reasoning > 0 and concat(reasoning) or nil,
    message = message, id = id, model = model, raw = raw,
  }
  return C.structured(resp, req)
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

-- Anthropic's errors carry a message and a type (no code or param), and the body may carry
-- the request id.
local function top_level(f, t) f.message = str(t.message) end

-- `error.details.error_code` values of a 429 that waiting cannot fix: the organization
-- reached the spend limit of its tier or of its contract (never read from the message).
local SPEND_LIMIT = { enforced_spend_limit_reached = true, contract_spend_limit_reached = true }

local function error_fields(t)
  if type(t) ~= "table" then return {} end
  local e = C.error_fields(t, top_level)
  local err, details = val(t.error), nil
  if type(err) == "table" then details = val(err.details) end
  return { message = e.message, type = e.type, request_id = str(t.request_id),
           code = type(details) == "table" and str(details.error_code) or nil }
end

function P.decode_error(status, headers, body_text)
  local t, body = C.decode_body(body_text)
  local f = error_fields(t)
  f.kind = REFINE[f.type]
  if status == 429 and SPEND_LIMIT[f.code] then f.kind = "quota" end
  f.request_id = C.header(headers, "request-id") or C.header(headers, "x-request-id") or f.request_id
  return C.http_error(status, body_text, body, f)
end

---------------------------------------------------------------------------------------
-- Streams
---------------------------------------------------------------------------------------

function P.new_stream_state(req)
  return { req = req, forced = forced_tool(req), blocks = {}, order = {}, calls = {}, usage = {}, raw_usage = nil,
           stop_reason = nil, stop_sequence = nil, stopped = false, error = nil }
end

-- The events of a record that carries usage (a usage event when it changed, else raw).
local function usage_events(state, u, obj, name)
  state.raw_usage = u
  local out = {}
  local n = C.push_usage(state, merge_usage(state.usage, u), out, 0, obj, name)
  if n == 0 then out[1] = { type = "raw", raw = obj, name = name } end
  return out
end

-- Blocks that open with text: the field holding it, and the event their text gives.
local START_TEXT = { text = "text", thinking = "thinking" }
-- The block type a text delta belongs to.
local DELTA_BLOCK = { text_delta = "text", thinking_delta = "thinking", signature_delta = "thinking" }
local TEXT_EVENT = { text = "text", thinking = "reasoning" }

--- The common event, a text_delta of a text block, without decoding its tables (its `raw`
-- is decoded on first read); nil for any other event, which decode_event then decodes in
-- full. Same state change and event.
function P.decode_fast(state, data, name)
  if name == "ping" then return nil end
  local idx, s = fast_anthropic_text(data)
  if not idx then return nil end
  local b = state.blocks[idx]
  if not b or b.type ~= "text" then return nil end
  add_piece(b.text, s)
  return lazy_text_event("text", s, data, name)
end

local text_batch = C.fast_batch("anthropic")

--- decode_fast over a batch of the core: queues the events of the common records from index
-- `i` on into `queue`; returns the index of the first other record and how many it queued.
function P.decode_batch(state, batch, i, queue)
  return text_batch(batch, i, state.blocks, queue)
end

function P.decode_event(state, ev)
  local name = ev.name
  if name == "ping" then return {} end
  local fe = P.decode_fast(state, ev.data, name)
  if fe then return { fe } end
  local obj, derr = json.decode(ev.data)
  if type(obj) ~= "table" or obj == null then return C.bad_json(state, ev, derr) end
  local t = obj.type
  if t == "content_block_delta" then
    local d = obj.delta
    local b = state.blocks[obj.index]
    if type(d) ~= "table" or not b then return C.raw_event(obj, name) end
    local dt = d.type
    -- a delta counts only for a block of its own type (as the SDKs accumulate them): what
    -- is streamed is then exactly what the final response holds
    if DELTA_BLOCK[dt] and DELTA_BLOCK[dt] ~= b.type then return C.raw_event(obj, name) end
    if dt == "text_delta" then
      local s = str(d.text)   -- a server may send any JSON value here
      if not s or s == "" then return C.raw_event(obj, name) end
      add_piece(b.text, s)
      return { { type = "text", text = s, raw = obj, name = name } }
    elseif dt == "thinking_delta" then
      local s = str(d.thinking)
      if not s or s == "" then return C.raw_event(obj, name) end
      add_piece(b.text, s)
      return { { type = "reasoning", text = s, raw = obj, name = name } }
    elseif dt == "input_json_delta" then
      local pj = str(d.partial_json) or ""
      add_piece(b.args, pj)
      b.got_delta = true
      if b.forced then   -- structured output: the input streams as the reply's text
        if pj == "" or state.forced.wrap then return C.raw_event(obj, name) end
        return { { type = "text", text = pj, raw = obj, name = name } }
      end
      -- a server-side tool (server_tool_use: web search, code execution) runs on Anthropic's
      -- side: its input is no client tool call, so run_tools must never see it
      if not b.call_pos then return C.raw_event(obj, name) end
      return { { type = "tool_call", index = b.call_pos, id = b.id, arguments_delta = pj,
                 raw = obj } }
    elseif dt == "signature_delta" then
      b.signature = (b.signature or "") .. (str(d.signature) or "")
    end
    return C.raw_event(obj, name)
  elseif t == "content_block_start" then
    local cb = val(obj.content_block)
    local idx = C.int(obj.index)
    if type(cb) ~= "table" or idx == nil then return C.raw_event(obj, name) end
    if state.blocks[idx] then   -- would replace a block whose deltas were already delivered
      return C.stream_error(state, { kind = "protocol",
        message = "content block " .. idx .. " started twice" }, obj, name)
    end
    local b = { type = cb.type, text = {}, args = {}, start = cb, id = str(cb.id),
                name = str(cb.name), signature = str(cb.signature), data = str(cb.data) }
    state.blocks[idx] = b
    state.order[#state.order + 1] = idx
    local field = START_TEXT[cb.type]
    if field then
      local s = str(cb[field])
      if s and s ~= "" then
        b.text[1] = s
        return { { type = TEXT_EVENT[cb.type], text = s, raw = obj, name = name } }
      end
    elseif cb.type == "tool_use" and state.forced and b.name == state.forced.name then
      b.forced = true   -- not a tool call: its input is the structured output
    elseif cb.type == "tool_use" then
      state.calls[#state.calls + 1] = b
      b.call_pos = #state.calls
      return { { type = "tool_call", index = b.call_pos, id = b.id, name = b.name,
                 arguments_delta = "", raw = obj } }
    end
    return C.raw_event(obj, name)
  elseif t == "content_block_stop" then
    local b = state.blocks[obj.index]
    if b and b.forced then
      local argtext = concat(b.args)
      local input = json.decode(argtext)
      if argtext == "" then input = val(b.start.input) end
      b.text_out = state.forced.wrap and forced_text(input, true) or (argtext ~= "" and argtext or json.encode(input))
      if state.forced.wrap or argtext == "" then   -- not streamed as deltas: the text comes whole
        return { { type = "text", text = b.text_out, raw = obj, name = name } }
      end
      return C.raw_event(obj, name)
    end
    if b and b.type == "tool_use" and not b.call then
      local input = val(b.start.input)
      -- the whole input may come with content_block_start (no deltas follow then)
      if b.got_delta or type(input) ~= "table" or next(input) == nil then input = nil end
      b.call = C.decoded_tool_call(b.id, b.name, input, concat(b.args))
      return { { type = "tool_call_done", call = b.call, raw = obj, name = name } }
    end
    return C.raw_event(obj, name)
  elseif t == "message_start" then
    local m = val(obj.message)
    if type(m) ~= "table" then return C.raw_event(obj, name) end
    state.id, state.model, state.role = str(m.id), str(m.model), str(m.role)
    return usage_events(state, val(m.usage), obj, name)
  elseif t == "message_delta" then
    local d = val(obj.delta)
    if type(d) == "table" then
      local sr = str(d.stop_reason)
      if sr then state.stop_reason = sr end
      if val(d.stop_sequence) ~= nil then state.stop_sequence = d.stop_sequence end
    end
    return usage_events(state, val(obj.usage), obj, name)
  elseif t == "message_stop" then
    state.stopped, state.complete = true, true
    return C.raw_event(obj, name)
  elseif t == "ping" then
    return {}
  elseif t == "error" then
    local f = error_fields(obj)
    return C.stream_error(state, { kind = TYPE_KIND[f.type] or "server",
      message = f.message or "error in stream", type = f.type,
      request_id = f.request_id, body = obj }, obj, name)
  end
  return C.raw_event(obj, name)
end

function P.finish_stream(state)
  local err = C.unfinished(state, state.stop_reason, "message_delta.stop_reason")
  if err then return nil, err end
  -- rebuild the Message's content blocks in index order
  local idxs = {}
  for i, idx in ipairs(state.order) do idxs[i] = idx end
  table.sort(idxs)
  local content = json.array()
  local calls_by_block, texts_by_block = {}, {}
  for _, idx in ipairs(idxs) do
    local b = state.blocks[idx]
    local blk
    if b.type == "text" then
      blk = { type = "text", text = concat(b.text) }
    elseif b.type == "thinking" then
      blk = { type = "thinking", thinking = concat(b.text), signature = b.signature or "" }
    elseif b.type == "redacted_thinking" then
      blk = { type = "redacted_thinking", data = b.data }
    elseif b.forced then
      local input = json.decode(concat(b.args))
      if type(input) ~= "table" then input = val(b.start.input) end
      blk = { type = "tool_use", id = b.id, name = b.name, input = type(input) == "table" and input or json.object() }
      texts_by_block[blk] = b.text_out or concat(b.args)
    elseif b.type == "tool_use" then
      if not b.call then b.call = C.tool_call(b.id, b.name, concat(b.args)) end
      blk = { type = "tool_use", id = b.id, name = b.name,
              input = b.call.arguments or json.object() }
      calls_by_block[blk] = b.call
    elseif b.type == "server_tool_use" and b.got_delta then
      blk = {}   -- a hosted tool's call, with the input its deltas carried
      for k, v in each(b.start) do blk[k] = v end
      local input = json.decode(concat(b.args))
      if type(input) == "table" then blk.input = input end
    else
      blk = b.start -- hosted-tool blocks as they started
    end
    content[#content + 1] = blk
  end
  local raw = { id = state.id, type = "message", role = state.role or "assistant",
                model = state.model, content = content, stop_reason = state.stop_reason,
                stop_sequence = state.stop_sequence or null, usage = state.raw_usage }
  return build_response(content, state.stop_reason, C.copy_usage(state.usage), state.id,
    state.model, raw, state.req, calls_by_block, texts_by_block)
end

return P
