-- llm.providers.common: helpers shared by the provider translation modules.
-- Pure functions only (no I/O, no clock), like the providers themselves.
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT

local json = require("llm.json")
local schema = require("llm.schema")

local M = {}

local null = json.null
local type, ipairs, concat = type, ipairs, table.concat
local tointeger = require("llm.compat").tointeger
local add_piece = require("llm.core").add_piece

--- nil for JSON null (and for nil); the value otherwise.
function M.val(v)
  if v == null then return nil end
  return v
end

-- Events whose `raw` is decoded when first read. A stream of text deltas reads only the text
-- of most events; the C fast paths (core.fast_*_text) take it from the event's JSON text,
-- and the decoded table that `ev.raw` holds is built only if someone looks at it. The data
-- text waits in a weak table (keyed by the event, so it goes with it); the event's only
-- difference from an eagerly decoded one is that `raw` is not among its keys until read.
local lazy_data = setmetatable({}, { __mode = "k" })
local LazyRaw = { __name = "llm.Event" }
function LazyRaw.__index(ev, k)
  if k ~= "raw" then return nil end
  local data = lazy_data[ev]
  if data == nil then return nil end
  local obj = json.decode(data)
  lazy_data[ev] = nil
  rawset(ev, "raw", obj)
  return obj
end

--- A `type` event with `text` whose `raw` is the JSON text `data`, decoded on first read.
---@param type_ string the event type ("text", "reasoning")
---@param text string the text delta
---@param data string the event's JSON text (already validated by the fast path)
---@param name? string the SSE event name
---@return table event
function M.lazy_text_event(type_, text, data, name)
  local ev = setmetatable({ type = type_, text = text, name = name }, LazyRaw)
  lazy_data[ev] = data
  return ev
end

--- Append a streamed piece (a text delta, a piece of tool-call arguments) to `list`, the
-- pieces a final response joins with table.concat. Every 16 pieces become one string (the
-- list's field `chunks` counts them), so a long reply keeps about one string per 16 deltas
-- rather than a table slot and a string for each (core.add_piece; the C fast path does the
-- same).
---@param list table the pieces so far
---@param s string the new piece
M.add_piece = add_piece

--- A batch decoder for the common text deltas of a provider ("chat", "anthropic",
--- "responses"): `decode(batch, from, target, queue)` queues the events of the common records
--- of a core "events" batch from index `from` on, as lazy_text_event would make them, and
--- returns the index of the first other record and how many it queued (core.fast_batch).
---@param kind string "chat", "anthropic" or "responses"
---@return function decode
function M.fast_batch(kind)
  return require("llm.core").fast_batch(kind, LazyRaw, lazy_data)
end

--- A string field or nil (JSON null and non-strings are nil).
function M.str(v)
  if type(v) == "string" then return v end
  return nil
end

--- An integer or nil: usage counts are integers even when a server writes 17.0. A value that
--- is not a whole number from 0 to 2^53 (1e400 decodes as inf, 1.5, -3) is dropped (nil):
--- no count at all is truer than an invented one.
local mtype = math.type   -- 5.3+ (nil on LuaJIT and 5.1)
function M.int(v)
  if mtype and mtype(v) == "integer" then   -- what the decoder makes of a count
    if v < 0 or v > 9007199254740992 then return nil end
    return v
  end
  if type(v) ~= "number" or v ~= v or v < 0 or v > 9007199254740992 or v % 1 ~= 0 then return nil end
  return tointeger and tointeger(v) or v
end

--- Error kind for an HTTP status (API.md §4 and §9).
function M.kind_for_status(status)
  status = tointeger(status)
  if not status then return "protocol" end
  if status == 401 then return "auth" end
  if status == 403 then return "permission" end
  if status == 404 then return "not_found" end
  if status == 408 then return "timeout" end
  if status == 429 then return "rate_limit" end
  if status == 402 then return "quota" end
  if status == 529 then return "overloaded" end
  if status >= 500 then return "server" end
  if status >= 400 then return "bad_request" end
  return "protocol"
end

--- A header value by lower-case name. Headers normally arrive with lower-case names (the
--- core lowers them); a table with other casing is searched as a fallback.
function M.header(headers, name)
  if type(headers) ~= "table" then return nil end
  local v = headers[name]
  if v ~= nil then return v end
  for k, val in each(headers) do
    if type(k) == "string" and k:lower() == name then return val end
  end
  return nil
end

--- Our own message when an error body carries none.
function M.fallback_message(status, text)
  local where = status and ("HTTP " .. tostring(status)) or "the server"
  if type(text) ~= "string" or text:find("^%s*$") then
    return where .. " with an empty body"
  end
  if text:find("^%s*<") then return where .. " with an HTML body" end
  local snippet = text:gsub("%s+", " ")
  if #snippet > 200 then snippet = snippet:sub(1, 200) .. "..." end
  return where .. ": " .. snippet
end

--- Decodes an error body text: the decoded table (or nil) and the body to report.
function M.decode_body(body_text)
  if type(body_text) == "table" then return body_text, body_text end
  if type(body_text) ~= "string" then return nil, body_text end
  local t = json.decode(body_text)
  if type(t) == "table" and t ~= null then return t, t end
  return nil, body_text
end

--- Concatenated text of a content value (string or list of parts).
function M.content_text(content)
  if type(content) == "string" then return content end
  if type(content) ~= "table" then return "" end
  local out, n = {}, 0
  for _, p in ipairs(content) do
    if type(p) == "string" then
      n = n + 1; out[n] = p
    elseif type(p) == "table" and p.type == "text" and type(p.text) == "string" then
      n = n + 1; out[n] = p.text
    end
  end
  return concat(out)
end

--- A normalized tool call from the raw argument text. An empty text means `{}`; text that
--- is not valid JSON gives `arguments = nil` (API.md §9) with `arguments_json` kept.
function M.tool_call(id, name, arguments_json, provider_data)
  local args
  if arguments_json == nil or arguments_json == "" or arguments_json:find("^%s*$") then
    args = json.object()
    arguments_json = arguments_json or ""
  else
    local v = json.decode(arguments_json)
    if v ~= nil and v ~= null then args = v end
  end
  return { id = id, name = name, arguments = args, arguments_json = arguments_json,
           provider_data = provider_data }
end

--- The JSON text a tool call is sent back with: the text as received when there is one,
--- else the encoded arguments.
function M.arguments_text(call)
  if type(call.arguments_json) == "string" and call.arguments_json ~= "" then
    return call.arguments_json
  end
  if type(call.arguments) == "table" then return json.encode(call.arguments) end
  if type(call.arguments) == "string" then return call.arguments end
  return "{}"
end

--- The decoded arguments of a tool call being replayed (a table; `{}` when unknown).
function M.arguments_table(call)
  if type(call.arguments) == "table" then return call.arguments end
  if type(call.arguments_json) == "string" and call.arguments_json ~= "" then
    local v = json.decode(call.arguments_json)
    if type(v) == "table" and v ~= null then return v end
  end
  return json.object()
end

--- A tool result's content as text: strings as is, a list of parts as its text, any other
--- table as JSON (API.md §10: a table result is sent as JSON).
function M.tool_result_text(content)
  if type(content) == "string" then return content end
  if content == nil or content == null then return "" end
  if type(content) == "table" then
    local first = content[1]
    if type(first) == "table" and first.type == "text" then return M.content_text(content) end
    return json.encode(content)
  end
  return tostring(content)
end

--- Usage from provider counts: integers, nil when absent, total computed when both parts
--- are known and the server sent none.
function M.usage(input, output, total, extra)
  local int, val = M.int, M.val
  local u = { input_tokens = int(val(input)), output_tokens = int(val(output)),
              total_tokens = int(val(total)) }
  if u.total_tokens == nil and u.input_tokens and u.output_tokens then
    u.total_tokens = u.input_tokens + u.output_tokens
  end
  if extra then
    for k, v in each(extra) do u[k] = int(val(v)) end
  end
  return u
end

--- A fresh copy of a usage table (events carry their own copy).
function M.copy_usage(u)
  local c = {}
  for k, v in each(u) do c[k] = v end
  return c
end

--- True when two usage tables differ.
function M.usage_changed(a, b)
  for k, v in each(a) do if b[k] ~= v then return true end end
  for k, v in each(b) do if a[k] ~= v then return true end end
  return false
end

--- Whether a tool table is a function tool (has `run` or `parameters`, or no `type`) or a
--- hosted tool passed through unchanged.
function M.is_function_tool(t)
  return t.run ~= nil or t.parameters ~= nil or t.type == nil or t.type == "function"
end

-- JSON Schema keywords whose value is a list, a map of names to schemas, or one schema.
local LIST_KEYS = { required = true, enum = true, examples = true }
local SCHEMA_LIST_KEYS = { anyOf = true, oneOf = true, allOf = true, prefixItems = true }
local SCHEMA_MAP_KEYS = { properties = true, patternProperties = true, ["$defs"] = true,
                          definitions = true, dependentSchemas = true }
local SCHEMA_KEYS = { items = true, additionalProperties = true, ["not"] = true,
                      contains = true, propertyNames = true, ["if"] = true, ["then"] = true,
                      ["else"] = true, additionalItems = true, unevaluatedProperties = true }

--- A copy of a JSON Schema with empty lists marked as arrays (`required = {}` must be `[]`)
--- and empty maps marked as objects, so a user's schema without markers encodes right.
function M.schema(s)
  if type(s) ~= "table" or s == null then return s end
  if getmetatable(s) then return s end -- already marked (decoded or built with json.*)
  local out = {}
  for k, v in each(s) do
    if type(v) ~= "table" or v == null or getmetatable(v) then
      out[k] = v
    elseif LIST_KEYS[k] or (k == "type") then
      out[k] = json.array(v)
    elseif SCHEMA_LIST_KEYS[k] then
      local l = json.array()
      for i, sub in ipairs(v) do l[i] = M.schema(sub) end
      out[k] = l
    elseif SCHEMA_MAP_KEYS[k] then
      local m = json.object()
      for name, sub in each(v) do m[name] = M.schema(sub) end
      out[k] = m
    elseif SCHEMA_KEYS[k] then
      if v[1] ~= nil then
        local l = json.array()
        for i, sub in ipairs(v) do l[i] = M.schema(sub) end
        out[k] = l
      else
        out[k] = M.schema(v)
      end
    else
      out[k] = v
    end
  end
  return out
end

--- Shallow merge of `extra` into body, last (API.md §2: provider fields verbatim).
function M.merge_extra(body, extra)
  if type(extra) == "table" then
    for k, v in each(extra) do body[k] = v end
  end
  return body
end

--- A list of stop sequences as a JSON array (a single string becomes a one-item list).
function M.stop_list(stop)
  if stop == nil then return nil end
  if type(stop) == "string" then return json.array({ stop }) end
  local l = json.array()
  for i, v in ipairs(stop) do l[i] = v end
  return l
end

--- A finish-reason mapper: nil stays nil, a raw value maps through `map`, an unknown one
--- to `other`; the raw value `stop_with_calls` (when given) means "tool_calls" in a turn
--- that has calls. Called as `mapper(raw, has_calls)`.
function M.finish_mapper(map, other, stop_with_calls)
  return function(raw, has_calls)
    if raw == nil then return nil end
    if has_calls and raw == stop_with_calls then return "tool_calls" end
    return map[raw] or other
  end
end

local OBJECT_SCHEMA = { type = "object" }

--- Structured output (API §12): with a `response_format`, `resp.parsed` is the decoded
--- text only when it is valid JSON that satisfies the schema (json_object: any object);
--- otherwise `resp.parse_error` says why, with the path (`$.moons[2]: expected string, got
--- number`). One validator: llm.schema, the one tool arguments go through. Returns resp.
function M.structured(resp, req)
  local rf = type(req) == "table" and req.response_format or nil
  if rf == nil or type(resp.text) ~= "string" then return resp end
  if type(rf) == "table" and rf.type ~= "json_schema" and rf.type ~= "json_object" then return resp end   -- "text"
  local v, err = json.decode(resp.text)
  if v == nil then
    resp.parse_error = "not valid JSON: " .. tostring(err)
    return resp
  end
  local s = type(rf) == "table" and (rf.type == "json_schema" and rf.schema
    or rf.type == "json_object" and OBJECT_SCHEMA) or nil
  if s then
    local ok, msg = schema.validate(v, s, "$")
    if not ok then
      resp.parse_error = msg
      return resp
    end
  end
  resp.parsed = v
  return resp
end

---------------------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------------------

--- `s` percent-encoded for one URL path segment or query component: every byte but the
--- unreserved ones (RFC 3986) is escaped, so `/`, `..`-walks, `?` and `#` cannot change
--- where a request goes.
function M.url_escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(ch) return string.format("%%%02X", ch:byte()) end))
end

--- Auth headers for an API that takes the key as a Bearer token (none without a key).
function M.bearer_auth(api_key)
  if api_key == nil or api_key == false or api_key == "" then return {} end
  return { ["authorization"] = "Bearer " .. api_key }
end

--- `pd` when it is provider_data that came from `provider` (parts from other providers are
--- not replayed to this one), else nil.
function M.own_data(pd, provider)
  if type(pd) == "table" and pd.provider == provider then return pd end
  return nil
end

--- The URL of an image part: its `url`, else a `data:` URL built from `data` and `mime_type`.
function M.image_url(p)
  local url = p.url
  if not url and p.data then
    url = "data:" .. (p.mime_type or "image/png") .. ";base64," .. p.data
  end
  return url
end

--- A content list mapped part by part into a JSON array: a string (a bare text) through
--- `text(s)`, a text part through `text(p.text, p)`, an image part through `image(p)` and any
--- other part through `other(p)` when given; a nil result is left out.
function M.map_parts(content, text, image, other)
  local out = json.array()
  for _, p in ipairs(content) do
    local v
    if type(p) == "string" then v = text(p)
    elseif p.type == "text" then v = text(p.text, p)
    elseif p.type == "image" then v = image(p)
    elseif other then v = other(p) end
    if v ~= nil then out[#out + 1] = v end
  end
  return out
end

--- The function description inside a tool table: `t.function` for a tool already in Chat
--- Completions shape, else the tool itself.
function M.function_of(t)
  if t.type == "function" and type(t["function"]) == "table" then return t["function"] end
  return t
end

--- A tool's parameter schema ready to send (an empty object schema when it has none).
function M.parameters(params)
  return M.schema(params) or { type = "object", properties = json.object() }
end

--- `tools` mapped through `tool_out` into a JSON array; nil when there are none (the field
--- is then left out).
function M.tools_list(tools, tool_out)
  if type(tools) ~= "table" or #tools == 0 then return nil end
  local out = json.array()
  for i, t in ipairs(tools) do out[i] = tool_out(t) end
  return out
end

--- The system texts and the turns of `req`, for an API that takes the system prompt apart
--- (`req.system` first, then every system-role message) and wants consecutive tool results
--- in one user turn. `key` names a turn's list ("content" / "parts"); `result(m)` gives the
--- item of one tool result and `turn(m)` the turn of any other message.
function M.turns(req, key, result, turn)
  local system = {}
  if req.system ~= nil then system[1] = M.content_text(req.system) end
  local turns = json.array()
  local pending -- the user turn collecting consecutive tool results
  for _, m in ipairs(req.messages or {}) do
    local role = m.role
    if role == "system" or role == "developer" then
      system[#system + 1] = M.content_text(m.content)
    elseif role == "tool" then
      if not pending then
        pending = { role = "user", [key] = json.array() }
        turns[#turns + 1] = pending
      end
      local items = pending[key]
      items[#items + 1] = result(m)
    else
      pending = nil
      turns[#turns + 1] = turn(m)
    end
  end
  return system, turns
end

--- The HTTP request for a JSON POST: `extra` merged into the body last, and an `accept`
--- header of `stream_type` (default "text/event-stream") when the request streams.
function M.post(path, body, req, stream_type)
  M.merge_extra(body, req.extra)
  local headers = { ["content-type"] = "application/json" }
  if req.stream then headers["accept"] = stream_type or "text/event-stream" end
  return { method = "POST", path = path, headers = headers, body = body }
end

---------------------------------------------------------------------------------------
-- Responses
---------------------------------------------------------------------------------------

--- A reader of usage in the OpenAI shape (Chat Completions and Responses name the fields
--- differently): counts under `input` / `output` / total_tokens, `reasoning_tokens` inside
--- the `out_details` object and `cached_tokens` inside `in_details`. The reader maps a raw
--- usage object (or JSON null / nil, giving `{}`) to normalized usage.
function M.usage_reader(input, output, out_details, in_details)
  return function(u)
    if type(u) ~= "table" or u == null then return {} end
    local extra
    local od, id = M.val(u[out_details]), M.val(u[in_details])
    if type(od) == "table" and M.val(od.reasoning_tokens) ~= nil then
      extra = { reasoning_tokens = od.reasoning_tokens }
    end
    if type(id) == "table" and M.val(id.cached_tokens) ~= nil then
      extra = extra or {}
      extra.cached_input_tokens = id.cached_tokens
    end
    -- OpenRouter counts the input written to a provider's cache (part of the input, as
    -- cached_tokens is) in prompt_tokens_details.cache_write_tokens
    if type(id) == "table" and M.val(id.cache_write_tokens) ~= nil then
      extra = extra or {}
      extra.cache_creation_input_tokens = id.cache_write_tokens
    end
    return M.usage(u[input], u[output], u.total_tokens, extra)
  end
end

--- A normalized tool call whose arguments may arrive decoded: for a table `args` that table
--- is `arguments` and its encoding `arguments_json`; otherwise the call is built from
--- `text`, the argument text to use instead.
function M.decoded_tool_call(id, name, args, text, provider_data)
  if type(args) ~= "table" then return M.tool_call(id, name, text, provider_data) end
  local call = M.tool_call(id, name, json.encode(args), provider_data)
  call.arguments = args
  return call
end

--- The assistant turn of a reply: `content` is the text, or a reasoning part (tagged with
--- `provider`) and a text part when there was reasoning; `tool_calls` when there are calls.
function M.assistant_message(text, reasoning, calls, provider)
  local msg = { role = "assistant", content = text }
  if reasoning and reasoning ~= "" then
    msg.content = { { type = "reasoning", text = reasoning, provider_data = { provider = provider } },
                    { type = "text", text = text } }
  end
  if #calls > 0 then msg.tool_calls = calls end
  return msg
end

--- The fields of an error body (or stream event) `t`: an `error` object gives message, type,
--- code and param, an `error` string the message; a table without either is read by the
--- provider's `top(f, t)` (when given), which fills `f` from the table's own fields.
function M.error_fields(t, top)
  local f = {}
  if type(t) ~= "table" then return f end
  local e = M.val(t.error)
  if type(e) == "table" then
    f.message, f.type, f.code, f.param = M.str(e.message), M.str(e.type), M.val(e.code), M.val(e.param)
  elseif type(e) == "string" then
    f.message = e
  elseif top then
    top(f, t)
  end
  return f
end

--- The kind an OpenAI error has whatever its status: insufficient_quota (a 429 that waiting
--- cannot fix) is "quota"; nil otherwise.
function M.openai_error_kind(f)
  if f.code == "insufficient_quota" or f.type == "insufficient_quota" then return "quota" end
  return nil
end

--- What decode_error returns, from the error fields `f` read from the body (kind, message,
--- request_id, code, type, param; each optional): the kind from the status unless `f.kind`
--- gives one, and our own message when the body has none.
function M.http_error(status, body_text, body, f)
  return {
    kind = f.kind or M.kind_for_status(status), status = status,
    message = f.message or M.fallback_message(status, body_text),
    request_id = f.request_id, body = body, code = f.code, type = f.type, param = f.param,
  }
end

--- The request id from the response headers (`x-request-id`, else `request-id`).
function M.request_id(headers)
  return M.header(headers, "x-request-id") or M.header(headers, "request-id")
end

---------------------------------------------------------------------------------------
-- Endpoints beyond chat: embeddings, token counts, model lists
---------------------------------------------------------------------------------------

--- The input texts of an embedding request as a JSON array.
function M.text_list(input)
  local out = json.array()
  for i, s in ipairs(input) do out[i] = s end
  return out
end

--- A list of numbers decoded from JSON as a plain Lua list (a vector).
function M.vector(v)
  local out = {}
  if type(v) ~= "table" then return out end
  for i, x in ipairs(v) do out[i] = type(x) == "number" and x or 0 end
  return out
end

-- Days from 1970-01-01 to a civil date (proleptic Gregorian; H. Hinnant's algorithm).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Unix seconds of an RFC 3339 time ("2025-02-19T00:00:00Z", "...+02:00"), or nil.
function M.rfc3339_seconds(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, rest = s:match("^(%d%d%d%d)-(%d%d)-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  local t = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400
    + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
  rest = rest:gsub("^%.%d+", "")
  local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)$")
  if sign then
    local off = tonumber(oh) * 3600 + tonumber(om) * 60
    t = sign == "+" and t - off or t + off
  elseif rest ~= "Z" and rest ~= "z" and rest ~= "" then
    return nil
  end
  return M.int(t)
end

---------------------------------------------------------------------------------------
-- Streams
---------------------------------------------------------------------------------------

--- Marks the stream failed with `fields`; the one error event to return.
function M.stream_error(state, fields, obj, name)
  state.error = fields
  return { { type = "error", error = fields, raw = obj, name = name } }
end

--- The error events for a stream record whose data did not decode to a JSON object (`derr`
--- is the decoder's message, if any); the stream is then failed. `what` names the record in
--- the message ("event", the default, or "line"). Providers decode and test the data inline,
--- so a good record costs no call.
function M.bad_json(state, ev, derr, what)
  return M.stream_error(state, { kind = "protocol",
    message = "bad JSON in stream " .. (what or "event") .. ": " .. tostring(derr or "not an object") },
    ev.data, ev.name)
end

--- Puts the usage `nu` into the stream state and appends a usage event (a fresh copy) at
--- out[n + 1] when it differs from the state's; returns the new event count.
function M.push_usage(state, nu, out, n, obj, name)
  if M.usage_changed(state.usage, nu) then
    state.usage = nu
    n = n + 1; out[n] = { type = "usage", usage = M.copy_usage(nu), raw = obj, name = name }
  end
  return n
end

--- push_usage for a record's raw usage table `u`: `u` is kept as state.raw_usage and
--- normalized with `read`.
function M.push_usage_of(state, u, read, out, n, obj, name)
  state.raw_usage = u
  return M.push_usage(state, read(u), out, n, obj, name)
end

--- Appends the events of calls that arrive whole, `calls[first..]`: one tool_call delta
--- with every argument each, then their tool_call_done events. Returns the new count.
function M.push_whole_calls(out, n, calls, first, obj, name)
  for i = first, #calls do
    local c = calls[i]
    n = n + 1
    out[n] = { type = "tool_call", index = i, id = c.id, name = c.name,
               arguments_delta = c.arguments_json, raw = obj }
  end
  for i = first, #calls do
    n = n + 1; out[n] = { type = "tool_call_done", call = calls[i], raw = obj, name = name }
  end
  return n
end

--- The events of a record without normalized meaning.
function M.raw_event(obj, name)
  return { { type = "raw", raw = obj, name = name } }
end

--- Why finish_stream has no response: the stream's error, or (when the finish signal was
--- not `seen`) a protocol error naming the signal `what`; nil when the stream is complete.
function M.unfinished(state, seen, what)
  if state.error then return state.error end
  if not seen then return { kind = "protocol", message = "stream ended before " .. what } end
  return nil
end

return M
