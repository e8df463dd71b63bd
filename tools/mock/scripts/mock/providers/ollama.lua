-- Ollama: POST /api/chat. Streams by default (NDJSON, one object per line, the last with
-- "done": true); `"stream": false` gives one JSON object. Tool calls come whole.
local json = require "mock.json"
local util = require "mock.util"
local media = require "mock.media"
local O, A, str = json.O, json.A, json.str

local M = { name = "ollama" }

local TEXT_PARTS = { text = true }

function M.parse(req, body)
  body = body or {}
  local text = util.last_user(body.messages, TEXT_PARTS)
  local ctx = {}
  for _, m in ipairs(type(body.messages) == "table" and body.messages or {}) do
    if type(m) == "table" and m.images ~= nil and not ctx.invalid then ctx.invalid = media.ollama(m.images, ctx) end
  end
  return {
    media = ctx.media, invalid = ctx.invalid,
    model = type(body.model) == "string" and body.model or "llama-mock",
    stream = body.stream ~= false,
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

local function created_at(ctx)
  return os.date("!%Y-%m-%dT%H:%M:%S", ctx.created) .. ".000000Z"
end

local function calls(reply)
  if #reply.tool_calls == 0 then return nil end
  local out = A()
  for _, c in ipairs(reply.tool_calls) do
    out[#out + 1] = O("function", O("name", c.name, "arguments", util.arguments_table(json, c.arguments)))
  end
  return out
end

local function final_fields(reply)
  return ',"done":true,"done_reason":' .. str(reply.finish == "length" and "length" or "stop")
    .. ',"total_duration":1000000,"load_duration":1000,"prompt_eval_count":' .. reply.usage.input
    .. ',"prompt_eval_duration":1000,"eval_count":' .. reply.usage.output .. ',"eval_duration":1000}'
end

function M.reply(reply, ctx)
  local head = '{"model":' .. str(ctx.model) .. ',"created_at":"' .. created_at(ctx) .. '"'
  if not ctx.stream then
    local msg = json.encode(O("role", "assistant", "content", reply.text, "thinking", reply.reasoning,
      "tool_calls", calls(reply)))
    return { status = 200, headers = { { "content-type", "application/json; charset=utf-8" } },
             body = head .. ',"message":' .. msg .. final_fields(reply) }
  end
  local ev = {}
  local pre = head .. ',"message":{"role":"assistant","content":'
  if reply.reasoning then   -- thinking deltas come before the answer, with an empty content
    for _, p in ipairs(util.pieces(reply.reasoning)) do
      ev[#ev + 1] = pre .. '"","thinking":' .. str(p) .. '},"done":false}\n'
    end
  end
  for _, p in ipairs(reply.deltas) do ev[#ev + 1] = pre .. str(p) .. '},"done":false}\n' end
  local tc = calls(reply)
  if tc then
    ev[#ev + 1] = head .. ',"message":' .. json.encode(O("role", "assistant", "content", "", "tool_calls", tc))
      .. ',"done":false}\n'
  end
  ev[#ev + 1] = pre .. '""}' .. final_fields(reply) .. "\n"
  return { status = 200, headers = { { "content-type", "application/x-ndjson" } }, stream = true,
           events = ev, terminal = 1 }
end

function M.error(status, ctx, kind)
  local msg = kind == "quota" and "quota exceeded (mock)" or (ctx and ctx.error_message) or ("mock error " .. status)
  if kind == "quota" then status = 429 end
  return { status = status, headers = { { "content-type", "application/json; charset=utf-8" } },
           body = json.encode(O("error", msg)) }
end

function M.ping() return "" end -- NDJSON has no keep-alive form; pings=N sends nothing, then stalls
function M.malformed() return '{"model":"broken","message":{"role":"assistant","content":"oops"\n' end
function M.stream_error(ctx)
  return json.encode(O("error", ctx and ctx.error_message or "server overloaded (mock)")) .. "\n"
end

-- A line with no content, and a text line sent after the `done: true` line.
function M.empty(ctx)
  return '{"model":' .. str(ctx.model) .. ',"message":{"role":"assistant","content":""},"done":false}\n'
end
function M.extra(ctx)
  return '{"model":' .. str(ctx.model) .. ',"message":{"role":"assistant","content":" AFTER-DONE"},"done":false}\n'
end

return M
