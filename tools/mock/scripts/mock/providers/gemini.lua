-- Google Gemini: POST /v1beta/models/{model}:generateContent and
-- :streamGenerateContent?alt=sse (`data: <json>\r\n\r\n`, CRLF separators, no [DONE]; the
-- body simply ends). Without alt=sse the stream is one JSON array, sent piecewise.
local json = require "mock.json"
local util = require "mock.util"
local media = require "mock.media"
local O, A, str = json.O, json.A, json.str

local M = { name = "gemini" }

function M.parse(req, body, route)
  body = body or {}
  local text
  if type(body.contents) == "table" then
    for i = #body.contents, 1, -1 do
      local c = body.contents[i]
      if type(c) == "table" and (c.role == nil or c.role == "user") and type(c.parts) == "table" then
        local out = {}
        for _, p in ipairs(c.parts) do
          if type(p) == "table" and type(p.text) == "string" then out[#out + 1] = p.text end
        end
        if #out > 0 then text = table.concat(out); break end
      end
    end
  end
  local ctx = {}
  ctx.invalid = util.each_part(body.contents, "parts", function(part) return media.gemini(part, ctx) end)
    or media.gemini_config(body.generationConfig)
  return {
    media = ctx.media, invalid = ctx.invalid,
    model = route.model or "gemini-mock",
    stream = route.stream,
    sse = route.stream and (req.query or ""):find("alt=sse", 1, true) ~= nil,
    user_text = text,
    input_tokens = util.count_tokens(text),
  }
end

local function headers(ctx, ct)
  return { { "content-type", ct }, { "vary", "Origin" }, { "x-mock-request", tostring(ctx.seq) } }
end

local STATUS = {
  [400] = "INVALID_ARGUMENT", [401] = "UNAUTHENTICATED", [403] = "PERMISSION_DENIED",
  [404] = "NOT_FOUND", [429] = "RESOURCE_EXHAUSTED", [500] = "INTERNAL",
  [503] = "UNAVAILABLE", [504] = "DEADLINE_EXCEEDED",
}

-- google.rpc.Status, pretty-printed with 2 spaces like the real error bodies.
local function rpc_error(code, message, details)
  local lines = { "{", '  "error": {', '    "code": ' .. code .. ",",
                  '    "message": ' .. str(message) .. ",",
                  '    "status": ' .. str(STATUS[code] or (code >= 500 and "INTERNAL" or "FAILED_PRECONDITION")) .. (details and "," or "") }
  if details then lines[#lines + 1] = '    "details": ' .. json.encode(details) end
  lines[#lines + 1] = "  }"
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n") .. "\n"
end

-- The key belongs in x-goog-api-key; a key= query parameter ends up in logs and proxies.
function M.check(req, ctx)
  local q = "&" .. (req.query or "")
  if q:find("&key=", 1, true) then
    return { status = 400, headers = headers(ctx, "application/json; charset=UTF-8"),
             body = rpc_error(400, "API key must be sent in the x-goog-api-key header, not in the key= query parameter (mock).") }
  end
  if ctx.invalid then
    return { status = 400, headers = headers(ctx, "application/json; charset=UTF-8"),
             body = rpc_error(400, ctx.invalid) }
  end
  return nil
end

local FINISH = { stop = "STOP", tool_calls = "STOP", length = "MAX_TOKENS", content_filter = "SAFETY" }

-- promptTokenCount includes the cached content's tokens (cachedContentTokenCount); thoughts
-- are counted apart from the candidates (thoughtsTokenCount), and the total covers both.
local function usage(reply)
  local u = reply.usage
  return O("promptTokenCount", u.input, "candidatesTokenCount", u.output - (u.reasoning or 0),
           "totalTokenCount", u.input + u.output,
           "cachedContentTokenCount", u.cached, "thoughtsTokenCount", u.reasoning)
end

local function call_parts(reply)
  local parts = {}
  for _, c in ipairs(reply.tool_calls) do
    parts[#parts + 1] = O("functionCall", O("id", c.id, "name", c.name,
      "args", util.arguments_table(json, c.arguments)))
  end
  return parts
end

function M.reply(reply, ctx)
  local finish = FINISH[reply.finish] or "STOP"
  local rid = "mock" .. ctx.seq
  if not ctx.stream then
    local parts = A()
    if reply.reasoning then parts[1] = O("text", reply.reasoning, "thought", true) end
    if reply.text ~= "" or #reply.tool_calls == 0 then parts[#parts + 1] = O("text", reply.text) end
    for _, p in ipairs(call_parts(reply)) do parts[#parts + 1] = p end
    local body = json.encode(O("candidates", A(O("content", O("parts", parts, "role", "model"),
      "finishReason", finish, "index", 0)), "usageMetadata", usage(reply),
      "modelVersion", ctx.model, "responseId", rid)) .. "\n"
    return { status = 200, headers = headers(ctx, "application/json; charset=UTF-8"), body = body }
  end
  local chunks = {}
  local pre = '{"candidates":[{"content":{"parts":[{"text":'
  local post = '}],"role":"model"},"index":0}],"modelVersion":' .. str(ctx.model)
    .. ',"responseId":"' .. rid .. '"}'
  if reply.reasoning then   -- thought parts (`"thought": true`) come before the answer
    for _, p in ipairs(util.pieces(reply.reasoning)) do
      chunks[#chunks + 1] = pre .. str(p) .. ',"thought":true' .. post
    end
  end
  for _, p in ipairs(reply.deltas) do chunks[#chunks + 1] = pre .. str(p) .. post end
  local calls = call_parts(reply)
  if #calls > 0 then
    chunks[#chunks + 1] = json.encode(O("candidates", A(O("content", O("parts", A(calls), "role", "model"),
      "index", 0)), "modelVersion", ctx.model, "responseId", rid))
  end
  -- The last chunk carries the finish reason and usage on an empty text part, a shape the
  -- real API also sends; cutting it off leaves a stream with no finish signal.
  chunks[#chunks + 1] = json.encode(O("candidates", A(O("content", O("parts", A(O("text", "")), "role", "model"),
    "finishReason", finish, "index", 0)), "usageMetadata", usage(reply),
    "modelVersion", ctx.model, "responseId", rid))
  local ev = {}
  if ctx.sse then
    for i, c in ipairs(chunks) do ev[i] = "data: " .. c .. "\r\n\r\n" end
  else
    for i, c in ipairs(chunks) do ev[i] = (i == 1 and "[" or ",\r\n") .. c end
    ev[#ev] = ev[#ev] .. "]"
  end
  return { status = 200, headers = headers(ctx, ctx.sse and "text/event-stream" or "application/json; charset=UTF-8"),
           stream = true, events = ev, terminal = 1 }
end

-- kind "quota": a per-day quota, which no retry fixes before tomorrow.
function M.error(status, ctx, kind, opts)
  local details, msg
  if kind == "quota" then
    status = 429
    msg = "You exceeded your current quota, please check your plan and billing details (mock)."
    details = A(O("@type", "type.googleapis.com/google.rpc.QuotaFailure",
      "violations", A(O("quotaMetric", "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId", "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        "quotaDimensions", O("location", "global", "model", ctx.model), "quotaValue", "50"))),
      O("@type", "type.googleapis.com/google.rpc.Help",
        "links", A(O("description", "Learn more about Gemini API quotas", "url", "https://ai.google.dev/gemini-api/docs/rate-limits"))))
  elseif status == 429 then
    msg = "Resource has been exhausted (e.g. check quota) (mock)."
    details = A(O("@type", "type.googleapis.com/google.rpc.QuotaFailure",
      "violations", A(O("quotaMetric", "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId", "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue", "15"))),
      O("@type", "type.googleapis.com/google.rpc.RetryInfo", "retryDelay", (opts and opts.retry_delay) or "1s"))
  else
    msg = status == 503 and "The model is overloaded. Please try again later." or ("Mock error " .. status .. ".")
  end
  msg = ctx.error_message or msg   -- a pushed error
  return { status = status, headers = headers(ctx, "application/json; charset=UTF-8"),
           body = rpc_error(status, msg, details) }
end

function M.ping(ctx) return ctx.sse == false and "" or ": ping\r\n\r\n" end
function M.malformed() return 'data: {"candidates": [{"content": {"parts": [{"text": "oops\r\n\r\n' end
function M.stream_error(ctx)
  return "data: " .. json.encode(O("error", O("code", 503, "message", ctx and ctx.error_message or "The model is overloaded. Please try again later.",
    "status", "UNAVAILABLE"))) .. "\r\n\r\n"
end

-- An event with no content (an empty text part), and a text chunk sent after the last one.
function M.empty()
  return 'data: {"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},"index":0}]}\r\n\r\n'
end
function M.extra()
  return 'data: {"candidates":[{"content":{"parts":[{"text":" AFTER-DONE"}],"role":"model"},"index":0}]}\r\n\r\n'
end

return M
