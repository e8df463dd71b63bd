-- Anthropic Messages: POST /v1/messages.
-- Stream framing: `event: <type>\ndata: <json>\n\n`; message_start, content blocks with
-- deltas, a ping, message_delta (stop_reason, cumulative output_tokens), message_stop.
local json = require "mock.json"
local util = require "mock.util"
local media = require "mock.media"
local O, A, null, str = json.O, json.A, json.null, json.str

local M = { name = "anthropic", call_prefix = "toolu_mock" }

local TEXT_PARTS = { text = true }

function M.parse(req, body)
  body = body or {}
  local text = util.last_user(body.messages, TEXT_PARTS)
  local ctx = {}
  local check = function(block) return media.anthropic(block, ctx) end
  -- cache_control counts in order: tools, system, messages (the API's prefix order)
  ctx.invalid = (type(body.tools) == "table" and util.each_item(body.tools, check))
    or (type(body.system) == "table" and util.each_item(body.system, check))
    or util.each_part(body.messages, "content", function(block)
      local e = check(block)
      if e or block.type ~= "tool_result" or type(block.content) ~= "table" then return e end
      return util.each_item(block.content, check)
    end)
  ctx.invalid = ctx.invalid or media.anthropic_tool_choice(body)
  return {
    media = ctx.media, invalid = ctx.invalid or nil, breakpoints = ctx.breakpoints,
    -- tool_choice { type = "tool", name }: the reply must call that tool (structured output)
    forced_tool = type(body.tool_choice) == "table" and body.tool_choice.type == "tool"
      and type(body.tool_choice.name) == "string" and body.tool_choice.name or nil,
    model = type(body.model) == "string" and body.model or "claude-mock",
    stream = body.stream == true,
    user_text = text,
    input_tokens = util.count_tokens(text),
  }
end

local function headers(ctx, ct)
  return { { "content-type", ct }, { "request-id", "req_mock" .. ctx.seq },
           { "anthropic-organization-id", "mock-org" } }
end

local function error_body(ctx, etype, msg)
  msg = ctx.error_message or msg   -- x-mock-error-message: a server that echoes input
  etype = ctx.error_type or etype  -- a pushed error's type
  return json.encode(O("type", "error", "error", O("type", etype, "message", msg),
                       "request_id", "req_mock" .. ctx.seq))
end

-- The API refuses requests without a key or a version header before doing anything else.
function M.check(req, ctx)
  if not req.headers["x-api-key"] then
    return { status = 401, headers = headers(ctx, "application/json"),
             body = error_body(ctx, "authentication_error", "x-api-key header is required") }
  end
  if not req.headers["anthropic-version"] then
    return { status = 400, headers = headers(ctx, "application/json"),
             body = error_body(ctx, "invalid_request_error", "anthropic-version: header is required") }
  end
  if ctx.invalid then
    return { status = 400, headers = headers(ctx, "application/json"),
             body = error_body(ctx, "invalid_request_error", ctx.invalid) }
  end
  return nil
end

local STOP = { stop = "end_turn", length = "max_tokens", tool_calls = "tool_use", content_filter = "refusal" }

function M.reply(reply, ctx)
  local stop = STOP[reply.finish] or "end_turn"
  local msg_id = "msg_mock" .. ctx.seq
  if not ctx.stream then
    local content = A()
    if reply.reasoning then
      content[#content + 1] = O("type", "thinking", "thinking", reply.reasoning, "signature", "sig_mock" .. ctx.seq)
    end
    if reply.text ~= "" or #reply.tool_calls == 0 then
      content[#content + 1] = O("type", "text", "text", reply.text)
    end
    for _, c in ipairs(reply.tool_calls) do
      content[#content + 1] = O("type", "tool_use", "id", c.id, "name", c.name,
        "input", util.arguments_table(json, c.arguments))
    end
    local body = json.encode(O("id", msg_id, "type", "message", "role", "assistant",
      "model", ctx.model, "content", content, "stop_reason", stop, "stop_sequence", null,
      "usage", O("input_tokens", reply.usage.input,
                 "cache_creation_input_tokens", reply.usage.cache_write or 0,
                 "cache_read_input_tokens", reply.usage.cached or 0, "output_tokens", reply.usage.output)))
    return { status = 200, headers = headers(ctx, "application/json"), body = body }
  end
  local ev = {}
  local function emit(name, obj)
    ev[#ev + 1] = "event: " .. name .. "\ndata: " .. json.encode(obj) .. "\n\n"
  end
  emit("message_start", O("type", "message_start", "message", O("id", msg_id, "type", "message",
    "role", "assistant", "model", ctx.model, "content", A(), "stop_reason", null,
    "stop_sequence", null, "usage", O("input_tokens", reply.usage.input,
      "cache_creation_input_tokens", reply.usage.cache_write or 0,
      "cache_read_input_tokens", reply.usage.cached or 0, "output_tokens", 1))))
  local index = 0
  if reply.reasoning then   -- a thinking block, then its signature, before the text
    emit("content_block_start", O("type", "content_block_start", "index", 0,
      "content_block", O("type", "thinking", "thinking", "", "signature", "")))
    for _, p in ipairs(util.pieces(reply.reasoning)) do
      emit("content_block_delta", O("type", "content_block_delta", "index", 0,
        "delta", O("type", "thinking_delta", "thinking", p)))
    end
    emit("content_block_delta", O("type", "content_block_delta", "index", 0,
      "delta", O("type", "signature_delta", "signature", "sig_mock" .. ctx.seq)))
    emit("content_block_stop", O("type", "content_block_stop", "index", 0))
    index = 1
  end
  if reply.text ~= "" or #reply.tool_calls == 0 then
    emit("content_block_start", O("type", "content_block_start", "index", index,
      "content_block", O("type", "text", "text", "")))
    ev[#ev + 1] = 'event: ping\ndata: {"type": "ping"}\n\n'
    local pre = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":' .. index
      .. ',"delta":{"type":"text_delta","text":'
    for _, p in ipairs(reply.deltas) do
      ev[#ev + 1] = pre .. str(p) .. "}}\n\n"
    end
    emit("content_block_stop", O("type", "content_block_stop", "index", index))
    index = index + 1
  else
    ev[#ev + 1] = 'event: ping\ndata: {"type": "ping"}\n\n'
  end
  for _, c in ipairs(reply.tool_calls) do
    emit("content_block_start", O("type", "content_block_start", "index", index,
      "content_block", O("type", "tool_use", "id", c.id, "name", c.name, "input", O())))
    for _, frag in ipairs(util.fragments(util.arguments_json(json, c.arguments), 8)) do
      emit("content_block_delta", O("type", "content_block_delta", "index", index,
        "delta", O("type", "input_json_delta", "partial_json", frag)))
    end
    emit("content_block_stop", O("type", "content_block_stop", "index", index))
    index = index + 1
  end
  emit("message_delta", O("type", "message_delta", "delta", O("stop_reason", stop, "stop_sequence", null),
    "usage", O("output_tokens", reply.usage.output)))
  emit("message_stop", O("type", "message_stop"))
  return { status = 200, headers = headers(ctx, "text/event-stream; charset=utf-8"), stream = true,
           events = ev, terminal = 2 }
end

local ERRORS = {
  [400] = { "invalid_request_error", "Invalid request (mock)." },
  [401] = { "authentication_error", "invalid x-api-key" },
  [402] = { "billing_error", "Your credit balance is too low to access the Anthropic API (mock)." },
  [403] = { "permission_error", "Your API key does not have permission to use the specified resource." },
  [404] = { "not_found_error", "The requested resource could not be found." },
  [413] = { "request_too_large", "Request exceeds the maximum allowed number of bytes." },
  [429] = { "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit (mock)." },
  [500] = { "api_error", "Internal server error" },
  [529] = { "overloaded_error", "Overloaded" },
}

-- kind "quota": the documented billing error (402 billing_error), not a rate limit.
-- kind "spend-limit": the 429 of an organization past its tier's monthly spend limit
-- (opts.limit = "contract": past its contract's), told apart by error.details.error_code.
local SPEND_LIMIT = {
  enforced = { "enforced_spend_limit_reached",
               "Your organization has reached its monthly usage limit for its API tier (mock)." },
  contract = { "contract_spend_limit_reached", "Your organization has reached its contract spend limit (mock)." },
}

function M.error(status, ctx, kind, opts)
  if kind == "spend-limit" then
    local sl = SPEND_LIMIT[opts and opts.limit] or SPEND_LIMIT.enforced
    return { status = 429, headers = headers(ctx, "application/json"),
             body = json.encode(O("type", "error", "error", O("type", "rate_limit_error",
               "message", ctx.error_message or sl[2], "details", O("error_code", sl[1])),
               "request_id", "req_mock" .. ctx.seq)) }
  end
  if kind == "quota" then status = 402 end
  local e = ERRORS[status] or { status >= 500 and "api_error" or "invalid_request_error",
                                "Mock error " .. status .. "." }
  return { status = status, headers = headers(ctx, "application/json"),
           body = error_body(ctx, e[1], e[2]) }
end

function M.ping() return 'event: ping\ndata: {"type": "ping"}\n\n' end
function M.malformed() return 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"oops\n\n' end
function M.stream_error(ctx)
  if ctx.error_type or ctx.error_message then
    return "event: error\ndata: " .. json.encode(O("type", "error", "error", O("details", null,
      "type", ctx.error_type or "overloaded_error", "message", ctx.error_message or "Overloaded"),
      "request_id", "req_mock" .. ctx.seq)) .. "\n\n"
  end
  return 'event: error\ndata: {"type":"error","error":{"details":null,"type":"overloaded_error","message":"Overloaded"},"request_id":"req_mock'
    .. ctx.seq .. '"}\n\n'
end

-- An event with no content (an empty text delta), and a text delta sent after the terminal event.
function M.empty()
  return 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}\n\n'
end
function M.extra()
  return 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" AFTER-DONE"}}\n\n'
end

return M
