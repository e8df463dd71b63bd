-- OpenAI Chat Completions: POST /v1/chat/completions (and /chat/completions).
-- Stream framing: `data: <chunk>\n\n` ... `data: [DONE]\n\n`, no `event:` lines.
local json = require "mock.json"
local util = require "mock.util"
local media = require "mock.media"
local O, A, null, str = json.O, json.A, json.null, json.str

local M = { name = "openai_chat", call_prefix = "call_mock" }

local TEXT_PARTS = { text = true, input_text = true }

function M.parse(req, body)
  body = body or {}
  local so = body.stream_options
  local text = util.last_user(body.messages, TEXT_PARTS)
  local ctx = {}
  ctx.invalid = util.each_part(body.messages, "content", function(part) return media.openai_chat(part, ctx) end)
    or media.openai_format(body.response_format)
  return {
    media = ctx.media, invalid = ctx.invalid,
    model = type(body.model) == "string" and body.model or "gpt-mock",
    stream = body.stream == true,
    include_usage = type(so) == "table" and so.include_usage == true,
    user_text = text,
    input_tokens = util.count_tokens(text),
  }
end

-- A malformed media part is a 400 invalid_request_error, as the API answers.
function M.check(req, ctx)
  if ctx.invalid then
    ctx.error_message = ctx.error_message or ctx.invalid
    return M.error(400, ctx)
  end
  return nil
end

local FINISH = { stop = "stop", length = "length", tool_calls = "tool_calls", content_filter = "content_filter" }

local function headers(ctx, ct)
  return { { "content-type", ct }, { "x-request-id", "req_mock" .. ctx.seq }, { "openai-processing-ms", "1" } }
end

-- prompt_tokens counts every input token, cached ones included; completion_tokens counts
-- reasoning tokens too. The details objects are sent when a cache or reasoning count was set.
local function usage(reply)
  local u = reply.usage
  return O("prompt_tokens", u.input, "completion_tokens", u.output,
           "total_tokens", u.input + u.output,
           "prompt_tokens_details", u.cached and O("cached_tokens", u.cached, "audio_tokens", 0) or nil,
           "completion_tokens_details", u.reasoning and O("reasoning_tokens", u.reasoning, "audio_tokens", 0,
             "accepted_prediction_tokens", 0, "rejected_prediction_tokens", 0) or nil)
end

function M.reply(reply, ctx)
  local id = "chatcmpl-mock" .. ctx.seq
  local created = ctx.created
  local finish = FINISH[reply.finish] or "stop"
  if not ctx.stream then
    local calls
    if #reply.tool_calls > 0 then
      calls = A()
      for _, c in ipairs(reply.tool_calls) do
        calls[#calls + 1] = O("id", c.id, "type", "function",
          "function", O("name", c.name, "arguments", util.arguments_json(json, c.arguments)))
      end
    end
    local content = reply.text
    if content == "" and calls then content = null end
    local body = json.encode(O("id", id, "object", "chat.completion", "created", created,
      "model", ctx.model,
      "choices", A(O("index", 0,
        "message", O("role", "assistant", "content", content, "tool_calls", calls, "refusal", null),
        "logprobs", null, "finish_reason", finish)),
      "usage", usage(reply))) .. "\n"
    return { status = 200, headers = headers(ctx, "application/json"), body = body }
  end

  local pre = 'data: {"id":"' .. id .. '","object":"chat.completion.chunk","created":' .. created
    .. ',"model":' .. str(ctx.model) .. ',"choices":[{"index":0,"delta":'
  local mid = ',"logprobs":null,"finish_reason":'
  local post = "}]}\n\n"
  local ev = {}
  ev[1] = pre .. '{"role":"assistant","content":"","refusal":null}' .. mid .. "null" .. post
  for _, p in ipairs(reply.deltas) do
    ev[#ev + 1] = pre .. '{"content":' .. str(p) .. "}" .. mid .. "null" .. post
  end
  for i, c in ipairs(reply.tool_calls) do
    local idx = i - 1
    ev[#ev + 1] = pre .. json.encode(O("tool_calls", A(O("index", idx, "id", c.id, "type", "function",
      "function", O("name", c.name, "arguments", ""))))) .. mid .. "null" .. post
    for _, frag in ipairs(util.fragments(util.arguments_json(json, c.arguments), 8)) do
      ev[#ev + 1] = pre .. json.encode(O("tool_calls", A(O("index", idx,
        "function", O("arguments", frag))))) .. mid .. "null" .. post
    end
  end
  local body_end = #ev
  ev[#ev + 1] = pre .. "{}" .. mid .. str(finish) .. post
  if ctx.include_usage then
    ev[#ev + 1] = 'data: {"id":"' .. id .. '","object":"chat.completion.chunk","created":' .. created
      .. ',"model":' .. str(ctx.model) .. ',"choices":[],"usage":' .. json.encode(usage(reply)) .. "}\n\n"
  end
  ev[#ev + 1] = "data: [DONE]\n\n"
  return { status = 200, headers = headers(ctx, "text/event-stream; charset=utf-8"), stream = true,
           events = ev, terminal = #ev - body_end }
end

local ERRORS = {
  [400] = { "invalid_request_error", "Invalid request (mock).", nil },
  [401] = { "invalid_request_error", "Incorrect API key provided (mock).", "invalid_api_key" },
  [403] = { "invalid_request_error", "You are not allowed to access this resource (mock).", nil },
  [404] = { "invalid_request_error", "The model does not exist or you do not have access to it (mock).", "model_not_found" },
  [429] = { "requests", "Rate limit reached for requests (mock). Please try again later.", "rate_limit_exceeded" },
  [500] = { "server_error", "The server had an error while processing your request (mock).", nil },
  [503] = { "server_error", "The server is overloaded or not ready yet (mock).", nil },
}

-- kind "quota": 429 insufficient_quota, which waiting does not fix.
function M.error(status, ctx, kind)
  local e = ERRORS[status] or { status >= 500 and "server_error" or "invalid_request_error",
                                "Mock error " .. status .. ".", nil }
  local etype, msg, code = e[1], e[2], e[3]
  if kind == "quota" then
    status, etype, code = 429, "insufficient_quota", "insufficient_quota"
    msg = "You exceeded your current quota, please check your plan and billing details (mock)."
  end
  msg = ctx and ctx.error_message or msg   -- x-mock-error-message: a server that echoes input
  etype = ctx and ctx.error_type or etype  -- a pushed error's type
  -- Error bodies are indented with 4 spaces and end with a newline, as the real ones are.
  local body = "{\n    \"error\": {\n        \"message\": " .. str(msg) .. ",\n        \"type\": "
    .. str(etype) .. ",\n        \"param\": null,\n        \"code\": "
    .. (code and str(code) or "null") .. "\n    }\n}\n"
  return { status = status, headers = headers(ctx, "application/json"), body = body }
end

function M.ping() return ": ping\n\n" end
function M.malformed() return 'data: {"id":"chatcmpl-broken","choices":[{"delta":{"content":"oops"\n\n' end
function M.stream_error(ctx)
  return "data: " .. json.encode(O("error", O("message", ctx.error_message or "The server is overloaded (mock).",
    "type", ctx.error_type or "server_error", "param", null, "code", null))) .. "\n\n"
end

-- An event with no content (an empty delta), and a text delta sent after the terminal event.
function M.empty(ctx)
  return 'data: {"id":"chatcmpl-mock' .. ctx.seq .. '","object":"chat.completion.chunk","created":0,"model":'
    .. str(ctx.model) .. ',"choices":[{"index":0,"delta":{},"finish_reason":null}]}\n\n'
end
function M.extra(ctx)
  return 'data: {"id":"chatcmpl-mock' .. ctx.seq .. '","object":"chat.completion.chunk","created":0,"model":'
    .. str(ctx.model) .. ',"choices":[{"index":0,"delta":{"content":" AFTER-DONE"},"finish_reason":null}]}\n\n'
end

return M
