-- Batch jobs (API §13) end to end against the mock's OpenAI Files + Batch API and Anthropic
-- Message Batches: what was uploaded (the multipart body, the JSONL lines, the bodies a chat
-- call would send), results mapped back in input order with per-item errors, every terminal
-- state, cancel and reattach. The mock moves a batch one state per poll and the library runs
-- on a fake clock, so nothing waits on a wall clock: poll spacing is read from the clock.
local llm_mod = require("llm")
local clockmod = require("llm.clock")
local json = require("llm.json")
local mockmod = require("llm.mock")

local m
setup(function() m = assert(mockmod.start()) end)
teardown(function() if m then m:stop() end end)
before_each(function() m:reset() end)

local function lib()
  local clock = clockmod.fake(0)
  return llm_mod.new{ clock = clock }, clock
end

local function requests_of(n)
  local reqs = {}
  for i = 1, n do reqs[i] = { messages = { { role = "user", content = "text " .. i } }, max_tokens = 20 } end
  return reqs
end

-- The parts of a multipart/form-data body, parsed here independently of both the client
-- and the mock: { [name] = { data, filename, content_type } }.
local function parse_multipart(content_type, body)
  local boundary = assert(content_type:match("^multipart/form%-data; boundary=(.+)$"), content_type)
  local parts = {}
  local delim = "--" .. boundary
  assert.equal(delim .. "\r\n", body:sub(1, #delim + 2))
  assert.equal("\r\n" .. delim .. "--\r\n", body:sub(-(#delim + 6)))
  local inner = body:sub(#delim + 3, -(#delim + 7))
  local pos = 1
  while pos <= #inner do
    local stop = inner:find("\r\n" .. delim .. "\r\n", pos, true) or (#inner + 1)
    local part = inner:sub(pos, stop - 1)
    local head, data = part:match("^(.-)\r\n\r\n(.*)$")
    local name = assert(head:match('Content%-Disposition: form%-data; name="([^"]+)"'), head)
    parts[name] = { data = data, filename = head:match('filename="([^"]+)"'),
                    content_type = head:match("Content%-Type: ([^\r\n]+)") }
    pos = stop + #delim + 4
  end
  return parts
end

local function lines_of(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = assert(json.decode(line)) end
  return out
end

local function only(reqs, method, pattern)
  local out = {}
  for _, r in ipairs(reqs) do
    if r.method == method and r.path:match(pattern) then out[#out + 1] = r end
  end
  return out
end

describe("client:batch on OpenAI (Files + Batch API)", function()
  it("1,000 requests: uploaded as multipart JSONL, results in input order with per-item errors", function()
    local llm, clock = lib()
    local c = m:client("openai", { llm = llm, max_retries = 0 })
    local reqs = requests_of(1000)
    reqs[7].custom_id = "seventh"
    local errs = {}
    for i = 10, 1000, 10 do errs["req-" .. i] = { status = 400, message = "bad request " .. i } end
    errs["req-555"] = { status = 429, type = "requests", message = "slow down" }
    errs["req-999"] = { status = 500, message = "boom" }
    errs.seventh = { status = 404, message = "no such model" }
    m:batch_plan{ errors = errs, polls = 3 }

    local job, err = c:batch(reqs, { poll_interval = 30 })
    assert.is_nil(err)
    assert.matches("^batch_", job.id)
    assert.equal("validating", job.state)
    assert.same({ total = 0, completed = 0, failed = 0 }, job.counts)
    assert.equal("in_progress", job:status())
    assert.equal("in_progress", job:status())
    assert.same({ total = 1000, completed = 250, failed = 0 }, job.counts)   -- 1 of 3 polls in progress
    local results, werr = job:wait()
    assert.is_nil(werr)
    -- validating, then in_progress for 3 polls, finalizing, completed: 5 polls in all
    assert.equal(2 * 30, clock:now())       -- wait() made the last 3 of the 5 polls: 2 sleeps
    assert.equal("completed", job.state)
    assert.same({ total = 1000, completed = 897, failed = 103 }, job.counts)

    assert.equal(1000, #results)
    local failed = 0
    for i = 1, 1000 do
      local r = results[i]
      local id = i == 7 and "seventh" or ("req-" .. i)
      assert.equal(id, r.custom_id)
      if errs[id] then
        failed = failed + 1
        assert.is_nil(r.response)
        assert.is_true(llm.is_error(r.error))
        assert.equal(errs[id].status, r.error.status)
        assert.equal(errs[id].message, r.error.message)
        assert.is_string(r.error.request_id)
      else
        assert.is_nil(r.error)
        assert.equal("echo: text " .. i, r.response.text)
        assert.equal("stop", r.response.finish_reason)
        assert.equal(3, r.response.usage.output_tokens)   -- the mock counts words: "echo:", "text", "i"
      end
    end
    assert.equal(103, failed)
    assert.equal("bad_request", results[10].error.kind)
    assert.equal("rate_limit", results[555].error.kind)
    assert.equal("server", results[999].error.kind)
    assert.equal("not_found", results[7].error.kind)

    -- What the mock received: one upload, one create, five polls, two downloads.
    local got = m:requests()
    local uploads = only(got, "POST", "^/v1/files$")
    assert.equal(1, #uploads)
    assert.equal(1, #only(got, "POST", "^/v1/batches$"))
    assert.equal(5, #only(got, "GET", "^/v1/batches/batch_"))
    assert.equal(2, #only(got, "GET", "^/v1/files/.*/content$"))
    assert.equal(9, #got)

    local up = uploads[1]
    assert.matches("^Bearer ", up.headers["authorization"])
    local parts = parse_multipart(up.headers["content-type"], up.body)
    assert.equal("batch", parts.purpose.data)
    assert.is_nil(parts.purpose.filename)
    assert.equal("batch.jsonl", parts.file.filename)
    assert.equal("application/jsonl", parts.file.content_type)
    local lines = lines_of(parts.file.data)
    assert.equal(1000, #lines)
    for i, line in ipairs(lines) do
      assert.equal(i == 7 and "seventh" or ("req-" .. i), line.custom_id)
      assert.equal("POST", line.method)
      assert.equal("/v1/chat/completions", line.url)
      assert.equal("text " .. i, line.body.messages[1].content)
      assert.is_nil(line.body.stream)
    end
    local create = only(got, "POST", "^/v1/batches$")[1].json
    assert.equal("/v1/chat/completions", create.endpoint)
    assert.equal("24h", create.completion_window)
    assert.matches("^file%-", create.input_file_id)

    -- Batch usage stays out of the client's accounting of online calls (docs/batch.md).
    assert.equal(0, c.usage.requests)
    assert.equal(0, c.usage.input_tokens)

    -- Each line's body is what client:chat sends for the same request.
    m:reset()
    assert(c:chat(reqs[3]))
    assert.same(m:requests()[1].json, lines[3].body)
  end)

  it("a request for the Responses API goes to /v1/responses and decodes as one", function()
    local llm = lib()
    local c = m:client("openai", { llm = llm, api = "responses" })
    local job = assert(c:batch({ "alpha", "beta" },
      { poll_interval = 1, completion_window = "24h", metadata = { run = "nightly" } }))
    local results = assert(job:wait())
    assert.equal("echo: alpha", results[1].response.text)
    assert.equal("echo: beta", results[2].response.text)
    local create = only(m:requests(), "POST", "^/v1/batches$")[1].json
    assert.equal("/v1/responses", create.endpoint)
    assert.equal("nightly", create.metadata.run)
  end)

  it("cancel: the job ends cancelled, requests never run get errors of kind cancelled", function()
    local llm = lib()
    local c = m:client("openai", { llm = llm })
    m:batch_plan{ run = 3, polls = 5 }
    local job = assert(c:batch(requests_of(10), { poll_interval = 5 }))
    assert.equal("in_progress", job:status())
    assert.equal("cancelling", job:cancel())
    local results = assert(job:wait())
    assert.equal("cancelled", job.state)
    assert.equal(10, #results)
    for i = 1, 10 do
      if i <= 3 then assert.equal("echo: text " .. i, results[i].response.text)
      else
        assert.equal("cancelled", results[i].error.kind)
        assert.equal("batch_cancelled", results[i].error.code)
      end
    end
    assert.equal(1, #only(m:requests(), "POST", "/cancel$"))
  end)

  it("a job cancelled while validating has no result files: every request is cancelled", function()
    local llm = lib()
    local c = m:client("openai", { llm = llm })
    local job = assert(c:batch(requests_of(4), { poll_interval = 1 }))
    assert.equal("validating", job.state)
    assert.equal("cancelling", job:cancel())
    local results = assert(job:results())
    assert.equal("cancelled", job.state)
    assert.equal(0, #only(m:requests(), "GET", "/content$"))
    for i = 1, 4 do
      assert.equal("req-" .. i, results[i].custom_id)
      assert.equal("cancelled", results[i].error.kind)
    end
  end)

  it("llm.timeout bounds a wait; the job goes on and a later wait picks it up", function()
    local llm, clock = lib()
    local c = m:client("openai", { llm = llm })
    m:batch_plan{ polls = 5 }
    local job = assert(c:batch(requests_of(3), { poll_interval = 10 }))
    local results, err = llm.run(function()
      return llm.timeout(25, function() return job:wait() end)
    end)
    assert.is_nil(results)
    assert.equal("timeout", err.kind)
    assert.equal(25, clock:now())
    assert.equal("in_progress", job.state)
    results = assert(job:wait())
    assert.equal("completed", job.state)
    assert.equal("echo: text 3", results[3].response.text)
  end)

  it("reattach: batch_job(id) on another client returns the results ordered by req-<i>", function()
    local llm = lib()
    local c = m:client("openai", { llm = llm })
    local reqs = requests_of(12)
    reqs[5].custom_id = "odd-one"
    m:batch_plan{ errors = { ["req-11"] = { status = 400, message = "nope" } } }
    local job = assert(c:batch(reqs, { poll_interval = 1 }))
    local id = job.id

    local other = m:client("openai", { llm = llm })
    local again = assert(other:batch_job(id, { poll_interval = 1 }))
    assert.equal(id, again.id)
    local results = assert(again:results())
    assert.equal("completed", again.state)
    assert.equal(12, #results)
    local expect = { 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12 }
    for k, i in ipairs(expect) do assert.equal("req-" .. i, results[k].custom_id) end
    assert.equal("odd-one", results[12].custom_id)   -- no req-<i> number: after the others
    assert.equal("echo: text 5", results[12].response.text)
    assert.equal("echo: text 12", results[11].response.text)
    assert.equal("bad_request", results[10].error.kind)
    -- the job ended once; asking again downloads nothing more
    local n = #m:requests()
    assert.equal(results, (again:results()))
    assert.equal(n, #m:requests())
  end)

  it("a failed batch: wait() returns nil, err and the state is failed", function()
    local llm = lib()
    local c = m:client("openai", { llm = llm })
    m:batch_plan{ outcome = "failed" }
    local job = assert(c:batch(requests_of(3), { poll_interval = 1 }))
    local results, err = job:wait()
    assert.is_nil(results)
    assert.equal("bad_request", err.kind)
    assert.matches("failed validation", err.message)
    assert.equal("failed", job.state)
    local r2, err2 = job:results()
    assert.is_nil(r2)
    assert.equal("bad_request", err2.kind)
  end)

  it("an expired batch: wait() returns nil, err (timeout) with the results; results() returns them", function()
    local llm = lib()
    local c = m:client("openai", { llm = llm })
    m:batch_plan{ outcome = "expired", run = 4 }
    local job = assert(c:batch(requests_of(10), { poll_interval = 1 }))
    local results, err = job:wait()
    assert.is_nil(results)
    assert.equal("timeout", err.kind)
    assert.equal("expired", job.state)
    assert.equal(10, #err.results)
    local list = assert(job:results())
    assert.equal(err.results, list)
    for i = 1, 10 do
      if i <= 4 then assert.equal("echo: text " .. i, list[i].response.text)
      else
        assert.equal("timeout", list[i].error.kind)
        assert.equal("batch_expired", list[i].error.code)
      end
    end
  end)

  it("an input file that does not validate fails the batch, line by line (a hand-made upload)", function()
    local llm = lib()
    local c = m:client("openai", { llm = llm, max_retries = 0 })
    local jsonl = table.concat({
      '{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}',
      '{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}',
      '{"custom_id":"b","method":"POST","url":"/v1/embeddings","body":{}}',
    }, "\n")
    local body = "--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
      .. "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
      .. "Content-Type: application/jsonl\r\n\r\n" .. jsonl .. "\r\n--XyZ--\r\n"
    local file = assert(c:request("POST", "/files", body,
      { headers = { ["content-type"] = "multipart/form-data; boundary=XyZ" } }))
    assert.equal(#jsonl, file.bytes)
    assert.equal("in.jsonl", file.filename)
    local content = assert(c:request("GET", "/files/" .. file.id .. "/content", nil, { raw = true }))
    assert.equal(jsonl, content)
    local created = assert(c:request("POST", "/batches",
      { input_file_id = file.id, endpoint = "/v1/chat/completions", completion_window = "24h" }))
    local job = assert(c:batch_job(created.id, { poll_interval = 1 }))
    local results, err = job:wait()
    assert.is_nil(results)
    assert.equal("failed", job.state)
    assert.equal("bad_request", err.kind)
    assert.equal("duplicate_custom_id", err.code)
    assert.matches("%(input line 2%) and 1 more error%(s%)", err.message)
    assert.equal(3, job.raw.errors.data[2].line)
  end)

  it("the mock refuses what the API refuses: a part missing, a batch file not .jsonl, a cut body", function()
    local c = m:client("openai", { max_retries = 0 })
    local function upload(body)
      return c:request("POST", "/files", body, { headers = { ["content-type"] = "multipart/form-data; boundary=B" } })
    end
    local file = '--B\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\n\r\n{}\r\n'
    local _, err = upload(file .. "--B--\r\n")
    assert.matches("Missing required parameter: 'purpose'", err.message)
    _, err = upload('--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
      .. file:gsub("x%.jsonl", "x.txt") .. "--B--\r\n")
    assert.matches("Must be %.jsonl", err.message)
    _, err = upload(file)   -- no closing delimiter
    assert.matches("Invalid multipart body", err.message)
    assert.equal(400, err.status)
    -- a finished batch cannot be cancelled
    local job = assert(c:batch({ "x" }, { poll_interval = 0 }))
    assert(job:wait())
    local state, cerr = job:cancel()
    assert.is_nil(state)
    assert.equal(400, cerr.status)
    -- Anthropic: custom ids outside [A-Za-z0-9_-]{1,64} are refused when the batch is created
    local a = m:client("anthropic", { max_retries = 0 })
    local none, aerr = a:batch({ { custom_id = "no spaces", messages = { { role = "user", content = "x" } } } })
    assert.is_nil(none)
    assert.matches("custom_id", aerr.message)
    assert.equal("bad_request", aerr.kind)
  end)

  it("the mock parses the multipart body itself: a JSON body to /files is refused", function()
    local c = m:client("openai", { max_retries = 0 })
    local body, err = c:request("POST", "/files", { purpose = "batch" })
    assert.is_nil(body)
    assert.equal("bad_request", err.kind)
    assert.matches("multipart", err.message)
  end)
end)

describe("client:batch on Anthropic (Message Batches)", function()
  it("1,000 requests: one create, results matched by custom_id into input order", function()
    local llm, clock = lib()
    local c = m:client("anthropic", { llm = llm, max_retries = 0 })
    local reqs = requests_of(1000)
    local errs = {}
    for i = 3, 1000, 25 do errs["req-" .. i] = { status = 400, message = "invalid " .. i } end
    errs["req-500"] = { status = 529, type = "overloaded_error", message = "Overloaded" }
    m:batch_plan{ errors = errs, polls = 2 }

    local job = assert(c:batch(reqs, { poll_interval = 60 }))
    assert.matches("^msgbatch_", job.id)
    assert.equal("in_progress", job.state)
    local results = assert(job:wait())
    assert.equal(60, clock:now())             -- two polls, one sleep
    assert.equal("completed", job.state)
    assert.same({ total = 1000, completed = 959, failed = 41 }, job.counts)
    assert.equal(1000, #results)
    local failed = 0
    for i = 1, 1000 do
      local r, id = results[i], "req-" .. i
      assert.equal(id, r.custom_id)
      if errs[id] then
        failed = failed + 1
        assert.equal(errs[id].message, r.error.message)
      else
        assert.equal("echo: text " .. i, r.response.text)
        assert.equal("stop", r.response.finish_reason)
      end
    end
    assert.equal(41, failed)
    assert.equal("bad_request", results[3].error.kind)
    assert.equal("invalid_request_error", results[3].error.type)
    assert.equal("overloaded", results[500].error.kind)

    local got = m:requests()
    local creates = only(got, "POST", "^/v1/messages/batches$")
    assert.equal(1, #creates)
    assert.equal("2023-06-01", creates[1].headers["anthropic-version"])
    local sent = creates[1].json.requests
    assert.equal(1000, #sent)
    for i = 1, 1000 do
      assert.equal("req-" .. i, sent[i].custom_id)
      assert.equal("text " .. i, sent[i].params.messages[1].content)
    end
    assert.equal(1, #only(got, "GET", "/results$"))
    m:reset()
    assert(c:chat(reqs[42]))
    assert.same(m:requests()[1].json, sent[42].params)
  end)

  it("the requests run under the x-mock-* headers of the request that created the batch", function()
    local llm = lib()
    local c = m:client("anthropic", { llm = llm, headers = { ["x-mock-text"] = "neutral" } })
    local job = assert(c:batch(requests_of(3), { poll_interval = 1 }))
    local results = assert(job:wait())
    for i = 1, 3 do assert.equal("neutral", results[i].response.text) end
  end)

  it("cancel: canceling maps to cancelling, ended after a cancel to cancelled", function()
    local llm = lib()
    local c = m:client("anthropic", { llm = llm })
    m:batch_plan{ run = 2, polls = 5 }
    local job = assert(c:batch(requests_of(6), { poll_interval = 1 }))
    assert.equal("cancelling", job:cancel())
    assert.equal("canceling", job.raw.processing_status)
    local results = assert(job:wait())
    assert.equal("cancelled", job.state)
    assert.equal("ended", job.raw.processing_status)
    for i = 1, 6 do
      if i <= 2 then assert.equal("echo: text " .. i, results[i].response.text)
      else assert.equal("cancelled", results[i].error.kind) end
    end
    -- reattached, the cancel is read from cancel_initiated_at
    local again = assert(c:batch_job(job.id))
    assert.equal("cancelled", again:status())
  end)

  it("reattach orders by req-<i> although the results file lists them in another order", function()
    local llm = lib()
    local c = m:client("anthropic", { llm = llm })
    local job = assert(c:batch(requests_of(20), { poll_interval = 1 }))
    assert(job:wait())
    local again = assert(c:batch_job(job.id))
    local results = assert(again:results())
    for i = 1, 20 do
      assert.equal("req-" .. i, results[i].custom_id)
      assert.equal("echo: text " .. i, results[i].response.text)
    end
    -- the file itself was not in order: the mock lists the results last to first
    local fetched = only(m:requests(), "GET", "/results$")
    assert.equal(2, #fetched)
  end)

  it("expired requests get errors of kind timeout", function()
    local llm = lib()
    local c = m:client("anthropic", { llm = llm })
    m:batch_plan{ outcome = "expired", run = 1 }
    local job = assert(c:batch(requests_of(3), { poll_interval = 1 }))
    local results = assert(job:results())
    assert.equal("completed", job.state)      -- ended without a cancel
    assert.equal("echo: text 1", results[1].response.text)
    assert.equal("timeout", results[2].error.kind)
    assert.equal("timeout", results[3].error.kind)
  end)

  it("a batch the API refuses returns nil, err", function()
    local c = m:client("anthropic", { max_retries = 0 })
    m:batch_plan{ outcome = "failed" }
    local job, err = c:batch(requests_of(2))
    assert.is_nil(job)
    assert.equal("bad_request", err.kind)
    assert.equal(400, err.status)
  end)

  it("a reply that is not a JSON object is a protocol error, on create and on a poll", function()
    -- under /x the paths are no batch routes of the mock, so its plain faults answer them
    local function faulty(p, fault)
      return m:client(p, { max_retries = 0, base_url = m.url .. "/x" .. (p == "openai" and "/v1" or ""),
                           headers = { ["x-mock-fault"] = fault } })
    end
    for _, p in ipairs{ "anthropic", "openai" } do
      local job, err = faulty(p, "not-object"):batch(requests_of(2))
      assert.is_nil(job)
      assert.equal("protocol", err.kind)
      assert.equal("response is a number, not a JSON object", err.message)
      local state
      state, err = faulty(p, "not-object=[]"):batch_job("batch_1"):status()
      assert.is_nil(state)
      assert.equal("response is an array, not a JSON object", err.message)
      local paths = {}
      for i, r in ipairs(m:requests()) do paths[i] = r.method .. " " .. r.path end
      assert.same(p == "anthropic" and { "POST /x/v1/messages/batches", "GET /x/v1/messages/batches/batch_1" }
        or { "POST /x/v1/files", "GET /x/v1/batches/batch_1" }, paths)
      m:reset()
    end
  end)
end)

describe("client:batch, the rest of the contract", function()
  it("jobs wait inside tasks concurrently, polling on the clock", function()
    local llm, clock = lib()
    local oa = m:client("openai", { llm = llm })
    local an = m:client("anthropic", { llm = llm })
    -- OpenAI: 6 polls, 5 sleeps of 10 s; Anthropic: 4 polls, 3 sleeps
    m:batch_plan{ polls = 4 }
    m:batch_plan{ polls = 4 }
    local results = llm.run(function()
      local a = llm.spawn(function() return assert(oa:batch(requests_of(5), { poll_interval = 10 })):wait() end)
      local b = llm.spawn(function() return assert(an:batch(requests_of(5), { poll_interval = 10 })):wait() end)
      return { llm.gather(a, b) }
    end)
    local res = results[1]
    assert.equal(5, #res[1])
    assert.equal(5, #res[2])
    assert.equal("echo: text 5", res[1][5].response.text)
    assert.equal("echo: text 5", res[2][5].response.text)
    assert.equal(50, clock:now())   -- the longer job's sleeps, not the sum of both
  end)

  it("providers without a batch API return nil, err of kind unsupported", function()
    for _, name in ipairs{ "gemini", "ollama" } do
      local c = m:client(name)
      local job, err = c:batch({ "hi" })
      assert.is_nil(job)
      assert.equal("unsupported", err.kind)
      local j2, err2 = c:batch_job("batch_1")
      assert.is_nil(j2)
      assert.equal("unsupported", err2.kind)
    end
    assert.equal(0, #m:requests())
  end)

  it("misuse raises naming the mistake", function()
    local c = m:client("openai")
    assert.has_error(function() c:batch({}) end, "client:batch: requests must be a non-empty list of chat requests")
    assert.has_error(function() c:batch({ { custom_id = "a", messages = {} }, { custom_id = "a", messages = {} } }) end,
      "client:batch: custom_id 'a' is used by requests 1 and 2 (each must be unique)")
    local ok, msg = pcall(c.batch, c, { "hi" }, { poll_intervall = 3 })
    assert.is_false(ok)
    assert.matches("unknown option 'poll_intervall' %(did you mean 'poll_interval'%?%)", msg)
    ok, msg = pcall(c.batch, c, { { messages = {}, temprature = 1 } })
    assert.is_false(ok)
    assert.matches("did you mean 'temperature'", msg)
    assert.has_error(function() c:batch_job(nil) end, "client:batch_job: expected a batch id (a string)")
    ok, msg = pcall(c.batch, c, { "hi", { api = "responses", messages = {} } })
    assert.is_false(ok)
    assert.matches("every request of a batch must go to the same API %(request 2 goes to /responses", msg)
    assert.equal(0, #m:requests())
  end)
end)
