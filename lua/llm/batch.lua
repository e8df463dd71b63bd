--- Batch jobs (API §13): many chat requests sent as one job to the provider's own batch
-- engine, which runs them within a completion window (24 hours) at a lower price.
--
-- The module is a factory: `require("llm.batch")(env)` returns `{ methods = { batch = fn,
-- batch_job = fn }, multipart = fn }`; the `llm` instance installs `methods` on its Client
-- class. Two flows:
--
-- * OpenAI (and servers derived from it): the requests become a JSONL file, one
--   `{ custom_id, method = "POST", url, body }` line each, uploaded to `/files` as
--   multipart/form-data with purpose `batch`; `POST /batches` starts the job, `GET
--   /batches/{id}` polls it, and the output and error files (`/files/{id}/content`) hold
--   the results.
-- * Anthropic Message Batches: `POST /v1/messages/batches` with `{ requests = { {
--   custom_id, params } } }`, polled at `/v1/messages/batches/{id}`; the results are JSONL
--   at the batch's `results_url`.
--
-- Each request body is built by the provider's own `build_request`, the translation a
-- chat call uses, so a batch sends exactly what `client:chat(req)` would send. Results are
-- decoded by the provider's `decode_response` and `decode_error` into the normalized
-- response and `llm.Error` of a chat call. Other providers have no batch API: `client:batch`
-- returns `nil, err` with kind "unsupported" (as `embed` does where there is no such API).
-- @module llm.batch
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local errors = require("llm.errors")
local json = require("llm.json")
local validate = require("llm.validate")
local url_escape = require("llm.providers.common").url_escape

local TERMINAL = { completed = true, failed = true, expired = true, cancelled = true }
local DEFAULT_POLL = 30          -- seconds between polls (API §13)
local DEFAULT_WINDOW = "24h"

local function str(v) return type(v) == "string" and v or nil end

-- multipart/form-data (RFC 7578)

local boundary_seq = 0

--- A multipart/form-data body of `fields`, a list of `{ name, data, filename?,
-- content_type? }`; returns the body and its Content-Type (with the boundary). The
-- boundary is chosen so that it appears in no field's data.
---@param fields { name: string, data: string, filename?: string, content_type?: string }[]
---@return string body
---@return string content_type
local function multipart(fields)
  local boundary
  repeat
    boundary_seq = boundary_seq + 1
    -- no `os` here: sandboxed hosts may have removed it (API §11)
    boundary = string.format("llm-batch-%d-%06d%06d", boundary_seq, math.random(0, 999999), math.random(0, 999999))
    local clash = false
    for _, f in ipairs(fields) do
      if f.data:find(boundary, 1, true) then clash = true end
    end
  until not clash
  local out = {}
  for _, f in ipairs(fields) do
    local disp = 'form-data; name="' .. f.name .. '"'
    if f.filename then disp = disp .. '; filename="' .. f.filename:gsub('[\r\n"]', "_") .. '"' end
    out[#out + 1] = "--" .. boundary .. "\r\nContent-Disposition: " .. disp .. "\r\n"
    if f.content_type then out[#out + 1] = "Content-Type: " .. f.content_type .. "\r\n" end
    out[#out + 1] = "\r\n"
    out[#out + 1] = f.data
    out[#out + 1] = "\r\n"
  end
  out[#out + 1] = "--" .. boundary .. "--\r\n"
  return table.concat(out), "multipart/form-data; boundary=" .. boundary
end

-- The decoded lines of a JSONL text; a line that is not JSON is skipped and counted.
local function jsonl(text)
  local out, bad = {}, 0
  for line in text:gmatch("[^\r\n]+") do
    if line:find("%S") then
      local v = json.decode(line)
      if type(v) == "table" then out[#out + 1] = v else bad = bad + 1 end
    end
  end
  return out, bad
end

return function(env)
  local async = env.async
  local M = { multipart = multipart }

  ---@class llm.BatchJob
  ---@field id string the provider's id of the batch
  ---@field state string the last state seen: "validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling" or "cancelled"
  ---@field counts? { total: integer, completed: integer, failed: integer } the provider's request counts as last fetched (failed: errored, cancelled or expired)
  ---@field raw? table the provider's batch object as last fetched
  local Job = { __name = "llm.BatchJob" }
  Job.__index = Job
  M.Job = Job

  function Job:__tostring()
    return string.format("llm.BatchJob(%s, %s, %s)", tostring(self.client.name), tostring(self.id),
      tostring(self.state))
  end

  local function item_error(kind, message, fields)
    local f = { kind = kind, message = message, retryable = false }
    for k, v in each(fields or {}) do f[k] = v end
    return errors.new(f)
  end

  -- One call to a batch endpoint: its reply must be a JSON object (Client:call_json, under the
  -- client's retry policy); returns it and its meta, or nil, err.
  local function api(c, method, path, body, headers)
    return c:call_json({ method = method, path = path, body = body }, { headers = headers })
  end

  -- OpenAI: a JSONL file through /files, then /batches.

  -- Per-item errors without an HTTP status (`error = { code, message }`).
  local OPENAI_CODE_KIND = { batch_expired = "timeout", batch_cancelled = "cancelled" }

  local OPENAI = {}

  function OPENAI.create(job, items, opts)
    local c = job.client
    local lines, endpoint = {}, nil
    for i, it in ipairs(items) do
      -- the batch names endpoints from the API root: /v1/chat/completions, /v1/responses
      local url = it.built.path
      if not url:match("^/v1/") then url = "/v1" .. url end
      endpoint = url
      lines[i] = json.encode({ custom_id = it.custom_id, method = "POST", url = url, body = it.built.body })
    end
    local body, ctype = multipart{
      { name = "purpose", data = "batch" },
      { name = "file", filename = "batch.jsonl", content_type = "application/jsonl",
        data = table.concat(lines, "\n") .. "\n" },
    }
    local file, err = api(c, "POST", "/files", body, { ["content-type"] = ctype })
    if not file then return nil, err end
    if not str(file.id) then
      return nil, errors.new{ kind = "protocol", message = "the file upload returned no id", body = file,
                              retryable = false }
    end
    return api(c, "POST", "/batches", { input_file_id = file.id, endpoint = endpoint,
      completion_window = opts.completion_window or DEFAULT_WINDOW, metadata = opts.metadata })
  end

  function OPENAI.path(job, action)
    return "/batches/" .. url_escape(job.id) .. (action or "")
  end

  function OPENAI.state(obj)
    return str(obj.status) or "validating"
  end

  local function count(t, k) return type(t) == "table" and type(t[k]) == "number" and t[k] or 0 end

  function OPENAI.counts(obj)
    local c = obj.request_counts
    return { total = count(c, "total"), completed = count(c, "completed"), failed = count(c, "failed") }
  end

  -- The error of a batch that failed as a whole (its input did not validate).
  function OPENAI.failure(obj)
    local list = type(obj.errors) == "table" and type(obj.errors.data) == "table" and obj.errors.data or {}
    local first = list[1] or {}
    local msg = str(first.message) or "the batch failed"
    if type(first.line) == "number" then msg = msg .. " (input line " .. math.floor(first.line) .. ")" end
    if #list > 1 then msg = msg .. " and " .. (#list - 1) .. " more error(s)" end
    return errors.new{ kind = "bad_request", message = msg, code = str(first.code), body = obj, retryable = false }
  end

  -- The provider table that decodes the items: the batch's endpoint tells Chat from Responses.
  local function openai_decoder(job)
    local p = job.client.provider
    local ep = job.raw and str(job.raw.endpoint)
    if ep and ep:match("/responses$") and p.responses then return p.responses end
    if job.p then return job.p end
    return p
  end

  -- Each line of the output and error files as { custom_id, response | error }.
  function OPENAI.fetch(job)
    local c, obj = job.client, job.raw or {}
    local p = openai_decoder(job)
    local out = {}
    for _, key in ipairs{ "output_file_id", "error_file_id" } do
      local fid = str(obj[key])
      if fid then
        local text, err = c:request("GET", "/files/" .. url_escape(fid) .. "/content", nil, { raw = true })
        if not text then return nil, err end
        for _, line in ipairs((jsonl(text))) do
          local id = str(line.custom_id)
          if id then
            local req = job.by_id and job.by_id[id] or {}
            local r, e = type(line.response) == "table" and line.response or nil, line.error
            local entry = { custom_id = id }
            if r and type(r.status_code) == "number" and r.status_code < 300 and type(r.body) == "table" then
              local ok, resp = pcall(p.decode_response, r.body, req)
              if ok then
                resp.status, resp.request_id = r.status_code, str(r.request_id)
                entry.response = resp
              else
                entry.error = item_error("protocol", "cannot decode the result: " .. tostring(resp), { body = r.body })
              end
            elseif r and type(r.status_code) == "number" then
              local rid = str(r.request_id)
              local body = r.body
              entry.error = c:http_error(r.status_code, { ["x-request-id"] = rid },
                type(body) == "table" and json.encode(body) or tostring(body or ""), nil, nil, p)
            elseif type(e) == "table" then
              entry.error = item_error(OPENAI_CODE_KIND[e.code] or "server", str(e.message) or "the request failed",
                { code = str(e.code) })
            else
              entry.error = item_error("protocol", "a result line with neither response nor error", { body = line })
            end
            out[#out + 1] = entry
          end
        end
      end
    end
    return out
  end

  -- Anthropic Message Batches.

  local ANTHROPIC = {}

  function ANTHROPIC.create(job, items)
    local reqs = json.array()
    for i, it in ipairs(items) do
      reqs[i] = { custom_id = it.custom_id, params = it.built.body }
    end
    return api(job.client, "POST", "/v1/messages/batches", { requests = reqs })
  end

  function ANTHROPIC.path(job, action)
    return "/v1/messages/batches/" .. url_escape(job.id) .. (action or "")
  end

  -- `ended` is "completed", or "cancelled" once a cancel was asked for (API §13).
  function ANTHROPIC.state(obj)
    local s = str(obj.processing_status)
    if s == "canceling" then return "cancelling" end
    if s == "ended" then
      local cancelled = obj.cancel_initiated_at ~= nil and obj.cancel_initiated_at ~= json.null
      return cancelled and "cancelled" or "completed"
    end
    return s or "in_progress"
  end

  function ANTHROPIC.counts(obj)
    local c = obj.request_counts
    local failed = count(c, "errored") + count(c, "canceled") + count(c, "expired")
    return { total = count(c, "processing") + count(c, "succeeded") + failed,
             completed = count(c, "succeeded"), failed = failed }
  end

  function ANTHROPIC.failure(obj)
    return errors.new{ kind = "server", message = "the batch failed", body = obj, retryable = false }
  end

  local ANTHROPIC_NEVER = { canceled = { "cancelled", "the batch was cancelled before this request ran" },
                            expired = { "timeout", "the batch expired before this request ran" } }

  function ANTHROPIC.fetch(job)
    local c, obj = job.client, job.raw or {}
    local p = job.p or c.provider
    local url = str(obj.results_url)
    -- results_url is absolute; the key goes only to the client's own origin.
    if not url or url:sub(1, #c.base_url + 1) ~= c.base_url .. "/" then url = ANTHROPIC.path(job, "/results") end
    local text, err = c:request("GET", url, nil, { raw = true })
    if not text then return nil, err end
    local out = {}
    for _, line in ipairs((jsonl(text))) do
      local id = str(line.custom_id)
      local r = type(line.result) == "table" and line.result or {}
      if id then
        local entry = { custom_id = id }
        local t = str(r.type)
        if t == "succeeded" and type(r.message) == "table" then
          local ok, resp = pcall(p.decode_response, r.message, job.by_id and job.by_id[id] or {})
          if ok then entry.response = resp
          else
            entry.error = item_error("protocol", "cannot decode the result: " .. tostring(resp), { body = r.message })
          end
        elseif t == "errored" then
          local body = type(r.error) == "table" and r.error or {}
          local e = type(body.error) == "table" and body.error or body
          local etype = str(e.type)
          local kind = (etype and p.error_kinds and p.error_kinds[etype]) or "server"
          entry.error = errors.new{ kind = kind, type = etype, message = str(e.message) or "the request failed",
                                    request_id = str(body.request_id), body = body }
        elseif ANTHROPIC_NEVER[t] then
          entry.error = item_error(ANTHROPIC_NEVER[t][1], ANTHROPIC_NEVER[t][2])
        else
          entry.error = item_error("protocol", "unknown result type " .. tostring(t), { body = line })
        end
        out[#out + 1] = entry
      end
    end
    return out
  end

  local FLOWS = { openai = OPENAI, anthropic = ANTHROPIC }

  -- The flow of a client's provider, by its name or the built-in it derives from.
  local function flow_of(client)
    local p = client.provider
    return FLOWS[p.batch_api or ""] or FLOWS[p.name] or (p.base and FLOWS[p.base])
  end

  -- Jobs

  local function new_job(client, flow, id)
    return setmetatable({ client = client, flow = flow, id = id, state = nil }, Job)
  end

  local function take(job, obj)
    job.raw = obj
    job.id = str(obj.id) or job.id
    job.state = job.flow.state(obj)
    job.counts = job.flow.counts(obj)
    return job.state
  end

  --- Fetch the job's state from the provider (one request). Returns the state:
  -- "validating", "in_progress", "finalizing", "completed", "failed", "expired",
  -- "cancelling" or "cancelled"; or `nil, err` when the provider could not be asked.
  ---@return string? state
  ---@return llm.Error? err
  function Job:status()
    local obj, err = api(self.client, "GET", self.flow.path(self))
    if not obj then return nil, err end
    return take(self, obj)
  end

  -- The results in order: input order for a job this process created (a request with no
  -- result line gets an error saying why), else by the number of `req-<i>` custom ids,
  -- then the others in the order the provider listed them.
  local function ordered(self, entries)
    local by = {}
    for _, e in ipairs(entries) do by[e.custom_id] = e end
    local out = {}
    if self.order then
      for i, id in ipairs(self.order) do
        local e = by[id]
        if not e then
          if self.state == "cancelled" then
            e = { custom_id = id, error = item_error("cancelled", "the batch was cancelled before this request ran") }
          elseif self.state == "expired" then
            e = { custom_id = id, error = item_error("timeout", "the batch expired before this request ran") }
          else
            e = { custom_id = id, error = item_error("protocol", "the batch has no result for this request") }
          end
        end
        out[i] = e
      end
      return out
    end
    local numbered, rest = {}, {}
    for i, e in ipairs(entries) do
      local n = tonumber(e.custom_id:match("^req%-(%d+)$"))
      if n then numbered[#numbered + 1] = { n = n, i = i, e = e } else rest[#rest + 1] = e end
    end
    table.sort(numbered, function(a, b) return a.n < b.n or (a.n == b.n and a.i < b.i) end)
    for _, x in ipairs(numbered) do out[#out + 1] = x.e end
    for _, e in ipairs(rest) do out[#out + 1] = e end
    return out
  end

  -- Poll until the job reaches a terminal state, sleeping poll_interval between polls
  -- (yielding inside a task, blocking outside one).
  local function settle(self)
    while true do
      local state, err = self:status()
      if not state then return nil, err end
      if TERMINAL[state] then return state end
      local ok, serr = async.sleep(self.poll_interval or DEFAULT_POLL)
      if not ok then return nil, serr end
    end
  end

  -- The results once the job has ended (downloaded once, then kept).
  local function collect(self)
    if self.results_list then return self.results_list end
    local entries, err = self.flow.fetch(self)
    if not entries then return nil, err end
    self.results_list = ordered(self, entries)
    return self.results_list
  end

  --- Wait for the job to end, polling every `poll_interval` seconds (yielding inside a task,
  -- blocking outside one), and return its results in input order: `results[i]` is
  -- `{ custom_id, response = <normalized response> }` or `{ custom_id, error = <llm.Error> }`.
  -- A failed or expired batch returns `nil, err` (kind "bad_request" for a batch whose input
  -- was refused, "timeout" for an expired one, whose finished results are in `err.results`).
  ---@return llm.BatchResult[]? results
  ---@return llm.Error? err
  function Job:wait()
    local state = TERMINAL[self.state] and self.state or nil
    if not state then
      local err
      state, err = settle(self)
      if not state then return nil, err end
    end
    if state == "failed" then return nil, self.flow.failure(self.raw or {}) end
    local results, rerr = collect(self)
    if not results then return nil, rerr end
    if state == "expired" then
      return nil, errors.new{ kind = "timeout", retryable = false, results = results,
        message = "the batch expired before all its requests ran (" .. #results .. " results in err.results)" }
    end
    return results
  end

  --- The results of the job (waiting like `wait()` when it has not ended): a list in input
  -- order of `{ custom_id, response }` or `{ custom_id, error }`. An expired job gives the
  -- results it has (requests never run have an error of kind "timeout"); a failed one
  -- `nil, err`.
  ---@return llm.BatchResult[]? results
  ---@return llm.Error? err
  function Job:results()
    local results, err = self:wait()
    if results then return results end
    if errors.is(err) and err.results then return err.results end
    return nil, err
  end

  --- Ask the provider to cancel the job. Returns the new state (usually "cancelling"; the
  -- job ends as "cancelled", and its requests that never ran get errors of kind
  -- "cancelled"), or `nil, err`.
  ---@return string? state
  ---@return llm.Error? err
  function Job:cancel()
    local obj, err = api(self.client, "POST", self.flow.path(self, "/cancel"))
    if not obj then return nil, err end
    return take(self, obj)
  end

  --- Send `requests` as one batch job on the provider's batch engine (OpenAI Batch API,
  -- Anthropic Message Batches). Each request is a chat request (or a string: one user
  -- message) and may carry `custom_id` (default `"req-<i>"`). `opts`: `completion_window`
  -- ("24h"), `poll_interval` (seconds between polls in `wait`, 30), `metadata` (OpenAI).
  -- Returns the job once the provider has accepted it, or `nil, err`; a provider without a
  -- batch API gives kind "unsupported". A malformed request or option raises.
  -- @function Client:batch
  ---@param self llm.Client
  ---@param requests (string|llm.BatchRequest)[] the requests, each with an optional `custom_id`
  ---@param opts? { completion_window?: string, poll_interval?: number, metadata?: table<string, string> }
  ---@return llm.BatchJob? job
  ---@return llm.Error? err
  local function batch(self, requests, opts)
    opts = opts or {}
    local bad = validate.batch_options(opts)
    if bad then error(bad, 2) end
    if type(requests) ~= "table" or not validate.is_list(requests) or #requests == 0 then
      error("client:batch: requests must be a non-empty list of chat requests", 2)
    end
    local flow = flow_of(self)
    local items, seen, order, by_id = {}, {}, {}, {}
    local first_p
    for i, r in ipairs(requests) do
      local custom_id = "req-" .. i
      local req = r
      if type(r) == "table" then
        req = {}
        for k, v in each(r) do req[k] = v end
        if req.custom_id ~= nil then
          if type(req.custom_id) ~= "string" or req.custom_id == "" then
            error("client:batch: requests[" .. i .. "].custom_id must be a non-empty string", 2)
          end
          custom_id = req.custom_id
        end
        req.custom_id = nil
      end
      if seen[custom_id] then
        error("client:batch: custom_id '" .. custom_id .. "' is used by requests " .. seen[custom_id]
          .. " and " .. i .. " (each must be unique)", 2)
      end
      seen[custom_id] = i
      req = self:normalize(req, 2)
      req.stream = false
      local p = self:provider_for(req)
      first_p = first_p or p
      if flow then
        local built = p.build_request(req)
        if items[1] and built.path ~= items[1].built.path then
          error("client:batch: every request of a batch must go to the same API (request " .. i .. " goes to "
            .. tostring(built.path) .. ", the first to " .. tostring(items[1].built.path) .. ")", 2)
        end
        items[i] = { custom_id = custom_id, built = built }
      end
      order[i], by_id[custom_id] = custom_id, req
    end
    if not flow then return self:unsupported("batch") end
    local job = new_job(self, flow, nil)
    job.poll_interval = opts.poll_interval or DEFAULT_POLL
    job.order, job.by_id, job.p = order, by_id, first_p
    local obj, err = flow.create(job, items, opts)
    if not obj then return nil, err end
    if not str(obj.id) then
      return nil, errors.new{ kind = "protocol", message = "the batch was created without an id", body = obj,
                              retryable = false }
    end
    take(job, obj)
    return job
  end

  --- Reattach to a batch job by its id (one created earlier, here or elsewhere). Nothing is
  -- sent until `status`, `wait`, `results` or `cancel`; results come ordered by the number
  -- in `req-<i>` custom ids, then the others as the provider listed them. `opts`:
  -- `poll_interval`. A provider without a batch API gives `nil, err` (kind "unsupported").
  -- @function Client:batch_job
  ---@param self llm.Client
  ---@param id string the batch id (`batch_...`, `msgbatch_...`)
  ---@param opts? { poll_interval?: number }
  ---@return llm.BatchJob? job
  ---@return llm.Error? err
  local function batch_job(self, id, opts)
    if type(id) ~= "string" or id == "" then error("client:batch_job: expected a batch id (a string)", 2) end
    opts = opts or {}
    local bad = validate.batch_options(opts, "client:batch_job")
    if bad then error(bad, 2) end
    local flow = flow_of(self)
    if not flow then return self:unsupported("batch") end
    local job = new_job(self, flow, id)
    job.poll_interval = opts.poll_interval or DEFAULT_POLL
    return job
  end

  M.methods = { batch = batch, batch_job = batch_job }
  return M
end
