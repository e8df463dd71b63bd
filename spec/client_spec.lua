-- lua5.1: yes
-- Clients end to end against the mock server: fixtures served byte for byte, the request
-- bodies and headers the server received, errors, retries, timeouts and key redaction.
local mockmod = require("support.mock")
local F = require("support.fixtures")
local json = require("llm.json")
local llm = require("llm")
local clockmod = require("llm.clock")
local V = require("support.version")

local KEY = "sk-test-SECRET-0123456789abcdef"
local mock

setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

local merge = mockmod.merge

local function openai(opts, lib)
  return (lib or llm).client("openai", merge({ model = "gpt-test", base_url = mock.url .. "/v1", api_key = KEY }, opts))
end
local function anthropic(opts, lib)
  return (lib or llm).client("anthropic", merge({ model = "claude-test", base_url = mock.url, api_key = KEY }, opts))
end
local function responses(opts, lib) return openai(merge({ api = "responses" }, opts), lib) end
local function gemini(opts, lib)
  return (lib or llm).client("gemini", merge({ model = "gemini-test", base_url = mock.url .. "/v1beta", api_key = KEY }, opts))
end
local function ollama(opts, lib)
  return (lib or llm).client("ollama", merge({ model = "llama-test", base_url = mock.url }, opts))
end
local MAKERS = { openai = openai, anthropic = anthropic, responses = responses, gemini = gemini, ollama = ollama }

local function bodies()
  local out = {}
  for i, r in ipairs(mock:requests()) do out[i] = assert(json.decode(r.body)) end
  return out
end

local function collect(stream)
  local evs = {}
  for ev in stream:events() do evs[#evs + 1] = ev end
  return evs
end

local unique = 0
local function key()
  unique = unique + 1
  return "k" .. unique .. "-" .. os.time()
end

------------------------------------------------------------------------------------------
describe("every fixture through the client", function()
  local FOLDERS = { { "openai_chat", "openai" }, { "openai_compat", "openai" }, { "anthropic", "anthropic" },
                    { "openai_responses", "responses" }, { "gemini", "gemini" } }
  local dir = F.dir()
  if not dir then
    print("fixtures absent: the client fixture cases are skipped")
    return
  end
  local count = 0
  for _, fp in ipairs(FOLDERS) do
    local folder, provider = fp[1], fp[2]
    for _, name in ipairs(F.list(dir, folder)) do
      local base, ext = name:match("^(.-)%.(%a+)$")
      if (ext == "sse" or ext == "json") and not base:match("%.expect$") and not base:match("%.headers$") then
        count = count + 1
        local exp = F.read_json(dir .. "/" .. folder .. "/" .. base .. ".expect.json")
        local function client()
          return MAKERS[provider]{ max_retries = 0, headers = {
            ["x-mock-fixture"] = folder .. "/" .. base, ["x-mock-split"] = "random" } }
        end
        if ext == "sse" then
          it("streams " .. folder .. "/" .. name .. " (events, final)", function()
            local s, err = client():stream("hi")
            assert.is_nil(err)
            local evs = collect(s)
            local last = table.remove(evs)
            if exp.error then
              assert.equal("error", last.type)
              local resp, ferr = s:final()
              assert.is_nil(resp)
              assert.equal(exp.error.message, ferr.message)
            else
              assert.equal("done", last.type)
              local resp = assert(s:final())
              assert.equal(last.response, resp)
              F.check_response(resp, exp)
              F.check_events(evs, resp, { usage_may_drop = provider == "gemini" })
            end
          end)
        elseif exp.http_status then
          it("maps the error body " .. folder .. "/" .. name, function()
            local resp, err = client():chat("hi")
            assert.is_nil(resp)
            assert.is_true(llm.is_error(err))
            assert.equal(exp.http_status, err.status)
            assert.equal(exp.error.message, err.message)
            assert.equal(1, #mock:requests())
          end)
        else
          it("decodes " .. folder .. "/" .. name .. " through chat", function()
            local resp = assert(client():chat("hi"))
            F.check_response(resp, exp)
            assert.equal(200, resp.status)
          end)
        end
      end
    end
  end
  print(count .. " fixtures at " .. dir .. " through the client")
end)

------------------------------------------------------------------------------------------
describe("requests the server receives", function()
  local tool = { name = "get_weather", description = "Weather", strict = true,
                 parameters = { type = "object", properties = { city = { type = "string" } }, required = { "city" } },
                 run = function() end }

  it("openai: auth header, mapped options, tools and stream_options", function()
    local c = openai{ headers = { ["x-extra"] = "1" } }
    assert(c:chat{
      system = "Be brief.",
      messages = { { role = "user", content = { { type = "text", text = "look" },
                                                 { type = "image", url = "https://example.invalid/cat.png" } } } },
      max_tokens = 50, temperature = 0.2, stop = { "\n\n" }, tools = { tool }, tool_choice = "required",
      response_format = { type = "json_schema", name = "out", schema = { type = "object" } },
      extra = { seed = 7 },
    })
    local r = mock:requests()[1]
    assert.equal("/v1/chat/completions", r.path)
    assert.equal("Bearer " .. KEY, r.headers["authorization"])
    assert.equal("1", r.headers["x-extra"])
    local b = json.decode(r.body)
    assert.equal("gpt-test", b.model)
    assert.equal("system", b.messages[1].role)
    assert.equal("Be brief.", b.messages[1].content)
    assert.equal("image_url", b.messages[2].content[2].type)
    assert.equal(50, b.max_completion_tokens)
    assert.equal(0.2, b.temperature)
    assert.same({ "\n\n" }, b.stop)
    assert.equal("get_weather", b.tools[1]["function"].name)
    assert.is_true(b.tools[1]["function"].strict)
    assert.equal("required", b.tool_choice)
    assert.equal("json_schema", b.response_format.type)
    assert.equal(7, b.seed)
    assert.is_nil(b.stream)

    mock:reset()
    assert(c:stream("hi")):final()
    b = bodies()[1]
    assert.is_true(b.stream)
    assert.is_true(b.stream_options.include_usage)
  end)

  it("anthropic: x-api-key, anthropic-version, system hoisting, default max_tokens, tool results", function()
    local c = anthropic()
    assert(c:chat{
      system = "Be brief.",
      messages = {
        { role = "user", content = "weather?" },
        { role = "assistant", content = "", tool_calls = { { id = "toolu_1", name = "get_weather", arguments = { city = "Seoul" } } } },
        { role = "tool", tool_call_id = "toolu_1", name = "get_weather", content = "21C" },
        { role = "tool", tool_call_id = "toolu_2", name = "get_weather", content = "bad", is_error = true },
      },
      tools = { tool },
    })
    local r = mock:requests()[1]
    assert.equal("/v1/messages", r.path)
    assert.equal(KEY, r.headers["x-api-key"])
    assert.equal("2023-06-01", r.headers["anthropic-version"])
    assert.is_nil(r.headers["authorization"])
    local b = json.decode(r.body)
    assert.equal("Be brief.", b.system)
    assert.equal(4096, b.max_tokens)
    assert.equal("tool_use", b.messages[2].content[1].type)
    assert.same({ city = "Seoul" }, b.messages[2].content[1].input)
    assert.equal("user", b.messages[3].role)
    assert.equal(2, #b.messages[3].content)           -- consecutive results in one user turn
    assert.equal("tool_result", b.messages[3].content[1].type)
    assert.is_true(b.messages[3].content[2].is_error)
    assert.equal("get_weather", b.tools[1].name)
    assert.equal("object", b.tools[1].input_schema.type)
  end)

  it("a hand-built history with thinking (signature) and tool calls is sent as Anthropic blocks", function()
    local history = {
      { role = "user", content = "weather?" },
      { role = "assistant", content = {
          { type = "reasoning", text = "I should look it up.", provider_data = { provider = "anthropic", signature = "sig-abc" } },
          { type = "text", text = "Checking." } },
        tool_calls = { { id = "toolu_9", name = "get_weather", arguments = { city = "Seoul" }, arguments_json = '{"city":"Seoul"}' } } },
      { role = "tool", tool_call_id = "toolu_9", name = "get_weather", content = "21C" },
    }
    assert(anthropic():chat{ messages = history })
    local m = bodies()[1].messages[2].content
    assert.same({ type = "thinking", thinking = "I should look it up.", signature = "sig-abc" }, m[1])
    assert.equal("text", m[2].type)
    assert.equal("tool_use", m[3].type)
    assert.equal("toolu_9", m[3].id)
  end)

  if F.dir() then it("a history with tool calls and thinking blocks (with signatures) is sent back unchanged", function()
    local c = anthropic{ headers = { ["x-mock-fixture"] = "anthropic/anthropic_thinking_stream" } }
    local first = assert(assert(c:stream("think")):final())
    local thinking
    for _, part in ipairs(type(first.message.content) == "table" and first.message.content or {}) do
      if part.type == "reasoning" then thinking = part end
    end
    assert.is_not_nil(thinking, "the reply keeps its thinking part")
    local history = { { role = "user", content = "think" }, first.message,
                      { role = "user", content = "and now?" } }
    mock:reset()
    local c2 = anthropic()
    assert(c2:chat{ messages = history })
    local b = bodies()[1]
    local block = b.messages[2].content[1]
    assert.equal("thinking", block.type)
    assert.equal(thinking.text, block.thinking)
    assert.equal(thinking.provider_data.signature, block.signature)
    -- the same history goes to OpenAI without the opaque parts
    mock:reset()
    assert(openai():chat{ messages = history })
    local ob = bodies()[1]
    assert.equal("assistant", ob.messages[2].role)
    assert.is_nil(tostring(ob.messages[2].content):find(thinking.provider_data.signature, 1, true))
  end) end
end)

------------------------------------------------------------------------------------------
describe("errors", function()
  local STATUSES = { [400] = "bad_request", [401] = "auth", [403] = "permission", [404] = "not_found",
    [413] = "bad_request", [422] = "bad_request", [429] = "rate_limit", [500] = "server",
    [503] = "server", [529] = "overloaded" }
  for _, provider in ipairs({ "openai", "anthropic" }) do
    for status, kind in pairs(STATUSES) do
      it(provider .. " " .. status .. " is " .. kind, function()
        local c = MAKERS[provider]{ max_retries = 0,
          headers = { ["x-mock-fault"] = "status=" .. status .. ";retry-after=3" } }
        local resp, err = c:chat("hi")
        assert.is_nil(resp)
        assert.equal(kind, err.kind)
        assert.equal(status, err.status)
        assert.is_string(err.message)
        assert.is_true(#err.message > 0)
        assert.equal(3, err.retry_after)
        assert.is_string(err.request_id)
        assert.is_table(err.body)
        assert.matches(kind, tostring(err))
      end)
    end
  end

  it("quota: insufficient_quota (429) and Anthropic billing (402) are not retryable", function()
    local _, e1 = openai{ max_retries = 0, headers = { ["x-mock-fault"] = "quota" } }:chat("hi")
    assert.equal("quota", e1.kind)
    assert.is_false(e1.retryable)
    local _, e2 = anthropic{ max_retries = 0, headers = { ["x-mock-fault"] = "quota" } }:chat("hi")
    assert.equal("quota", e2.kind)
  end)

  it("an HTML error page is a server error with a clear message", function()
    local _, err = openai{ max_retries = 0, headers = { ["x-mock-fault"] = "html-error" } }:chat("hi")
    assert.equal(502, err.status)
    assert.equal("server", err.kind)
  end)

  it("a client error raises for programming errors, returns nil, err for operational ones", function()
    assert.has_error(function() llm.client("nope", {}) end)
    assert.has_error(function() openai{ model = false }:chat("x") end)
    assert.has_error(function() llm.client("openai", { base_url = mock.url, api_key = nil, model = "m" }) end)
  end)

  local function stream_fails(c, what)
    local s = assert(c:stream("one two three four five six"))
    local evs = collect(s)
    local last = evs[#evs]
    assert.equal("error", last.type, what)
    local resp, err = s:final()
    assert.is_nil(resp)
    assert.is_true(llm.is_error(err))
    return err, evs
  end

  it("a stream cut mid-way ends in an error event, never a short text", function()
    local err, evs = stream_fails(openai{ max_retries = 0, headers = { ["x-mock-fault"] = "reset-after-events=3" } }, "reset")
    assert.equal("connection", err.kind)
    local n = 0
    for _, e in ipairs(evs) do if e.type == "text" then n = n + 1 end end
    assert.is_true(n >= 1)
  end)

  it("a stream ending without its terminal event is an error", function()
    local err = stream_fails(openai{ max_retries = 0, headers = { ["x-mock-fault"] = "truncate" } }, "openai")
    assert.equal("protocol", err.kind)
    err = stream_fails(anthropic{ max_retries = 0, headers = { ["x-mock-fault"] = "truncate" } }, "anthropic")
    assert.equal("protocol", err.kind)
  end)

  it("an error event after content ends the stream with that error", function()
    local err = stream_fails(anthropic{ max_retries = 2, headers = { ["x-mock-fault"] = "error-after-events=4" } }, "event")
    assert.equal("overloaded", err.kind)
    assert.is_nil(err.status)
    assert.equal(1, #mock:requests())    -- content was shown: never retried
  end)

  it("malformed JSON in a stream is a protocol error", function()
    local s = assert(openai{ max_retries = 0, headers = { ["x-mock-fault"] = "malformed-json" } }:stream("a b c"))
    local _, err = s:final()
    assert.equal("protocol", err.kind)
  end)

  it("no API key appears in any error, tostring, log line or traceback", function()
    local lines = {}
    llm.configure{ log = function(_, msg) lines[#lines + 1] = msg end }
    local c = openai{ max_retries = 1, headers = { ["x-mock-fault"] = "status=401" } }
    local _, err = c:chat("hi")
    local ok, tb = xpcall(function() error(err) end, debug.traceback)
    assert.is_false(ok)
    local s = assert(openai{ max_retries = 0, headers = { ["x-mock-fault"] = "reset-after-events=2" } }:stream("x y z"))
    local _, serr = s:final()
    llm.configure{ log = false }
    local texts = { tostring(err), tostring(c), tostring(tb), tostring(serr), err.message,
                    json.encode(err.body), table.concat(lines, "\n") }
    assert.is_true(#lines > 0)
    for _, t in ipairs(texts) do
      assert.is_nil(t:find(KEY, 1, true), "key leaked in: " .. t:sub(1, 200))
    end
    -- a server that echoes the key back in its error body
    local _, e2 = openai{ max_retries = 0, headers = { ["x-mock-fault"] = "status=400",
                                                       ["x-mock-error-message"] = "bad key " .. KEY } }:chat("hi")
    assert.equal("bad key [REDACTED]", e2.message)     -- the server did echo it
    assert.is_nil(tostring(e2):find(KEY, 1, true))
    assert.is_nil(json.encode(e2.body):find(KEY, 1, true))
  end)
end)

------------------------------------------------------------------------------------------
describe("built-in retries", function()
  it("two 503s then success makes exactly 3 requests", function()
    local c = openai{ headers = { ["x-mock-sequence"] = "status=503;retry-after-ms=10|status=503;retry-after-ms=10|ok",
                                  ["x-mock-key"] = key() } }
    local resp = assert(c:chat("hello"))
    assert.equal("echo: hello", resp.text)
    assert.equal(3, #mock:requests())
  end)

  it("gives up after max_retries and returns the last error itself", function()
    local c = openai{ max_retries = 1, headers = { ["x-mock-fault"] = "status=500;retry-after-ms=5" } }
    local _, err = c:chat("x")
    assert.equal("server", err.kind)
    assert.equal(2, #mock:requests())
  end)

  it("a 429 with retry-after: 1 waits one second on the (fake) clock", function()
    local clock = clockmod.fake(0)
    local lib = llm.new{ clock = clock }
    local c = openai({ headers = { ["x-mock-sequence"] = "status=429;retry-after=1|ok", ["x-mock-key"] = key() } }, lib)
    assert(c:chat("hi"))
    assert.equal(1, clock:now())
    assert.equal(2, #mock:requests())
  end)

  it("a 429 with retry-after: 1 is re-sent no sooner than one second later (server timestamps)", function()
    local c = openai{ headers = { ["x-mock-sequence"] = "status=429;retry-after=1|ok", ["x-mock-key"] = key() } }
    assert(c:chat("hi"))
    local reqs = mock:requests()
    assert.equal(2, #reqs)
    assert.is_true(reqs[2].t - reqs[1].t >= 0.99)
  end)

  it("backoff without retry-after follows 0.5 s, 1 s with 75-100 % jitter (fake clock)", function()
    local clock = clockmod.fake(0)
    local lib = llm.new{ clock = clock }
    local c = openai({ max_retries = 2, headers = { ["x-mock-fault"] = "status=503" } }, lib)
    c:chat("x")
    assert.is_true(clock:now() >= 0.75 * 1.5 and clock:now() <= 1.5)
    assert.equal(3, #mock:requests())
  end)

  it("400 is not retried", function()
    openai{ headers = { ["x-mock-fault"] = "status=400" } }:chat("x")
    assert.equal(1, #mock:requests())
  end)

  it("x-should-retry: false stops retries, true makes any status retryable", function()
    openai{ headers = { ["x-mock-fault"] = "status=503;x-should-retry=false" } }:chat("x")
    assert.equal(1, #mock:requests())
    mock:reset()
    openai{ max_retries = 1, headers = { ["x-mock-fault"] = "status=400;x-should-retry=true;retry-after-ms=5" } }:chat("x")
    assert.equal(2, #mock:requests())
  end)

  it("an insufficient_quota 429 is not retried", function()
    local _, err = openai{ headers = { ["x-mock-fault"] = "quota" } }:chat("x")
    assert.equal("quota", err.kind)
    assert.equal(1, #mock:requests())
  end)

  it("a server asking for more than 60 s is not waited for", function()
    local clock = clockmod.fake(0)
    local lib = llm.new{ clock = clock }
    local _, err = openai({ headers = { ["x-mock-fault"] = "status=429;retry-after=120" } }, lib):chat("x")
    assert.equal("rate_limit", err.kind)
    assert.equal(120, err.retry_after)
    assert.equal(0, clock:now())
    assert.equal(1, #mock:requests())
  end)

  it("an Anthropic stream whose first event is overloaded_error is retried; the user sees only the second", function()
    local c = anthropic{ headers = { ["x-mock-sequence"] = "overloaded-event|ok", ["x-mock-key"] = key(),
                                     ["x-mock-text"] = "second try" } }
    local s = assert(c:stream("hi"))
    local evs = collect(s)
    local text = {}
    for _, e in ipairs(evs) do
      assert.is_not.equal("error", e.type)
      if e.type == "text" then text[#text + 1] = e.text end
    end
    assert.equal("second try", table.concat(text))
    assert.equal(2, #mock:requests())
  end)

  it("a stream is retried after a connection reset before any content", function()
    local c = openai{ headers = { ["x-mock-sequence"] = "reset-after-events=0|ok", ["x-mock-key"] = key() } }
    local resp = assert(assert(c:stream("again")):final())
    assert.equal("echo: again", resp.text)
    assert.equal(2, #mock:requests())
  end)

  it("retry = policy replaces the built-in policy", function()
    local R = llm.retry
    local seen = 0
    local policy = R.policy{ stop = R.stop_after_attempt(4), wait = R.wait_fixed(0.01),
                             before_sleep = function() seen = seen + 1 end }
    local c = openai{ retry = policy, headers = { ["x-mock-fault"] = "status=503" } }
    local _, err = c:chat("x")
    assert.equal("retry", err.kind)
    assert.equal(4, err.attempts)
    assert.equal("server", err.last.kind)
    assert.equal(4, #mock:requests())
    assert.equal(3, seen)
  end)
end)

------------------------------------------------------------------------------------------
describe("timeouts", function()
  it("content then only pings and comments trips idle_timeout", function()
    local c = anthropic{ max_retries = 0, idle_timeout = 0.3,
                         headers = { ["x-mock-fault"] = "stall-after-events=4;pings=5" } }
    local s = assert(c:stream("a b c d e f"))
    local _, err = s:final()
    assert.equal("timeout", err.kind)
    assert.equal("idle", err.which)
    local c2 = openai{ max_retries = 0, idle_timeout = 0.3,
                       headers = { ["x-mock-fault"] = "stall-after-events=3;pings=5" } }
    local _, err2 = assert(c2:stream("a b c d e f")):final()
    assert.equal("idle", err2.which)
  end)

  it("pings alone trip first_token_timeout, delivered as the stream's error event", function()
    local c = anthropic{ max_retries = 0, first_token_timeout = 0.3, headers = { ["x-mock-fault"] = "pings=3" } }
    local s = assert(c:stream("hi"))
    local evs = collect(s)
    assert.equal(1, #evs)
    assert.equal("error", evs[1].type)
    local _, err = s:final()
    assert.equal("timeout", err.kind)
    assert.equal("first_token", err.which)
  end)

  it("a retryable failure before content is retried, then delivered as an error event", function()
    local c = anthropic{ max_retries = 1, headers = { ["x-mock-fault"] = "overloaded-event" } }
    local s = assert(c:stream("hi"))
    local evs = collect(s)
    assert.equal("error", evs[#evs].type)
    assert.equal("overloaded", evs[#evs].error.kind)
    assert.equal(2, #mock:requests())
  end)

  it("a server that stalls before headers trips timeout (stream and chat)", function()
    local c = openai{ max_retries = 0, timeout = 0.3, headers = { ["x-mock-fault"] = "stall-before-headers" } }
    local s, err = c:stream("hi")
    assert.is_nil(s)
    assert.equal("timeout", err.kind)
    local r, err2 = c:chat("hi")
    assert.is_nil(r)
    assert.equal("timeout", err2.kind)
  end)
end)

------------------------------------------------------------------------------------------
describe("stream API", function()
  it("text() gives deltas; final() after events() returns the same response", function()
    local s = assert(anthropic{ headers = { ["x-mock-text"] = "one two three" } }:stream("x"))
    local parts = {}
    for t in s:text() do parts[#parts + 1] = t end
    assert.equal("one two three", table.concat(parts))
    local resp = assert(s:final())
    assert.equal("one two three", resp.text)
  end)

  it("text() raises the error object when the stream fails", function()
    local s = assert(openai{ max_retries = 0, headers = { ["x-mock-fault"] = "truncate" } }:stream("a b"))
    local ok, err = pcall(function() for _ in s:text() do end end)
    assert.is_false(ok)
    assert.is_true(llm.is_error(err))
  end)

  it("close() cancels early and frees the connection", function()
    local s = assert(openai{ headers = { ["x-mock-fault"] = "stall-after-events=2" } }:stream("x"))
    s:close()
    local _, err = s:final()
    assert.equal("cancelled", err.kind)
    collectgarbage(); collectgarbage()
    assert.equal(0, llm.loop:stats().transfers)
  end)

  it("client:request sends a raw authenticated call and returns body, meta", function()
    local body, meta = openai():request("POST", "/chat/completions",
      { model = "gpt-test", messages = { { role = "user", content = "raw" } } })
    assert.equal("chat.completion", body.object)
    assert.equal(200, meta.status)
    assert.is_string(meta.headers["content-type"])
    local raw = openai():request("POST", "/chat/completions",
      { model = "gpt-test", messages = { { role = "user", content = "raw" } } }, { raw = true })
    assert.is_string(raw)
    assert.equal("Bearer " .. KEY, mock:requests()[1].headers["authorization"])
  end)

  it("success metadata: status, lower-case headers and request id", function()
    local resp = assert(openai():chat("x"))
    assert.equal(200, resp.status)
    assert.is_table(resp.headers)
  end)

  it("providers derived with base = \"openai\" and llm.configure defaults", function()
    llm.providers.mylocal = { base = "openai", base_url = mock.url .. "/v1", api_key_env = "LLM_NO_SUCH_KEY" }
    local c = llm.client("mylocal", { model = "m", api_key = false })
    assert.equal("echo: via derived", assert(c:chat("via derived")).text)
    assert.is_nil(mock:requests()[1].headers["authorization"])
    llm.configure{ defaults = { provider = "mylocal", model = "m2", api_key = false } }
    local d = llm.client()
    assert(d:chat("x"))
    assert.equal("m2", json.decode(mock:requests()[2].body).model)
  end)

  it("llm.configure reads providers and defaults from a Lua file", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(([[return {
      providers = { filed = { base = "openai", base_url = %q, api_key_env = "LLM_NO_SUCH_KEY" } },
      defaults = { provider = "filed", model = "from-file", api_key = false },
    }]]):format(mock.url .. "/v1"))
    f:close()
    local lib = llm.new()
    lib.configure(path)
    os.remove(path)
    assert(lib.client():chat("x"))
    assert.equal("from-file", json.decode(mock:requests()[1].body).model)
  end)

  it("LLM_LOG=debug logs requests and libcurl's text to stderr, redacted", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
      local llm = require("llm")
      local c = llm.client("openai", { model = "m", base_url = %q, api_key = %q })
      assert(c:chat("logged"))
    ]]):format(mock.url .. "/v1", KEY))
    f:close()
    local root = os.getenv("LLM_ROOT") or "."
    local build = os.getenv("LLM_BUILD") or (root .. "/build")
    local p = io.popen(("cd %s && LLM_LOG=debug LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='%s/?.so;;' %s %s 2>&1")
      :format(root, build, V.lua, script))
    local out = p:read("*a")
    p:close()
    os.remove(script)
    assert.matches("llm debug: POST .*/v1/chat/completions %-> 200", out)
    assert.matches("llm debug: curl: ", out)            -- libcurl's verbose text, through the same sink
    assert.matches("%[REDACTED%]", out)                 -- the Authorization header it printed
    assert.is_nil(out:find(KEY, 1, true))
  end)

  it("tasks: many chats at once under llm.run #tasks", function()
    local c = openai{ headers = { ["x-mock-delay-ms"] = "5" } }
    local results = llm.run(function()
      local prompts = {}
      for i = 1, 20 do prompts[i] = "p" .. i end
      return llm.map(prompts, function(p) return c:chat(p) end, { concurrency = 10 })
    end)
    for i = 1, 20 do assert.equal("echo: p" .. i, results[i].text) end
  end)
end)

------------------------------------------------------------------------------------------
describe("proxy", function()
  it("sends requests through the configured HTTP proxy", function()
    -- api.example.invalid never resolves: only the proxy (the mock) can answer.
    local c = llm.client("openai", { model = "m", api_key = KEY, base_url = "http://api.example.invalid/v1",
                                     proxy = mock.url, max_retries = 0 })
    assert.equal("echo: proxied", assert(c:chat("proxied")).text)
    local r = mock:requests()[1]
    assert.equal("api.example.invalid", r.proxied_host)
    assert.equal("/v1/chat/completions", r.path)
  end)
end)

------------------------------------------------------------------------------------------
describe("redirects", function()
  it("are followed within the same origin, with the credentials", function()
    local c = openai{ headers = { ["x-mock-sequence"] = "redirect=/v1/chat/completions|ok", ["x-mock-key"] = key() } }
    assert.equal("echo: moved", assert(c:chat("moved")).text)
    local reqs = mock:requests()
    assert.equal(2, #reqs)
    assert.equal("Bearer " .. KEY, reqs[2].headers["authorization"])
    mock:reset()
    local s = assert(openai{ headers = { ["x-mock-sequence"] = "redirect=" .. mock.url .. "/v1/chat/completions|ok",
                                         ["x-mock-key"] = key() } }:stream("streamed"))
    assert.equal("echo: streamed", assert(s:final()).text)
  end)

  it("to another origin are refused and nothing is sent there", function()
    local other = mockmod.start()
    local c = openai{ max_retries = 0, headers = { ["x-mock-fault"] = "redirect=" .. other.url .. "/v1/chat/completions" } }
    local resp, err = c:chat("x")
    local received = #other:requests()
    other:stop()
    assert.is_nil(resp)
    assert.equal("protocol", err.kind)
    assert.matches("another origin", err.message)
    assert.equal(0, received)
  end)

  it("stop after five", function()
    local _, err = openai{ max_retries = 0, headers = { ["x-mock-fault"] = "redirect=/v1/chat/completions" } }:chat("x")
    assert.equal("protocol", err.kind)
    assert.matches("too many redirects", err.message)
    assert.equal(6, #mock:requests())
  end)
end)
