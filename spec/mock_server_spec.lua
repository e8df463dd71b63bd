-- The mock server (tools/mock): started on port 0 and driven with the curl command-line
-- tool, so these checks do not depend on the client library.
local cjson = require "cjson"
local V = require("support.version")

local BIN = os.getenv("LLM_MOCK_BIN") or "build/llm-mock"
local ROOT = os.getenv("LLM_ROOT") or "."
local FIXTURES = os.getenv("LLM_FIXTURES") or (ROOT .. "/../shared/fixtures")

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local read_file = require("support.fixtures").read

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. sh_quote(tmp)))
local port, pid

-- curl without LD_PRELOAD (an ASan preload makes the curl CLI hang), always time-bounded.
local CURL = "env -u LD_PRELOAD curl -s -S --max-time 10"

-- One request. opts: method, path, headers {name = value}, body (string). Returns
-- { status, reason, headers = { {name, value}, ... } in wire order, body, rc }.
local function request(opts)
  local args = { CURL, "-o", sh_quote(tmp .. "/body"), "-D", sh_quote(tmp .. "/head") }
  if opts.method then args[#args + 1] = "-X " .. opts.method end
  for k, v in pairs(opts.headers or {}) do args[#args + 1] = "-H " .. sh_quote(k .. ": " .. v) end
  if opts.body then
    write_file(tmp .. "/req", opts.body)
    args[#args + 1] = "--data-binary @" .. sh_quote(tmp .. "/req")
    args[#args + 1] = "-H 'content-type: application/json'"
  end
  args[#args + 1] = sh_quote("http://127.0.0.1:" .. port .. (opts.path or "/"))
  os.remove(tmp .. "/body")
  os.remove(tmp .. "/head")
  local ok, _, rc = V.execute(table.concat(args, " ") .. " 2>/dev/null")
  local head = read_file(tmp .. "/head") or ""
  local res = { rc = ok and 0 or rc, body = read_file(tmp .. "/body") or "", headers = {} }
  -- Skip any interim 100 Continue block: the last status line wins.
  for line in head:gmatch("([^\r\n]*)\r\n") do
    local st, reason = line:match("^HTTP/1%.%d (%d+) ?(.*)$")
    if st then
      res.status, res.reason, res.headers = tonumber(st), reason, {}
    elseif line ~= "" then
      local n, v = line:match("^([^:]+):%s*(.-)%s*$")
      if n then res.headers[#res.headers + 1] = { n, v } end
    end
  end
  return res
end

local function header(res, name)
  for _, h in ipairs(res.headers) do
    if h[1]:lower() == name then return h[2] end
  end
  return nil
end

local function get_json(path)
  local r = request { path = path }
  assert.are.equal(200, r.status)
  return cjson.decode(r.body)
end

-- WHATWG-style SSE split: blank-line separated blocks of `field: value` lines.
local function sse_events(body)
  local events = {}
  local norm = body:gsub("\r\n", "\n")
  for block in (norm .. "\n\n"):gmatch("(.-)\n\n") do
    local ev = { data = {} }
    local has = false
    for line in (block .. "\n"):gmatch("(.-)\n") do
      local f, v = line:match("^([^:]*): ?(.*)$")
      if f == "event" then ev.name = v
      elseif f == "data" then ev.data[#ev.data + 1] = v; has = true end
    end
    if has then
      ev.data = table.concat(ev.data, "\n")
      events[#events + 1] = ev
    end
  end
  return events
end

local function event_names(body)
  local names = {}
  for _, ev in ipairs(sse_events(body)) do if ev.name then names[ev.name] = true end end
  return names
end

local ANTHROPIC = { ["x-api-key"] = "test-key", ["anthropic-version"] = "2023-06-01" }
local function with(base, extra)
  local t = {}
  for k, v in pairs(base or {}) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local function chat_body(stream, extra)
  local t = { model = "gpt-4o-mini", messages = { { role = "user", content = "Hello mock" } }, stream = stream }
  for k, v in pairs(extra or {}) do t[k] = v end
  return cjson.encode(t)
end

describe("llm-mock", function()
  setup(function()
    assert(exists(BIN), "mock server binary not found at " .. BIN .. " (set LLM_MOCK_BIN)")
    local pf = tmp .. "/port"
    assert(os.execute("env -u LD_PRELOAD " .. sh_quote(BIN) .. " --port 0 --quiet --port-file "
      .. sh_quote(pf) .. " --fixtures " .. sh_quote(FIXTURES) .. " >" .. sh_quote(tmp .. "/out")
      .. " 2>&1 & echo $! > " .. sh_quote(tmp .. "/pid")))
    pid = tonumber(read_file(tmp .. "/pid"))
    for _ = 1, 200 do -- bounded by a counter: 200 polls of 50 ms
      local p = read_file(pf)
      if p and tonumber(p) then port = tonumber(p) break end
      os.execute("sleep 0.05")
    end
    assert(port, "mock server did not write its port file")
  end)

  teardown(function()
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    os.execute("rm -rf " .. sh_quote(tmp))
  end)

  before_each(function()
    assert.are.equal(200, request { method = "POST", path = "/__mock/reset" }.status)
  end)

  it("announces its port and answers health", function()
    assert.truthy((read_file(tmp .. "/out") or ""):find("llm-mock listening on 127.0.0.1:" .. port, 1, true))
    local r = request { path = "/__mock/health" }
    assert.are.equal(200, r.status)
  end)

  describe("echo mode", function()
    it("OpenAI chat, non-stream", function()
      local r = request { path = "/v1/chat/completions", body = chat_body(false) }
      assert.are.equal(200, r.status)
      local j = cjson.decode(r.body)
      assert.are.equal("chat.completion", j.object)
      assert.are.equal("echo: Hello mock", j.choices[1].message.content)
      assert.are.equal("stop", j.choices[1].finish_reason)
      assert.are.equal(j.usage.prompt_tokens + j.usage.completion_tokens, j.usage.total_tokens)
      assert.truthy(header(r, "x-request-id"))
    end)

    it("OpenAI chat, stream with usage", function()
      local r = request { path = "/chat/completions",
                          body = chat_body(true, { stream_options = { include_usage = true } }) }
      assert.are.equal(200, r.status)
      assert.truthy(r.body:sub(-14) == "data: [DONE]\n\n")
      local text, finish, usage = {}, nil, nil
      for _, ev in ipairs(sse_events(r.body)) do
        if ev.data ~= "[DONE]" then
          local j = cjson.decode(ev.data)
          if #j.choices == 0 then usage = j.usage
          else
            text[#text + 1] = j.choices[1].delta.content or ""
            if j.choices[1].finish_reason ~= cjson.null then finish = j.choices[1].finish_reason end
          end
        end
      end
      assert.are.equal("echo: Hello mock", table.concat(text))
      assert.are.equal("stop", finish)
      assert.truthy(usage and usage.total_tokens > 0)
    end)

    it("OpenAI chat, streamed parallel tool calls from a script", function()
      local r = request { path = "/v1/chat/completions", body = chat_body(true),
                          headers = { ["x-mock-script"] = "weather", ["x-mock-key"] = "chat-tools" } }
      local calls, finish = {}, nil
      for _, ev in ipairs(sse_events(r.body)) do
        if ev.data ~= "[DONE]" then
          local c = cjson.decode(ev.data).choices[1]
          for _, tc in ipairs(c.delta.tool_calls or {}) do
            local call = calls[tc.index + 1] or { args = {} }
            calls[tc.index + 1] = call
            if tc.id then call.id, call.name = tc.id, tc["function"].name end
            call.args[#call.args + 1] = tc["function"].arguments
          end
          if c.finish_reason ~= cjson.null then finish = c.finish_reason end
        end
      end
      assert.are.equal(2, #calls)
      assert.are.equal("get_weather", calls[1].name)
      assert.are.equal("Tokyo", cjson.decode(table.concat(calls[2].args)).city)
      assert.are.equal("tool_calls", finish)
      -- the second request with the same key gets the scripted answer, non-streamed
      local r2 = request { path = "/v1/chat/completions", body = chat_body(false),
                           headers = { ["x-mock-script"] = "weather", ["x-mock-key"] = "chat-tools" } }
      assert.are.equal("It is sunny in Paris and raining in Tokyo.",
                       cjson.decode(r2.body).choices[1].message.content)
    end)

    it("OpenAI Responses, both ways", function()
      local body = cjson.encode { model = "gpt-5", input = "Hi there" }
      local j = cjson.decode(request { path = "/v1/responses", body = body }.body)
      assert.are.equal("response", j.object)
      assert.are.equal("echo: Hi there", j.output[1].content[1].text)
      assert.are.equal(j.usage.input_tokens + j.usage.output_tokens, j.usage.total_tokens)
      local r = request { path = "/v1/responses", body = cjson.encode { model = "gpt-5", input = "Hi there", stream = true } }
      local text, seq, last = {}, -1, nil
      for _, ev in ipairs(sse_events(r.body)) do
        local d = cjson.decode(ev.data)
        assert.are.equal(ev.name, d.type)
        assert.are.equal(seq + 1, d.sequence_number)
        seq = d.sequence_number
        if d.type == "response.output_text.delta" then text[#text + 1] = d.delta end
        last = d
      end
      assert.are.equal("echo: Hi there", table.concat(text))
      assert.are.equal("response.completed", last.type)
      assert.truthy(last.response.usage.output_tokens > 0)
    end)

    it("Anthropic, both ways, and its header checks", function()
      local body = { model = "claude-x", max_tokens = 10, messages = { { role = "user", content = { { type = "text", text = "Yo" } } } } }
      local j = cjson.decode(request { path = "/v1/messages", headers = ANTHROPIC, body = cjson.encode(body) }.body)
      assert.are.equal("message", j.type)
      assert.are.equal("echo: Yo", j.content[1].text)
      assert.are.equal("end_turn", j.stop_reason)
      body.stream = true
      local r = request { path = "/v1/messages", headers = ANTHROPIC, body = cjson.encode(body) }
      local text, names = {}, {}
      for _, ev in ipairs(sse_events(r.body)) do
        local d = cjson.decode(ev.data)
        names[#names + 1] = ev.name
        if d.type == "content_block_delta" then text[#text + 1] = d.delta.text end
      end
      assert.are.equal("echo: Yo", table.concat(text))
      assert.are.equal("message_start", names[1])
      assert.are.equal("message_stop", names[#names])
      local no_key = request { path = "/v1/messages", headers = { ["anthropic-version"] = "2023-06-01" }, body = "{}" }
      assert.are.equal(401, no_key.status)
      assert.are.equal("authentication_error", cjson.decode(no_key.body).error.type)
      local no_version = request { path = "/v1/messages", headers = { ["x-api-key"] = "k" }, body = "{}" }
      assert.are.equal(400, no_version.status)
    end)

    it("Gemini, both ways, and the key rule", function()
      local body = cjson.encode { contents = { { role = "user", parts = { { text = "Bonjour" } } } } }
      local hk = { ["x-goog-api-key"] = "k" }
      local j = cjson.decode(request { path = "/v1beta/models/gemini-2.0-flash:generateContent", headers = hk, body = body }.body)
      assert.are.equal("echo: Bonjour", j.candidates[1].content.parts[1].text)
      assert.are.equal("STOP", j.candidates[1].finishReason)
      assert.truthy(j.usageMetadata.totalTokenCount > 0)
      local r = request { path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", headers = hk, body = body }
      assert.truthy(r.body:find("\r\n\r\n", 1, true))
      assert.falsy(r.body:find("[DONE]", 1, true))
      local text, finish = {}, nil
      for _, ev in ipairs(sse_events(r.body)) do
        local c = cjson.decode(ev.data).candidates[1]
        text[#text + 1] = c.content.parts[1].text or ""
        finish = c.finishReason or finish
      end
      assert.are.equal("echo: Bonjour", table.concat(text))
      assert.are.equal("STOP", finish)
      local bad = request { path = "/v1beta/models/g:generateContent?key=secret", body = body }
      assert.are.equal(400, bad.status)
      assert.truthy(bad.body:find("x-goog-api-key", 1, true))
    end)

    it("Ollama, NDJSON stream by default and one object without", function()
      local body = { model = "llama3", messages = { { role = "user", content = "Hallo" } } }
      local r = request { path = "/api/chat", body = cjson.encode(body) }
      local text, last = {}, nil
      for line in r.body:gmatch("([^\n]+)\n") do
        last = cjson.decode(line)
        text[#text + 1] = last.message.content
      end
      assert.are.equal("echo: Hallo", table.concat(text))
      assert.is_true(last.done)
      assert.are.equal("stop", last.done_reason)
      body.stream = false
      local j = cjson.decode(request { path = "/api/chat", body = cjson.encode(body) }.body)
      assert.are.equal("echo: Hallo", j.message.content)
      assert.is_true(j.done)
    end)

    it("x-mock-text and x-mock-events", function()
      local r = request { path = "/v1/chat/completions", body = chat_body(true),
                          headers = { ["x-mock-text"] = "a b", ["x-mock-events"] = "1000" } }
      local n = 0
      for _, ev in ipairs(sse_events(r.body)) do
        if ev.data ~= "[DONE]" then
          local d = cjson.decode(ev.data).choices[1].delta
          if d.content and d.content ~= "" then n = n + 1 end
        end
      end
      assert.are.equal(1000, n)
    end)
  end)

  describe("fixture replay", function()
    if not (exists(FIXTURES .. "/README.md")) then print("fixtures absent (" .. FIXTURES .. "): replay not checked") end
    if exists(FIXTURES .. "/README.md") then it("sends every fixture body byte for byte with the recorded status and header order", function()
      local list = io.popen("ls -d " .. sh_quote(FIXTURES) .. "/*/ 2>/dev/null")
      local dirs = {}
      for d in list:lines() do dirs[#dirs + 1] = d:match("([^/]+)/$") end
      list:close()
      local DROP = { ["content-encoding"] = true, ["content-length"] = true,
                     ["transfer-encoding"] = true, ["connection"] = true }
      local count = 0
      for _, dir in ipairs(dirs) do
        local files = io.popen("ls " .. sh_quote(FIXTURES .. "/" .. dir))
        for file in files:lines() do
          local name, ext = file:match("^(.-)%.(%a+)$")
          if name and (ext == "sse" or ext == "json") and not name:match("%.expect$") and not name:match("%.headers$") then
            count = count + 1
            local base = FIXTURES .. "/" .. dir .. "/" .. name
            local want = read_file(base .. "." .. ext)
            for _, split in ipairs { false, true } do
              local r = request { path = "/replay", headers = { ["x-mock-fixture"] = dir .. "/" .. name,
                                                                ["x-mock-split"] = split and "random" or nil } }
              assert.are.equal(0, r.rc, dir .. "/" .. name)
              assert.are.equal(#want, #r.body, dir .. "/" .. name)
              assert.is_true(want == r.body, dir .. "/" .. name .. " differs")
              local rec = read_file(base .. ".headers.json")
              if rec then
                rec = cjson.decode(rec)
                assert.are.equal(rec.status, r.status, dir .. "/" .. name)
                local expect, got = {}, {}
                for _, h in ipairs(rec.headers) do
                  if not DROP[h[1]:lower()] then expect[#expect + 1] = h[1] .. ": " .. h[2] end
                end
                for _, h in ipairs(r.headers) do
                  if not DROP[h[1]:lower()] then got[#got + 1] = h[1] .. ": " .. h[2] end
                end
                assert.are.same(expect, got)
              else
                local ex = cjson.decode(read_file(base .. ".expect.json") or "{}")
                local st = (ext == "json" and ex.http_status) or 200
                assert.are.equal(st, r.status, dir .. "/" .. name)
              end
            end
          end
        end
        files:close()
      end
      print(count .. " fixtures at " .. FIXTURES)
      assert.truthy(count > 0)
    end) end

    if exists(FIXTURES .. "/README.md") then it("produces stream shapes of the same event families as the recordings", function()
      local function fixture_names(dir, pattern)
        local names = {}
        local files = io.popen("ls " .. sh_quote(FIXTURES .. "/" .. dir) .. " 2>/dev/null")
        for file in files:lines() do
          if file:match(pattern) then
            for n in pairs(event_names(read_file(FIXTURES .. "/" .. dir .. "/" .. file))) do names[n] = true end
          end
        end
        files:close()
        return names
      end
      -- Anthropic and Responses: every event name the mock sends occurs in a recording.
      local a = fixture_names("anthropic", "%.sse$")
      local r = request { path = "/v1/messages", headers = with(ANTHROPIC, { ["x-mock-script"] = "add", ["x-mock-key"] = "fam" }),
                          body = cjson.encode { model = "c", stream = true, messages = {} } }
      for n in pairs(event_names(r.body)) do assert.is_true(a[n], "anthropic event " .. n) end
      local o = fixture_names("openai_responses", "%.sse$")
      r = request { path = "/v1/responses", headers = { ["x-mock-script"] = "add", ["x-mock-key"] = "fam" },
                    body = cjson.encode { model = "m", stream = true, input = "x" } }
      for n in pairs(event_names(r.body)) do assert.is_true(o[n], "responses event " .. n) end
      -- Chat: no event lines, [DONE] at the end, like the recordings.
      local rec = read_file(FIXTURES .. "/openai_chat/chat_text_stream_no_usage.sse")
      r = request { path = "/v1/chat/completions", body = chat_body(true) }
      assert.are.equal(next(event_names(rec)) == nil, next(event_names(r.body)) == nil)
      assert.are.equal(rec:sub(-14), r.body:sub(-14))
      -- Gemini: CRLF separators, no event lines, no [DONE].
      rec = read_file(FIXTURES .. "/gemini/gemini_text_stream.sse")
      r = request { path = "/v1beta/models/g:streamGenerateContent?alt=sse", headers = { ["x-goog-api-key"] = "k" },
                    body = cjson.encode { contents = { { role = "user", parts = { { text = "x y" } } } } } }
      assert.are.equal(rec:sub(-4), r.body:sub(-4))
      assert.are.equal("\r\n\r\n", r.body:sub(-4))
      assert.is_nil(next(event_names(r.body)))
    end) end
  end)

  describe("faults", function()
    it("follows a sequence by key: two 503s then success", function()
      local h = { ["x-mock-sequence"] = "status=503|status=503|ok", ["x-mock-key"] = "seq-1" }
      local got = {}
      for i = 1, 4 do got[i] = request { path = "/v1/chat/completions", headers = h, body = chat_body(false) }.status end
      assert.are.same({ 503, 503, 200, 200 }, got)
      local other = request { path = "/v1/chat/completions", body = chat_body(false),
                              headers = { ["x-mock-sequence"] = "status=503|status=503|ok", ["x-mock-key"] = "seq-2" } }
      assert.are.equal(503, other.status)
      assert.are.equal("server_error", cjson.decode(other.body).error.type)
    end)

    it("adds retry headers and provider-shaped error bodies", function()
      local r = request { path = "/v1/messages", headers = with(ANTHROPIC, { ["x-mock-fault"] = "status=529;retry-after=1;x-should-retry=false" }), body = "{}" }
      assert.are.equal(529, r.status)
      assert.are.equal("1", header(r, "retry-after"))
      assert.are.equal("false", header(r, "x-should-retry"))
      assert.are.equal("overloaded_error", cjson.decode(r.body).error.type)
      assert.truthy(header(r, "request-id"))
      r = request { path = "/v1beta/models/g:generateContent", headers = { ["x-mock-fault"] = "status=429" }, body = "{}" }
      local e = cjson.decode(r.body).error
      assert.are.equal("RESOURCE_EXHAUSTED", e.status)
      assert.truthy(r.body:find("RetryInfo", 1, true))
      r = request { path = "/v1/chat/completions", headers = { ["x-mock-fault"] = "quota" }, body = "{}" }
      assert.are.equal(429, r.status)
      assert.are.equal("insufficient_quota", cjson.decode(r.body).error.code)
      r = request { path = "/v1/chat/completions", headers = { ["x-mock-fault"] = "html-error" }, body = "{}" }
      assert.are.equal(502, r.status)
      assert.truthy(header(r, "content-type"):find("text/html", 1, true))
    end)

    it("resets the connection after N events", function()
      local r = request { path = "/v1/chat/completions", headers = { ["x-mock-fault"] = "reset-after-events=2" }, body = chat_body(true) }
      assert.are_not.equal(0, r.rc) -- curl reports the reset (56) or the cut-off body (18)
      assert.are.equal(2, #sse_events(r.body))
    end)

    it("truncates, sends malformed JSON, and the in-stream overloaded error", function()
      local r = request { path = "/v1/messages", headers = with(ANTHROPIC, { ["x-mock-fault"] = "truncate" }),
                          body = cjson.encode { stream = true, messages = {} } }
      assert.are.equal(0, r.rc)
      assert.falsy(r.body:find("message_stop", 1, true))
      r = request { path = "/v1/chat/completions", headers = { ["x-mock-fault"] = "malformed-json" }, body = chat_body(true) }
      assert.is_false(pcall(cjson.decode, sse_events(r.body)[2].data))
      r = request { path = "/v1/messages", headers = with(ANTHROPIC, { ["x-mock-fault"] = "overloaded-event" }),
                    body = cjson.encode { stream = true, messages = {} } }
      assert.are.equal(200, r.status)
      local evs = sse_events(r.body)
      assert.are.equal("error", evs[1].name)
      assert.are.equal("overloaded_error", cjson.decode(evs[1].data).error.type)
    end)
  end)

  describe("control endpoints", function()
    it("counts peak simultaneous requests across concurrent curls", function()
      local cmd = {}
      for i = 1, 5 do
        cmd[#cmd + 1] = CURL .. " -o /dev/null -H 'x-mock-delay-ms: 100' -H 'x-mock-events: 12' -d "
          .. sh_quote(chat_body(true)) .. " http://127.0.0.1:" .. port .. "/v1/chat/completions?i=" .. i .. " &"
      end
      cmd[#cmd + 1] = "wait"
      assert(os.execute(table.concat(cmd, "\n")))
      local s = get_json("/__mock/stats")
      assert.are.equal(5, s.requests)
      assert.are.equal(5, s.peak_active)
      assert.are.equal(0, s.active)
      assert.truthy(s.connections >= 5)
    end)

    it("logs requests since the last reset, not control requests", function()
      request { method = "POST", path = "/v1/chat/completions?x=1",
                headers = { ["x-custom"] = "yes" }, body = chat_body(false) }
      get_json("/__mock/stats")
      local log = get_json("/__mock/requests")
      assert.are.equal(1, #log)
      assert.are.equal("POST", log[1].method)
      assert.are.equal("/v1/chat/completions", log[1].path)
      assert.are.equal("x=1", log[1].query)
      assert.are.equal("yes", log[1].headers["x-custom"])
      assert.are.equal(chat_body(false), log[1].body)
      assert.truthy(log[1].seq and log[1].conn and log[1].t)
      request { method = "POST", path = "/__mock/reset" }
      assert.are.equal("[]", request { path = "/__mock/requests" }.body)
    end)
  end)
end)
