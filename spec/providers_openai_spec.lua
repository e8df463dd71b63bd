-- lua5.1: yes
local json = require("llm.json")
local P = require("llm.providers.openai")
local F = require("support.fixtures")
local S = require("support.providers")

local function wire(req) return S.wire(P, req) end

local function sse(obj) return { data = type(obj) == "string" and obj or json.encode(obj) } end

local function run(events, req) return F.run_stream(P, events, req) end

local function chunk(delta, finish, extra)
  local c = { id = "c1", model = "m", choices = { { index = 0, delta = delta or json.object(),
                                                     finish_reason = finish or json.null } } }
  for k, v in pairs(extra or {}) do c[k] = v end
  return sse(c)
end

describe("openai provider table", function()
  it("has the contract fields", function()
    assert.are.equal("openai", P.name)
    assert.are.equal("https://api.openai.com/v1", P.base_url)
    assert.are.equal("OPENAI_API_KEY", P.api_key_env)
    assert.are.equal("sse", P.framing)
    assert.are.same({ authorization = "Bearer sk-x" }, P.auth_headers("sk-x"))
  end)

  it("derives OpenAI-compatible providers", function()
    local g = P.derive{ name = "groq", base_url = "https://api.groq.com/openai/v1",
                        api_key_env = "GROQ_API_KEY" }
    assert.are.equal("groq", g.name)
    assert.are.equal("openai", g.base)
    assert.are.equal(P.build_request, g.build_request)
    assert.are.equal("https://api.openai.com/v1", P.base_url) -- original untouched
  end)
end)

describe("openai build_request", function()
  it("maps system, text, max_tokens, temperature, top_p, stop, n", function()
    local body, r = wire{ model = "gpt-4.1-mini", system = "Be brief.",
      messages = { { role = "user", content = "Hello" } }, max_tokens = 200,
      temperature = 0.2, top_p = 0.9, stop = { "\n\n" }, n = 2 }
    assert.are.equal("POST", r.method)
    assert.are.equal("/chat/completions", r.path)
    assert.are.equal("application/json", r.headers["content-type"])
    assert.are.equal("gpt-4.1-mini", body.model)
    assert.is_true(F.same({ { role = "system", content = "Be brief." },
                            { role = "user", content = "Hello" } }, body.messages))
    assert.are.equal(200, body.max_completion_tokens)
    assert.is_nil(body.max_tokens)
    assert.are.equal(0.2, body.temperature)
    assert.are.equal(0.9, body.top_p)
    assert.is_true(F.same({ "\n\n" }, body.stop))
    assert.are.equal(2, body.n)
    assert.is_nil(body.stream)
    assert.is_nil(body.tools)
  end)

  it("a single stop string becomes a list", function()
    local body = wire{ model = "m", messages = {}, stop = "END" }
    assert.is_true(F.same({ "END" }, body.stop))
  end)

  it("keeps an empty messages list as []", function()
    local _, _, text = wire{ model = "m", messages = {} }
    assert.truthy(text:find('"messages":[]', 1, true))
  end)

  it("maps image parts by url and base64", function()
    local body = wire{ model = "m", messages = { { role = "user", content = {
      { type = "text", text = "What is this?" },
      { type = "image", url = "https://x/y.png" },
      { type = "image", data = "AAAA", mime_type = "image/jpeg" } } } } }
    assert.is_true(F.same({
      { type = "text", text = "What is this?" },
      { type = "image_url", image_url = { url = "https://x/y.png" } },
      { type = "image_url", image_url = { url = "data:image/jpeg;base64,AAAA" } },
    }, body.messages[1].content))
  end)

  it("maps function tools with strict, hosted tools unchanged, empty tools left out", function()
    local body, _, text = wire{ model = "m", messages = {}, tools = {
      { name = "get_weather", description = "Weather", strict = true,
        parameters = { type = "object", properties = { city = { type = "string" } },
                       required = { "city" }, additionalProperties = false },
        run = function() end },
      { name = "noargs", description = "No arguments", parameters = { type = "object", properties = {}, required = {} } },
      { type = "web_search_preview", search_context_size = "low" },
    }, parallel_tool_calls = false }
    assert.is_true(F.same({ type = "function", ["function"] = { name = "get_weather",
      description = "Weather", strict = true, parameters = { type = "object",
      properties = { city = { type = "string" } }, required = { "city" },
      additionalProperties = false } } }, body.tools[1]))
    assert.truthy(text:find('"properties":{},"required":[]', 1, true))
    assert.is_true(F.same({ type = "web_search_preview", search_context_size = "low" }, body.tools[3]))
    assert.is_false(body.parallel_tool_calls)
    local b2 = wire{ model = "m", messages = {}, tools = {} }
    assert.is_nil(b2.tools)
  end)

  it("maps tool_choice variants", function()
    assert.are.equal("auto", wire{ model = "m", messages = {}, tool_choice = "auto" }.tool_choice)
    assert.are.equal("none", wire{ model = "m", messages = {}, tool_choice = "none" }.tool_choice)
    assert.are.equal("required", wire{ model = "m", messages = {}, tool_choice = "required" }.tool_choice)
    assert.is_true(F.same({ type = "function", ["function"] = { name = "f" } },
      wire{ model = "m", messages = {}, tool_choice = { name = "f" } }.tool_choice))
  end)

  it("maps response_format, reasoning, stream_options and merges extra last", function()
    local body = wire{ model = "m", messages = {}, stream = true,
      reasoning = { effort = "low" },
      response_format = { type = "json_schema", name = "person",
        schema = { type = "object", properties = { name = { type = "string" } } } },
      extra = { seed = 7, temperature = 1, stream_options = { include_usage = true, x = 1 } },
      temperature = 0.5 }
    assert.is_true(F.same({ type = "json_schema", json_schema = { name = "person",
      schema = { type = "object", properties = { name = { type = "string" } } } } }, body.response_format))
    assert.are.equal("low", body.reasoning_effort)
    assert.is_true(body.stream)
    assert.are.equal(7, body.seed)
    assert.are.equal(1, body.temperature) -- extra wins
    assert.is_true(F.same({ include_usage = true, x = 1 }, body.stream_options))
    local b2 = wire{ model = "m", messages = {}, stream = true }
    assert.is_true(F.same({ include_usage = true }, b2.stream_options))
  end)

  it("maps assistant tool calls and tool results, drops reasoning parts", function()
    local body = wire{ model = "m", messages = {
      { role = "user", content = "Weather?" },
      { role = "assistant", content = {
          { type = "reasoning", text = "think", provider_data = { provider = "anthropic", signature = "s" } },
          { type = "text", text = "" } },
        tool_calls = { { id = "call_1", name = "get_weather", arguments = { city = "Seoul" },
                         arguments_json = '{"city": "Seoul"}' },
                       { id = "call_2", name = "noargs", arguments = json.object(), arguments_json = "" } } },
      { role = "tool", tool_call_id = "call_1", name = "get_weather", content = '{"c":21}' },
      { role = "tool", tool_call_id = "call_2", name = "noargs", content = { ok = true }, is_error = true },
    } }
    local a = body.messages[2]
    assert.are.equal("assistant", a.role)
    assert.is_nil(a.content)
    assert.is_true(F.same({
      { id = "call_1", type = "function", ["function"] = { name = "get_weather", arguments = '{"city": "Seoul"}' } },
      { id = "call_2", type = "function", ["function"] = { name = "noargs", arguments = "{}" } },
    }, a.tool_calls))
    assert.is_true(F.same({ role = "tool", tool_call_id = "call_1", content = '{"c":21}' }, body.messages[3]))
    assert.is_true(F.same({ role = "tool", tool_call_id = "call_2", content = '{"ok":true}' }, body.messages[4]))
  end)

  it("sends a decoded response message back unchanged", function()
    local resp = P.decode_response(assert(json.decode([[{"id":"x","model":"m","choices":[{"index":0,
      "message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_9","type":"function",
      "function":{"name":"f","arguments":"{\"a\":[]}"}}]},"finish_reason":"tool_calls"}]}]])), {})
    local body = wire{ model = "m", messages = { resp.message } }
    assert.are.equal('{"a":[]}', body.messages[1].tool_calls[1]["function"].arguments)
  end)
end)

describe("openai decode_response", function()
  it("decodes n>1 choices, refusal, reasoning, usage and parsed", function()
    local body = assert(json.decode([[{"id":"r1","model":"gpt","choices":[
      {"index":0,"message":{"role":"assistant","content":"{\"a\":1}","refusal":null,"reasoning_content":"hm"},"finish_reason":"stop"},
      {"index":1,"message":{"role":"assistant","content":null,"refusal":"no"},"finish_reason":"content_filter"}],
      "usage":{"prompt_tokens":5,"completion_tokens":7,"completion_tokens_details":{"reasoning_tokens":2}}}]]))
    local r = P.decode_response(body, { response_format = { type = "json_schema" } })
    assert.are.equal('{"a":1}', r.text)
    assert.are.equal("hm", r.reasoning)
    assert.are.equal(2, #r.choices)
    assert.are.equal("content_filter", r.choices[2].finish_reason)
    assert.are.equal("no", r.choices[2].refusal)
    assert.are.same({ input_tokens = 5, output_tokens = 7, total_tokens = 12, reasoning_tokens = 2 }, r.usage)
    assert.are.equal(1, r.parsed.a)
    assert.are.same({}, r.tool_calls)
  end)

  it("keeps invalid tool arguments raw", function()
    local body = assert(json.decode([[{"choices":[{"index":0,"message":{"role":"assistant","tool_calls":[
      {"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\": 1"}},
      {"id":"d","type":"function","function":{"name":"g","arguments":""}}]},"finish_reason":"tool_calls"}]}]]))
    local r = P.decode_response(body, {})
    assert.is_nil(r.tool_calls[1].arguments)
    assert.are.equal('{"a": 1', r.tool_calls[1].arguments_json)
    assert.are.same({}, r.tool_calls[2].arguments)
    assert.are.equal("", r.tool_calls[2].arguments_json)
    assert.are.same({}, r.usage)
  end)
end)

describe("openai streams", function()
  it("orders reasoning, text, tool calls, usage within a record; emits no done", function()
    local _, _, evs = run({
      sse{ id = "c", model = "m", choices = { { index = 0, delta = { role = "assistant",
        reasoning_content = "r", content = "t", tool_calls = { { index = 0, id = "call_1",
        type = "function", ["function"] = { name = "f", arguments = "{}" } } } },
        finish_reason = "tool_calls" } }, usage = { prompt_tokens = 1, completion_tokens = 2 } },
    })
    local types = {}
    for i, e in ipairs(evs) do types[i] = e.type end
    assert.are.same({ "reasoning", "text", "tool_call", "tool_call_done", "usage" }, types)
  end)

  it("handles refusal, [DONE], usage null, and invalid tool JSON", function()
    local resp, err, evs = run({
      chunk({ role = "assistant", refusal = "I can't" }, nil, { usage = json.null }),
      chunk({ tool_calls = { { index = 0, id = "c1", ["function"] = { name = "f", arguments = '{"a":' } } } }),
      chunk(nil, "tool_calls", { usage = json.null }),
      sse{ id = "c1", choices = json.array(), usage = { prompt_tokens = 3, completion_tokens = 4, total_tokens = 7 } },
      sse("[DONE]"),
    })
    assert.is_nil(err)
    assert.are.equal("I can't", resp.refusal)
    assert.is_nil(resp.tool_calls[1].arguments)
    assert.are.equal('{"a":', resp.tool_calls[1].arguments_json)
    assert.are.same({ input_tokens = 3, output_tokens = 4, total_tokens = 7 }, resp.usage)
    assert.are.equal("refusal", evs[1].type)
    assert.are.equal("chat.completion", resp.raw.object)
  end)

  it("is complete without [DONE] after a finish reason", function()
    local resp, err = run({ chunk({ content = "hi" }), chunk(nil, "stop") })
    assert.is_nil(err)
    assert.are.equal("hi", resp.text)
    assert.are.equal("stop", resp.finish_reason)
  end)

  it("fails when the stream ends before a finish reason", function()
    local resp, err = run({ chunk({ content = "hi" }) })
    assert.is_nil(resp)
    assert.are.equal("protocol", err.kind)
  end)

  it("turns bad JSON and in-stream errors into error events", function()
    local resp, err, evs = run({ chunk({ content = "a" }), sse("{not json") })
    assert.is_nil(resp)
    assert.are.equal("protocol", err.kind)
    assert.are.equal("error", evs[#evs].type)
    resp, err, evs = run({ chunk({ content = "a" }),
      sse{ error = { message = "The server had an error", type = "server_error", code = json.null } },
      chunk(nil, "stop") })
    assert.is_nil(resp)
    assert.are.equal("server", err.kind)
    assert.are.equal("The server had an error", err.message)
    assert.is_nil(err.status)
    assert.are.equal("error", evs[2].type)
  end)

  it("keeps n>1 choices apart; events are for choice 0", function()
    local resp, _, evs = run({
      sse{ choices = { { index = 0, delta = { content = "A" }, finish_reason = json.null },
                       { index = 1, delta = { content = "B" }, finish_reason = json.null } } },
      sse{ choices = { { index = 1, delta = json.object(), finish_reason = "length" } } },
      sse{ choices = { { index = 0, delta = json.object(), finish_reason = "stop" } } },
    })
    assert.are.equal("A", resp.text)
    assert.are.equal(2, #resp.choices)
    assert.are.equal("B", resp.choices[2].text)
    assert.are.equal("length", resp.choices[2].finish_reason)
    local texts = {}
    for _, e in ipairs(evs) do if e.type == "text" then texts[#texts + 1] = e.text end end
    assert.are.same({ "A" }, texts)
  end)

  it("decodes a 200,000-event stream", function()
    local state = P.new_stream_state({})
    local ev = chunk({ content = " word" })
    local t0 = os.clock()
    for _ = 1, 200000 do P.decode_event(state, ev) end
    P.decode_event(state, chunk(nil, "stop"))
    local resp = assert(P.finish_stream(state))
    print(("openai decode_event: 200000 events in %.2f s CPU"):format(os.clock() - t0))
    assert.are.equal(200000 * 5, #resp.text)
  end)
end)

describe("openai decode_error", function()
  local function body(msg, typ, code)
    return json.encode({ error = { message = msg, type = typ, param = json.null, code = code or json.null } })
  end
  local cases = {
    { 400, body("Unsupported value", "invalid_request_error", "unsupported_value"), "bad_request" },
    { 401, body("Incorrect API key provided", "invalid_request_error", "invalid_api_key"), "auth" },
    { 403, body("Country not supported", "request_forbidden", "unsupported_country_region_territory"), "permission" },
    { 404, body("The model `x` does not exist", "invalid_request_error", "model_not_found"), "not_found" },
    { 413, body("Request too large", "invalid_request_error"), "bad_request" },
    { 422, body("Unprocessable", "invalid_request_error"), "bad_request" },
    { 429, body("Rate limit reached", "requests", "rate_limit_exceeded"), "rate_limit" },
    { 429, body("You exceeded your current quota", "insufficient_quota", "insufficient_quota"), "quota" },
    { 500, body("The server had an error while processing your request.", "server_error"), "server" },
    { 503, body("The engine is currently overloaded", "server_error"), "server" },
    { 529, body("Overloaded", "server_error"), "overloaded" },
  }
  for _, c in ipairs(cases) do
    it(("HTTP %d -> %s"):format(c[1], c[3]), function()
      local e = S.check_error_case(P, c, { ["x-request-id"] = "req_" .. c[1] })
      assert.are.equal("table", type(e.body))
      assert.is_nil(e.retry_after)
    end)
  end

  -- Registered only when the shared fixtures are there (hand-written bodies are above).
  if not F.dir() then print("fixtures absent: recorded error bodies not checked") end
  if F.dir() then it("reads fixture error bodies where they exist", function()
    local e = S.fixture_error(P, "openai_chat/chat_error_429_rate_limit")
    assert.are.equal("rate_limit", e.kind)
    assert.are.equal("rate_limit_exceeded", e.code)
    assert.are.equal("df4093761753468e57c467fd3774f9ad", e.request_id)
  end) end

  it("gives a clear message for HTML, empty and non-JSON bodies", function()
    local e = P.decode_error(502, {}, "<html><body>Bad gateway</body></html>")
    assert.are.equal("server", e.kind)
    assert.are.equal("HTTP 502 with an HTML body", e.message)
    assert.are.equal("<html><body>Bad gateway</body></html>", e.body)
    assert.are.equal("HTTP 503 with an empty body", P.decode_error(503, {}, "").message)
    assert.are.equal("HTTP 418: teapot", P.decode_error(418, nil, "teapot").message)
    assert.are.equal("bad_request", P.decode_error(418, nil, "teapot").kind)
    assert.are.equal("timeout", P.decode_error(408, nil, "").kind)
    assert.are.equal("quota", P.decode_error(402, nil, "").kind)
    assert.are.equal("bad_request", P.decode_error(409, nil, "").kind)
  end)

  it("reads compatible servers' error shapes", function()
    assert.are.equal("bad model", P.decode_error(400, {}, '{"error":"bad model"}').message)
    assert.are.equal("nope", P.decode_error(400, {}, '{"detail":"nope"}').message)
  end)
end)
