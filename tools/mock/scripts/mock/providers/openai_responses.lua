-- OpenAI Responses: POST /v1/responses.
-- Stream framing: `event: <type>\ndata: <json>\n\n`, the name equal to the JSON `type`, every
-- event numbered by sequence_number; the stream ends after response.completed/incomplete.
local json = require "mock.json"
local util = require "mock.util"
local media = require "mock.media"
local O, A, null, str = json.O, json.A, json.null, json.str

local M = { name = "openai_responses", call_prefix = "call_mock" }

local TEXT_PARTS = { input_text = true, text = true, output_text = false }

function M.parse(req, body)
  body = body or {}
  local text
  if type(body.input) == "string" then
    text = body.input
  elseif type(body.input) == "table" then
    for i = #body.input, 1, -1 do
      local item = body.input[i]
      if type(item) == "table" and (item.role == "user") then
        text = util.content_text(item.content, TEXT_PARTS)
        if text then break end
      end
    end
  end
  local ctx = {}
  if type(body.input) == "table" then
    ctx.invalid = util.each_part(body.input, "content", function(part) return media.openai_responses(part, ctx) end)
  end
  ctx.invalid = ctx.invalid or media.responses_format(body.text)
  return {
    media = ctx.media, invalid = ctx.invalid,
    model = type(body.model) == "string" and body.model or "gpt-mock",
    stream = body.stream == true,
    background = body.background == true,
    user_text = text,
    input_tokens = util.count_tokens(text),
  }
end

function M.check(req, ctx)
  if ctx.invalid then
    ctx.error_message = ctx.error_message or ctx.invalid
    return M.error(400, ctx)
  end
  return nil
end

local function headers(ctx, ct)
  return { { "content-type", ct }, { "x-request-id", "req_mock" .. ctx.seq } }
end

-- The response object in a given state; output is the list of finished items.
local function response(ctx, reply, status, output, with_usage)
  local incomplete = null
  if status == "incomplete" then incomplete = O("reason", "max_output_tokens") end
  return O("id", "resp_mock" .. ctx.seq, "object", "response", "created_at", ctx.created,
    "status", status, "background", ctx.background or false, "error", null,
    "incomplete_details", incomplete, "model", ctx.model,
    "output", A(output or {}), "parallel_tool_calls", true,
    "usage", with_usage and O("input_tokens", reply.usage.input,   -- cached tokens included
      "input_tokens_details", O("cached_tokens", reply.usage.cached or 0),
      "output_tokens", reply.usage.output,                              -- reasoning included
      "output_tokens_details", O("reasoning_tokens", reply.usage.reasoning or 0),
      "total_tokens", reply.usage.input + reply.usage.output) or null)
end

local function items(ctx, reply)
  local out = {}
  local msg_id = "msg_mock" .. ctx.seq
  if reply.text ~= "" or #reply.tool_calls == 0 then
    out[#out + 1] = O("id", msg_id, "type", "message", "status", "completed", "role", "assistant",
      "content", A(O("type", "output_text", "annotations", A(), "logprobs", A(), "text", reply.text)))
  end
  for i, c in ipairs(reply.tool_calls) do
    out[#out + 1] = O("id", "fc_mock" .. ctx.seq .. "_" .. i, "type", "function_call",
      "status", "completed", "arguments", util.arguments_json(json, c.arguments),
      "call_id", c.id, "name", c.name)
  end
  return out
end

-- Background responses (`background: true`), by id: the reply, its context and its state.
-- Cleared by /__mock/reset.
M.stored = {}
function M.reset() M.stored = {} end

local function final_status_of(reply)
  return reply.finish == "length" and "incomplete" or "completed"
end

--- The response object of a stored response in its current state (a plan for endpoints).
function M.stored_object(s)
  local st = s.status
  local done = st == "completed" or st == "incomplete"
  if st == "completed" then st = final_status_of(s.reply) end
  local body = json.encode(response(s.ctx, s.reply, st, done and items(s.ctx, s.reply) or {}, done))
  return { status = 200, headers = headers(s.ctx, "application/json"), body = body }
end

--- The event stream of a stored response, after sequence number `after`.
function M.stored_stream(s, after)
  local ctx = {}
  for k, v in pairs(s.ctx) do ctx[k] = v end
  ctx.stream, ctx.resumed = true, true
  local r = M.reply(s.reply, ctx)
  local keep = {}
  for _, ev in ipairs(r.events) do
    local n = tonumber(ev:match('"sequence_number":(%d+)'))
    if n and n > after then keep[#keep + 1] = ev end
  end
  r.events = keep
  return r
end

function M.reply(reply, ctx)
  local final_status = final_status_of(reply)
  if ctx.background and not ctx.stream then
    -- Accepted at once; the result is fetched later by id (endpoints.lua).
    local s = { reply = reply, ctx = ctx, status = "queued", background = true }
    M.stored["resp_mock" .. ctx.seq] = s
    return M.stored_object(s)
  end
  if ctx.background and not ctx.resumed then
    -- A streamed background response is kept too, so a client whose connection dropped
    -- can resume its events (GET /responses/{id}?stream=true&starting_after=N).
    M.stored["resp_mock" .. ctx.seq] = { reply = reply, ctx = ctx, status = "in_progress", background = true }
  end
  if not ctx.stream then
    local body = json.encode(response(ctx, reply, final_status, items(ctx, reply), true))
    return { status = 200, headers = headers(ctx, "application/json"), body = body }
  end
  local ev, seq = {}, -1
  local function emit(obj_type, fields_json)
    seq = seq + 1
    ev[#ev + 1] = "event: " .. obj_type .. '\ndata: {"type":"' .. obj_type .. '",' .. fields_json
      .. ',"sequence_number":' .. seq .. "}\n\n"
  end
  local function emit_obj(obj_type, ...)
    local s = json.encode(json.O(...))
    emit(obj_type, s:sub(2, -2))
  end
  emit_obj("response.created", "response", response(ctx, reply, "in_progress", {}, false))
  emit_obj("response.in_progress", "response", response(ctx, reply, "in_progress", {}, false))
  local all = items(ctx, reply)
  local index = 0
  if reply.text ~= "" or #reply.tool_calls == 0 then
    local msg_id = "msg_mock" .. ctx.seq
    emit_obj("response.output_item.added", "output_index", 0, "item",
      O("id", msg_id, "type", "message", "status", "in_progress", "role", "assistant", "content", A()))
    emit_obj("response.content_part.added", "item_id", msg_id, "output_index", 0, "content_index", 0,
      "part", O("type", "output_text", "annotations", A(), "logprobs", A(), "text", ""))
    local pre = '"item_id":"' .. msg_id .. '","output_index":0,"content_index":0,"delta":'
    for _, p in ipairs(reply.deltas) do
      emit("response.output_text.delta", pre .. str(p) .. ',"logprobs":[]')
    end
    emit_obj("response.output_text.done", "item_id", msg_id, "output_index", 0, "content_index", 0,
      "text", reply.text, "logprobs", A())
    emit_obj("response.content_part.done", "item_id", msg_id, "output_index", 0, "content_index", 0,
      "part", O("type", "output_text", "annotations", A(), "logprobs", A(), "text", reply.text))
    emit_obj("response.output_item.done", "output_index", 0, "item", all[1])
    index = 1
  end
  for i, c in ipairs(reply.tool_calls) do
    local fc_id = "fc_mock" .. ctx.seq .. "_" .. i
    local args = util.arguments_json(json, c.arguments)
    emit_obj("response.output_item.added", "output_index", index, "item",
      O("id", fc_id, "type", "function_call", "status", "in_progress", "arguments", "",
        "call_id", c.id, "name", c.name))
    for _, frag in ipairs(util.fragments(args, 8)) do
      emit_obj("response.function_call_arguments.delta", "item_id", fc_id, "output_index", index,
        "delta", frag)
    end
    emit_obj("response.function_call_arguments.done", "item_id", fc_id, "output_index", index,
      "arguments", args)
    emit_obj("response.output_item.done", "output_index", index, "item", all[index + 1])
    index = index + 1
  end
  emit_obj("response." .. final_status, "response", response(ctx, reply, final_status, all, true))
  return { status = 200, headers = headers(ctx, "text/event-stream; charset=utf-8"), stream = true,
           events = ev, terminal = 1 }
end

local ERRORS = {
  [400] = { "invalid_request_error", "Invalid request (mock).", nil },
  [401] = { "invalid_request_error", "Incorrect API key provided (mock).", "invalid_api_key" },
  [429] = { "requests", "Rate limit reached for requests (mock).", "rate_limit_exceeded" },
  [500] = { "server_error", "The server had an error while processing your request (mock).", nil },
  [503] = { "server_error", "The server is overloaded or not ready yet (mock).", nil },
}

function M.error(status, ctx, kind)
  local e = ERRORS[status] or { status >= 500 and "server_error" or "invalid_request_error",
                                "Mock error " .. status .. ".", nil }
  local etype, msg, code = e[1], e[2], e[3]
  if kind == "quota" then
    status, etype, code = 429, "insufficient_quota", "insufficient_quota"
    msg = "You exceeded your current quota, please check your plan and billing details (mock)."
  end
  etype, msg = ctx.error_type or etype, ctx.error_message or msg   -- a pushed error
  local body = "{\n  \"error\": {\n    \"message\": " .. str(msg) .. ",\n    \"type\": " .. str(etype)
    .. ",\n    \"param\": null,\n    \"code\": " .. (code and str(code) or "null") .. "\n  }\n}"
  return { status = status, headers = headers(ctx, "application/json"), body = body }
end

function M.ping() return ": ping\n\n" end
function M.malformed() return "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\n\n" end
function M.stream_error(ctx)
  if ctx and (ctx.error_type or ctx.error_message) then
    return "event: error\ndata: " .. json.encode(O("type", "error", "code", ctx.error_type or "server_error",
      "message", ctx.error_message or "The server is overloaded (mock).", "param", null, "sequence_number", 0)) .. "\n\n"
  end
  return 'event: error\ndata: {"type":"error","code":"server_error","message":"The server is overloaded (mock).","param":null,"sequence_number":0}\n\n'
end

-- An event with no content, and a text delta sent after the terminal event.
function M.empty()
  return 'event: response.in_progress\ndata: {"type":"response.in_progress","sequence_number":0}\n\n'
end
function M.extra()
  return 'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","output_index":0,'
    .. '"content_index":0,"delta":" AFTER-DONE"}\n\n'
end

return M
