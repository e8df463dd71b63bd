-- Batch jobs, as the OpenAI Files and Batch APIs and the Anthropic Message Batches API
-- describe them:
--
-- OpenAI: `POST /v1/files` (multipart/form-data: `purpose`, `file`) stores a file;
-- `GET /v1/files/{id}` and `GET /v1/files/{id}/content` read it back. `POST /v1/batches`
-- (`input_file_id`, `endpoint`, `completion_window = "24h"`) creates a batch over a JSONL
-- file of `{custom_id, method = "POST", url = endpoint, body}` lines; `GET /v1/batches/{id}`
-- polls it; `POST /v1/batches/{id}/cancel` cancels it. Results are two JSONL files: the
-- output file (`{id, custom_id, response = {status_code, request_id, body}, error = null}`
-- for the requests answered 2xx) and the error file (the others, and `error = {code,
-- message}` with `response = null` for requests never run: `batch_expired`,
-- `batch_cancelled`).
--
-- Anthropic: `POST /v1/messages/batches` with `{requests = [{custom_id, params}]}`;
-- `GET /v1/messages/batches/{id}`; `POST .../cancel`; `GET .../results` (JSONL lines
-- `{custom_id, result = {type = succeeded|errored|canceled|expired, message|error}}`,
-- in no particular order, here reversed so that clients must match by custom_id).
--
-- Time does not pass here: a batch moves one state per poll, so a test never waits on a
-- wall clock. OpenAI: validating -> in_progress (for `polls` polls) -> finalizing ->
-- completed (or failed / expired); Anthropic: in_progress (for `polls` polls) -> ended.
-- A cancel moves to cancelling / canceling, and the next poll ends the batch. What
-- happens to the next batch created is set with `POST /__mock/batch` (a plan, queued):
--   outcome = "completed" (default) | "failed" | "expired"
--   errors  = { [custom_id] = { status = 400, type = ..., message = ... } }  per-item errors
--   run     = how many requests (in input order) ran before an expiry or a cancel
--             (default: half of them)
--   polls   = polls spent in_progress (default 1)
-- Each request that runs is answered as the chat route would answer it, under the x-mock-*
-- headers of the request that created the batch (echo mode by default: "echo: <last user
-- text>", so each result says which request it belongs to; x-mock-script, x-mock-text).
local json = require "mock.json"
local O, A, null = json.O, json.A, json.null

local M = {}

local files, batches, plans, seq

function M.reset()
  files, batches, plans, seq = {}, {}, { first = 1, last = 0 }, 0
end
M.reset()

local function next_id(prefix)
  seq = seq + 1
  return prefix .. string.format("%06d", seq)
end

--- Queues a plan for the next batch created (POST /__mock/batch).
function M.push_plan(plan)
  plans.last = plans.last + 1
  plans[plans.last] = plan
  return plans.last - plans.first + 1
end

local function pop_plan()
  if plans.first > plans.last then return {} end
  local p = plans[plans.first]
  plans[plans.first] = nil
  plans.first = plans.first + 1
  return p
end

local function json_plan(status, obj, extra_headers)
  local headers = { { "content-type", "application/json" } }
  for _, h in ipairs(extra_headers or {}) do headers[#headers + 1] = h end
  return { status = status, headers = headers, body = json.encode(obj) }
end

local function rfc3339(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", t) end

---------------------------------------------------------------- multipart/form-data

-- The parts of a multipart/form-data body (RFC 7578): a list of { name, filename,
-- content_type, data }, or nil and why.
function M.multipart(content_type, body)
  local boundary = content_type and (content_type:match('[;%s]boundary="([^"]+)"')
    or content_type:match("[;%s]boundary=([^;%s]+)"))
  if not content_type or not content_type:lower():match("^%s*multipart/form%-data") then
    return nil, "expected Content-Type multipart/form-data"
  end
  if not boundary then return nil, "multipart/form-data without a boundary" end
  local delim = "--" .. boundary
  local pos = 1
  if body:sub(1, #delim) ~= delim then return nil, "body does not start with the boundary" end
  local parts = {}
  pos = #delim + 1
  while true do
    local after = body:sub(pos, pos + 1)
    if after == "--" then break end                         -- the closing delimiter
    if after ~= "\r\n" then return nil, "boundary not followed by CRLF" end
    pos = pos + 2
    local head_end = body:find("\r\n\r\n", pos, true)
    if not head_end then return nil, "part without a blank line after its headers" end
    local part = { headers = {} }
    for line in (body:sub(pos, head_end - 1) .. "\r\n"):gmatch("(.-)\r\n") do
      local k, v = line:match("^([^:]+):%s*(.-)%s*$")
      if not k then return nil, "bad part header line: " .. line end
      part.headers[k:lower()] = v
    end
    local cd = part.headers["content-disposition"]
    if not cd or not cd:lower():match("^form%-data") then
      return nil, "part without Content-Disposition: form-data"
    end
    part.name = cd:match(';%s*name="([^"]*)"')
    part.filename = cd:match(';%s*filename="([^"]*)"')
    part.content_type = part.headers["content-type"]
    if not part.name then return nil, "part without a name" end
    local data_start = head_end + 4
    local data_end = body:find("\r\n" .. delim, data_start, true)
    if not data_end then return nil, "part '" .. part.name .. "' is not closed by the boundary" end
    part.data = body:sub(data_start, data_end - 1)
    parts[#parts + 1] = part
    pos = data_end + 2 + #delim
  end
  return parts
end

---------------------------------------------------------------- running requests

-- How a chat route composes its reply (main.lua's build_reply): echo mode and the
-- x-mock-text / x-mock-script controls, read from the headers of the request that created
-- the batch. Set by M.handle.
local render

-- The answer to request n of batch b: status, the body as one line of JSON, request id. A
-- request runs as its chat route would run it, under the headers of the request that
-- created the batch, unless the plan gives it an error.
local function run_one(b, provider, body, custom_id, n)
  local req = { headers = b.headers or {}, seq = n, method = "POST", path = b.endpoint or "" }
  local ctx = { seq = n, created = os.time() }
  for k, v in pairs(provider.parse(req, type(body) == "table" and body or nil, {})) do ctx[k] = v end
  ctx.stream = false
  local e = b.plan.errors and b.plan.errors[custom_id]
  local r
  if type(e) == "table" then
    ctx.error_type = type(e.type) == "string" and e.type or nil
    ctx.error_message = type(e.message) == "string" and e.message or nil
    r = provider.error(math.tointeger(e.status) or 400, ctx)
  else
    local reply, err = render(req, ctx, provider)
    if reply then
      r = provider.reply(reply, ctx)
    else
      ctx.error_message = "llm-mock: " .. tostring(err)
      r = provider.error(500, ctx)
    end
  end
  -- The body as one line of JSON: a raw newline in encoded JSON can only be whitespace
  -- between tokens (inside strings it is escaped), so dropping them keeps the value.
  return r.status, (r.body:gsub("\n%s*", "")), "req_mockbatch" .. n
end

---------------------------------------------------------------- OpenAI

local ENDPOINTS = { ["/v1/chat/completions"] = "openai_chat", ["/v1/responses"] = "openai_responses" }
local PURPOSES = { batch = true, ["fine-tune"] = true, assistants = true, vision = true,
                   user_data = true, evals = true }

local function oa_error(status, message, etype, code, param)
  return json_plan(status, O("error", O("message", message, "type", etype or "invalid_request_error",
    "param", param or null, "code", code or null)))
end

local function file_object(f)
  return O("id", f.id, "object", "file", "bytes", #f.data, "created_at", f.created_at,
    "filename", f.filename, "purpose", f.purpose, "status", "processed", "status_details", null)
end

local function upload(req)
  local parts, err = M.multipart(req.headers["content-type"], req.body)
  if not parts then return oa_error(400, "Invalid multipart body: " .. err) end
  local fields = {}
  for _, p in ipairs(parts) do fields[p.name] = p end
  if not fields.purpose then return oa_error(400, "Missing required parameter: 'purpose'.", nil, nil, "purpose") end
  if not fields.file or not fields.file.filename then
    return oa_error(400, "Missing required parameter: 'file'.", nil, nil, "file")
  end
  local purpose = fields.purpose.data
  if not PURPOSES[purpose] then
    return oa_error(400, "Invalid value for 'purpose': '" .. purpose .. "'.", nil, "invalid_value", "purpose")
  end
  if purpose == "batch" and not fields.file.filename:match("%.jsonl$") then
    return oa_error(400, "Invalid file format for Batch API. Must be .jsonl", nil, nil, "file")
  end
  local f = { id = next_id("file-mock"), data = fields.file.data, filename = fields.file.filename,
              purpose = purpose, created_at = os.time(), content_type = fields.file.content_type }
  files[f.id] = f
  return json_plan(200, file_object(f))
end

local function jsonl_file(name, lines)
  local f = { id = next_id("file-mock"), data = table.concat(lines, "\n") .. (#lines > 0 and "\n" or ""),
              filename = name, purpose = "batch_output", created_at = os.time() }
  files[f.id] = f
  return f.id
end

local function counts(b)
  return O("total", b.total, "completed", b.completed, "failed", b.failed)
end

local function batch_object(b)
  local errors = null
  if b.errors then errors = O("object", "list", "data", A(b.errors)) end
  return O("id", b.id, "object", "batch", "endpoint", b.endpoint, "errors", errors,
    "input_file_id", b.input_file_id, "completion_window", b.completion_window, "status", b.status,
    "output_file_id", b.output_file_id or null, "error_file_id", b.error_file_id or null,
    "created_at", b.created_at, "in_progress_at", b.in_progress_at or null,
    "expires_at", b.created_at + 86400, "finalizing_at", b.finalizing_at or null,
    "completed_at", b.completed_at or null, "failed_at", b.failed_at or null,
    "expired_at", b.expired_at or null, "cancelling_at", b.cancelling_at or null,
    "cancelled_at", b.cancelled_at or null, "request_counts", counts(b),
    "metadata", b.metadata or null)
end

-- Validates the input file; returns the parsed lines or a list of {code, message, line}.
local function validate_lines(b)
  local f = files[b.input_file_id]
  local lines, errs, seen = {}, {}, {}
  local n = 0
  for line in f.data:gmatch("[^\n]+") do
    n = n + 1
    local obj = json.decode(line)
    local function bad(code, msg, param)
      errs[#errs + 1] = O("code", code, "message", msg, "param", param or null, "line", n)
    end
    if type(obj) ~= "table" then bad("invalid_json_line", "This line is not parseable as valid JSON.")
    elseif type(obj.custom_id) ~= "string" then bad("missing_required_parameter", "Missing custom_id.", "custom_id")
    elseif seen[obj.custom_id] then bad("duplicate_custom_id", "The custom_id for this request is a duplicate of another request.", "custom_id")
    elseif obj.method ~= "POST" then bad("invalid_value", "Only POST is supported.", "method")
    elseif obj.url ~= b.endpoint then bad("mismatched_endpoint", "The url for this request does not match the batch endpoint.", "url")
    elseif type(obj.body) ~= "table" then bad("missing_required_parameter", "Missing body.", "body")
    else
      seen[obj.custom_id] = true
      lines[#lines + 1] = obj
    end
  end
  if n == 0 then errs[#errs + 1] = O("code", "empty_file", "message", "The input file is empty.", "param", null, "line", null) end
  if #errs > 0 then return nil, errs end
  return lines
end

-- Runs the batch's requests: the first `upto` are answered, the rest get `never` (an error
-- code) when given. Writes the output and error files.
local function oa_finish(b, upto, never)
  local provider = b.provider
  local out, errs = {}, {}
  b.completed, b.failed = 0, 0
  for i, line in ipairs(b.lines) do
    local id = "batch_req_mock" .. b.id:sub(-6) .. "_" .. i
    if i <= upto then
      local status, body, rid = run_one(b, provider, line.body, line.custom_id, i)
      local rec = '{"id":' .. json.str(id) .. ',"custom_id":' .. json.str(line.custom_id)
        .. ',"response":{"status_code":' .. status .. ',"request_id":' .. json.str(rid)
        .. ',"body":' .. body .. '},"error":null}' 
      if status < 400 then out[#out + 1] = rec; b.completed = b.completed + 1
      else errs[#errs + 1] = rec; b.failed = b.failed + 1 end
    elseif never then
      local msg = never == "batch_expired"
        and "This request could not be executed before the completion window expired."
        or "This request was not executed because the batch was cancelled."
      errs[#errs + 1] = json.encode(O("id", id, "custom_id", line.custom_id, "response", null,
        "error", O("code", never, "message", msg)))
      b.failed = b.failed + 1
    end
  end
  if #out > 0 then b.output_file_id = jsonl_file("batch_" .. b.id .. "_output.jsonl", out) end
  if #errs > 0 then b.error_file_id = jsonl_file("batch_" .. b.id .. "_error.jsonl", errs) end
end

-- While in progress, the counts move on with each poll (the requests' results appear only
-- when the batch ends): after k of `polls` polls, k / (polls + 1) of them.
local function progress(b, n)
  local done = b.polls - b.polls_left
  return n * done // (b.polls + 1)
end

local function run_count(b)
  local r = math.tointeger(b.plan.run)
  if r then return math.max(0, math.min(r, #b.lines)) end
  return #b.lines // 2
end

-- One poll: the batch moves one state on.
local function oa_advance(b)
  local now = os.time()
  local s = b.status
  if s == "validating" then
    local lines, errs = validate_lines(b)
    if b.plan.outcome == "failed" and lines then
      errs = { O("code", "invalid_request", "message", "The batch failed validation (mock).", "param", null, "line", null) }
      lines = nil
    end
    if not lines then
      b.status, b.errors, b.failed_at = "failed", errs, now
    else
      b.lines, b.total = lines, #lines
      b.status, b.in_progress_at = "in_progress", now
      b.polls_left = math.tointeger(b.plan.polls) or 1
      b.polls = b.polls_left
    end
  elseif s == "in_progress" then
    b.polls_left = b.polls_left - 1
    b.completed = progress(b, #b.lines)
    if b.polls_left <= 0 then
      if b.plan.outcome == "expired" then
        oa_finish(b, run_count(b), "batch_expired")
        b.status, b.expired_at = "expired", now
      else
        b.status, b.finalizing_at = "finalizing", now
      end
    end
  elseif s == "finalizing" then
    oa_finish(b, #b.lines)
    b.status, b.completed_at = "completed", now
  elseif s == "cancelling" then
    if b.lines then oa_finish(b, run_count(b), "batch_cancelled") end
    b.status, b.cancelled_at = "cancelled", now
  end
end

local function oa_create(req)
  local body = json.decode(req.body)
  if type(body) ~= "table" then return oa_error(400, "We could not parse the JSON body of your request.") end
  if type(body.input_file_id) ~= "string" then
    return oa_error(400, "Missing required parameter: 'input_file_id'.", nil, nil, "input_file_id")
  end
  local f = files[body.input_file_id]
  if not f then return oa_error(404, "No such File object: " .. body.input_file_id, nil, nil, "input_file_id") end
  if f.purpose ~= "batch" then
    return oa_error(400, "The input file must be uploaded with purpose 'batch'.", nil, nil, "input_file_id")
  end
  if not ENDPOINTS[body.endpoint] then
    return oa_error(400, "Invalid value for 'endpoint'.", nil, "invalid_value", "endpoint")
  end
  if body.completion_window ~= "24h" then
    return oa_error(400, "Invalid value for 'completion_window': only '24h' is supported.", nil, "invalid_value",
      "completion_window")
  end
  local b = { id = next_id("batch_mock"), endpoint = body.endpoint, input_file_id = f.id,
              completion_window = body.completion_window, status = "validating", created_at = os.time(),
              total = 0, completed = 0, failed = 0, plan = pop_plan(), headers = req.headers,
              metadata = type(body.metadata) == "table" and body.metadata or nil,
              provider = require("mock.providers." .. ENDPOINTS[body.endpoint]) }
  batches[b.id] = b
  return json_plan(200, batch_object(b))
end

local function openai(req, path)
  local m = req.method
  if path == "/files" then
    if m == "POST" then return upload(req) end
    return nil
  end
  local fid, rest = path:match("^/files/([^/]+)(.*)$")
  if fid then
    local f = files[fid]
    if not f then return oa_error(404, "No such File object: " .. fid, nil, nil, "id") end
    if rest == "" and m == "GET" then return json_plan(200, file_object(f)) end
    if rest == "/content" and m == "GET" then
      return { status = 200, headers = { { "content-type", "application/octet-stream" } }, body = f.data }
    end
    return nil
  end
  if path == "/batches" then
    if m == "POST" then return oa_create(req) end
    return nil
  end
  local bid, action = path:match("^/batches/([^/]+)(.*)$")
  if bid then
    local b = batches[bid]
    if not b or b.anthropic then return oa_error(404, "No batch found with id '" .. bid .. "'.") end
    if action == "" and m == "GET" then
      oa_advance(b)
      return json_plan(200, batch_object(b))
    end
    if action == "/cancel" and m == "POST" then
      if b.status ~= "validating" and b.status ~= "in_progress" and b.status ~= "finalizing" then
        return oa_error(400, "Cannot cancel a batch with status '" .. b.status .. "'.")
      end
      b.status, b.cancelling_at = "cancelling", os.time()
      return json_plan(200, batch_object(b))
    end
  end
  return nil
end

---------------------------------------------------------------- Anthropic

local function an_error(status, etype, message)
  return json_plan(status, O("type", "error", "error", O("type", etype, "message", message),
    "request_id", "req_mockbatch"))
end

local function an_object(b, host)
  local ended = b.status == "ended"
  local c = b.counts
  return O("id", b.id, "type", "message_batch", "processing_status", b.status,
    "request_counts", O("processing", c.processing, "succeeded", c.succeeded, "errored", c.errored,
      "canceled", c.canceled, "expired", c.expired),
    "ended_at", ended and rfc3339(b.ended_at) or null, "created_at", rfc3339(b.created_at),
    "expires_at", rfc3339(b.created_at + 86400), "archived_at", null,
    "cancel_initiated_at", b.cancel_at and rfc3339(b.cancel_at) or null,
    "results_url", ended and ("http://" .. host .. "/v1/messages/batches/" .. b.id .. "/results") or null)
end

-- Ends the batch: the first `upto` requests run, the rest are `never` ("canceled" or
-- "expired"). Results are kept in reverse order: the API promises no order.
local function an_finish(b, upto, never)
  local provider = require("mock.providers.anthropic")
  local c = { processing = 0, succeeded = 0, errored = 0, canceled = 0, expired = 0 }
  local lines = {}
  for i, r in ipairs(b.requests) do
    local result
    if i <= upto then
      local status, body = run_one(b, provider, r.params, r.custom_id, i)
      if status < 400 then
        result = '{"type":"succeeded","message":' .. body .. "}"
        c.succeeded = c.succeeded + 1
      else
        result = '{"type":"errored","error":' .. body .. "}"
        c.errored = c.errored + 1
      end
    else
      result = '{"type":' .. json.str(never) .. "}"
      c[never] = c[never] + 1
    end
    lines[#lines + 1] = '{"custom_id":' .. json.str(r.custom_id) .. ',"result":' .. result .. "}"
  end
  local rev = {}
  for i = #lines, 1, -1 do rev[#rev + 1] = lines[i] end
  b.results = table.concat(rev, "\n") .. "\n"
  b.counts, b.status, b.ended_at = c, "ended", os.time()
end

local function an_advance(b)
  if b.status == "in_progress" then
    b.polls_left = b.polls_left - 1
    local done = progress(b, #b.requests)
    b.counts.processing, b.counts.succeeded = #b.requests - done, done
    if b.polls_left <= 0 then
      if b.plan.outcome == "expired" then an_finish(b, run_count(b), "expired")
      else an_finish(b, #b.requests) end
    end
  elseif b.status == "canceling" then
    an_finish(b, run_count(b), "canceled")
  end
end

local function an_create(req)
  local body = json.decode(req.body)
  if type(body) ~= "table" or type(body.requests) ~= "table" or #body.requests == 0 then
    return an_error(400, "invalid_request_error", "requests: Field required (a non-empty list)")
  end
  local seen = {}
  for i, r in ipairs(body.requests) do
    local where = "requests." .. (i - 1)
    if type(r) ~= "table" or type(r.custom_id) ~= "string" or not r.custom_id:match("^[%w_%-]+$")
       or #r.custom_id > 64 then
      return an_error(400, "invalid_request_error", where .. ".custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'")
    end
    if seen[r.custom_id] then
      return an_error(400, "invalid_request_error", where .. ".custom_id: duplicate custom_id " .. r.custom_id)
    end
    seen[r.custom_id] = true
    local p = r.params
    if type(p) ~= "table" or type(p.model) ~= "string" or type(p.messages) ~= "table"
       or math.type(p.max_tokens) ~= "integer" then
      return an_error(400, "invalid_request_error", where .. ".params: model, max_tokens and messages are required")
    end
    if p.stream == true then
      return an_error(400, "invalid_request_error", where .. ".params.stream: streaming is not supported in batches")
    end
  end
  local plan = pop_plan()
  if plan.outcome == "failed" then
    return an_error(400, "invalid_request_error", "The batch was rejected (mock).")
  end
  local b = { id = next_id("msgbatch_mock"), anthropic = true, status = "in_progress", created_at = os.time(),
              headers = req.headers, endpoint = "/v1/messages",
              requests = body.requests, plan = plan, polls_left = math.tointeger(plan.polls) or 1,
              polls = math.tointeger(plan.polls) or 1,
              counts = { processing = #body.requests, succeeded = 0, errored = 0, canceled = 0, expired = 0 } }
  b.lines = b.requests
  batches[b.id] = b
  return json_plan(200, an_object(b, req.headers.host or "127.0.0.1"))
end

local function anthropic(req, path)
  local m = req.method
  local host = req.headers.host or "127.0.0.1"
  if path == "" then
    if m == "POST" then return an_create(req) end
    return nil
  end
  local bid, action = path:match("^/([^/]+)(.*)$")
  local b = bid and batches[bid]
  if not b or not b.anthropic then
    return an_error(404, "not_found_error", "No batch found with id '" .. tostring(bid) .. "'.")
  end
  if action == "" and m == "GET" then
    an_advance(b)
    return json_plan(200, an_object(b, host))
  end
  if action == "/cancel" and m == "POST" then
    if b.status == "in_progress" then b.status, b.cancel_at = "canceling", os.time() end
    return json_plan(200, an_object(b, host))
  end
  if action == "/results" and m == "GET" then
    if b.status ~= "ended" then
      return an_error(400, "invalid_request_error", "Batch " .. b.id .. " has not ended: results are not available yet.")
    end
    return { status = 200, headers = { { "content-type", "application/binary" } }, body = b.results }
  end
  return nil
end

---------------------------------------------------------------- routing

--- The plan for a batch or file request, or nil when the path is not one of them.
--- `check(req)` is the Anthropic route's header check (a plan when it refuses);
--- `compose(req, ctx, provider)` composes a chat reply as the chat routes do.
function M.handle(req, anthropic_check, compose)
  render = compose
  local path = req.path
  local rest = path:match("^/v1/messages/batches(.*)$")
  if rest then
    local refused = anthropic_check(req)
    if refused then return refused end
    return anthropic(req, rest) or an_error(405, "invalid_request_error", req.method .. " " .. path .. " is not allowed")
  end
  rest = path:match("^/v1(/files.*)$") or path:match("^/v1(/batches.*)$")
    or path:match("^(/files.*)$") or path:match("^(/batches.*)$")
  if rest then
    return openai(req, rest) or oa_error(405, req.method .. " " .. path .. " is not allowed")
  end
  return nil
end

return M
