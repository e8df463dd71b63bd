-- lua5.1: yes
local json = require("llm.json")
local P = require("llm.providers.anthropic")
local F = require("support.fixtures")
local S = require("support.providers")

local function wire(req) return S.wire(P, req) end

local function sse(name, obj)
  return { name = name, data = type(obj) == "string" and obj or json.encode(obj) }
end

local function run(events, req) return F.run_stream(P, events, req) end

local START = sse("message_start", { type = "message_start", message = { id = "msg_1", model = "claude",
  role = "assistant", content = json.array(), usage = { input_tokens = 10, output_tokens = 1 } } })

describe("anthropic provider table", function()
  it("has the contract fields", function()
    assert.are.equal("anthropic", P.name)
    assert.are.equal("https://api.anthropic.com", P.base_url)
    assert.are.equal("ANTHROPIC_API_KEY", P.api_key_env)
    assert.is_nil(P.keepalive_events)   -- content is decided by decode_event, not by event names
    assert.are.same({ ["x-api-key"] = "k", ["anthropic-version"] = "2023-06-01" }, P.auth_headers("k"))
  end)
end)

describe("anthropic build_request", function()
  it("defaults max_tokens to 4096 and hoists system messages", function()
    local body, r = wire{ model = "claude", system = "Be brief.", messages = {
      { role = "system", content = "Answer in French." },
      { role = "user", content = "Hello" } } }
    assert.are.equal("/v1/messages", r.path)
    assert.are.equal(4096, body.max_tokens)
    assert.are.equal("Be brief.\n\nAnswer in French.", body.system)
    assert.is_true(F.same({ { role = "user", content = "Hello" } }, body.messages))
  end)

  it("maps max_tokens, temperature, top_p, stop and extra", function()
    local body = wire{ model = "c", messages = {}, max_tokens = 100, temperature = 0.3,
      top_p = 0.8, stop = "END", extra = { metadata = { user_id = "u" }, top_k = 5 } }
    assert.are.equal(100, body.max_tokens)
    assert.are.equal(0.3, body.temperature)
    assert.are.equal(0.8, body.top_p)
    assert.is_true(F.same({ "END" }, body.stop_sequences))
    assert.are.equal(5, body.top_k)
    assert.are.equal("u", body.metadata.user_id)
  end)

  it("maps text and image parts", function()
    local body = wire{ model = "c", messages = { { role = "user", content = {
      { type = "text", text = "What is this?" },
      { type = "image", url = "https://x/y.png" },
      { type = "image", data = "AAAA", mime_type = "image/jpeg" } } } } }
    assert.is_true(F.same({
      { type = "text", text = "What is this?" },
      { type = "image", source = { type = "url", url = "https://x/y.png" } },
      { type = "image", source = { type = "base64", media_type = "image/jpeg", data = "AAAA" } },
    }, body.messages[1].content))
  end)

  it("maps function tools, hosted tools, empty tools and tool_choice variants", function()
    local body, _, text = wire{ model = "c", messages = {}, tools = {
      { name = "get_weather", description = "Weather", strict = true,
        parameters = { type = "object", properties = { city = { type = "string" } }, required = { "city" } },
        run = function() end },
      { name = "noargs", description = "none", parameters = { type = "object", properties = {}, required = {} } },
      { type = "web_search_20250305", name = "web_search", max_uses = 2 },
    }, tool_choice = "required", parallel_tool_calls = false }
    assert.is_true(F.same({ name = "get_weather", description = "Weather", input_schema = {
      type = "object", properties = { city = { type = "string" } }, required = { "city" } } }, body.tools[1]))
    assert.truthy(text:find('"properties":{},"required":[]', 1, true))
    assert.is_true(F.same({ type = "web_search_20250305", name = "web_search", max_uses = 2 }, body.tools[3]))
    assert.is_true(F.same({ type = "any", disable_parallel_tool_use = true }, body.tool_choice))
    assert.is_nil(wire{ model = "c", messages = {}, tools = {} }.tools)
    assert.is_true(F.same({ type = "auto" }, wire{ model = "c", messages = {}, tool_choice = "auto" }.tool_choice))
    assert.is_true(F.same({ type = "none" }, wire{ model = "c", messages = {}, tool_choice = "none" }.tool_choice))
    assert.is_true(F.same({ type = "tool", name = "f" }, wire{ model = "c", messages = {}, tool_choice = { name = "f" } }.tool_choice))
  end)

  it("maps reasoning to thinking and keeps max_tokens above the budget", function()
    local body = wire{ model = "c", messages = {}, reasoning = { budget_tokens = 2048 } }
    assert.is_true(F.same({ type = "enabled", budget_tokens = 2048 }, body.thinking))
    assert.are.equal(2048 + 4096, body.max_tokens)
    body = wire{ model = "c", messages = {}, reasoning = { effort = "low" }, max_tokens = 5000 }
    assert.are.equal(1024, body.thinking.budget_tokens)
    assert.are.equal(5000, body.max_tokens)
  end)

  it("asks for a json_schema response_format through a forced tool, json_object in the system prompt", function()
    local body = wire{ model = "c", system = "S", messages = {}, response_format = { type = "json_schema",
      name = "p", schema = { type = "object", properties = { n = { type = "integer" } } } } }
    assert.are.equal("S", body.system)
    assert.are.same({ type = "tool", name = "p" }, body.tool_choice)
    assert.are.equal('{"properties":{"n":{"type":"integer"}},"type":"object"}', json.encode(body.tools[1].input_schema))
    body = wire{ model = "c", system = "S", messages = {}, response_format = { type = "json_object" } }
    assert.truthy(body.system:find("^S\n\nReply with only a JSON object"))
    assert.is_nil(body.tools)
  end)

  it("merges consecutive tool results into one user message, keeping is_error", function()
    local body = wire{ model = "c", messages = {
      { role = "user", content = "Weather in Seoul and Busan?" },
      { role = "assistant", content = "Let me check.", tool_calls = {
        { id = "toolu_1", name = "w", arguments = { city = "Seoul" }, arguments_json = '{"city":"Seoul"}' },
        { id = "toolu_2", name = "w", arguments = json.object(), arguments_json = "" } } },
      { role = "tool", tool_call_id = "toolu_1", name = "w", content = "21C" },
      { role = "tool", tool_call_id = "toolu_2", name = "w", content = "city missing", is_error = true },
      { role = "user", content = "Thanks" },
    } }
    assert.are.equal(4, #body.messages)
    assert.is_true(F.same({ role = "assistant", content = {
      { type = "text", text = "Let me check." },
      { type = "tool_use", id = "toolu_1", name = "w", input = { city = "Seoul" } },
      { type = "tool_use", id = "toolu_2", name = "w", input = json.object() } } }, body.messages[2]))
    assert.is_true(F.same({ role = "user", content = {
      { type = "tool_result", tool_use_id = "toolu_1", content = "21C" },
      { type = "tool_result", tool_use_id = "toolu_2", content = "city missing", is_error = true } } },
      body.messages[3]))
    local _, _, text = wire{ model = "c", messages = { { role = "assistant", content = "",
      tool_calls = { { id = "t", name = "w", arguments = json.object(), arguments_json = "" } } } } }
    assert.truthy(text:find('"input":{}', 1, true))
  end)

  it("replays thinking blocks with their signature and drops other providers' reasoning", function()
    local body = wire{ model = "c", messages = { { role = "assistant", content = {
      { type = "reasoning", text = "Let me think", provider_data = { provider = "anthropic", type = "thinking", signature = "SIG==" } },
      { type = "reasoning", text = "", provider_data = { provider = "anthropic", type = "redacted_thinking", data = "REDACTED" } },
      { type = "reasoning", text = "gemini thought", provider_data = { provider = "gemini", thoughtSignature = "x" } },
      { type = "reasoning", text = "openai summary", provider_data = { provider = "openai" } },
      { type = "text", text = "Answer" } } } } }
    assert.is_true(F.same({
      { type = "thinking", thinking = "Let me think", signature = "SIG==" },
      { type = "redacted_thinking", data = "REDACTED" },
      { type = "text", text = "Answer" } }, body.messages[1].content))
  end)

  it("sends a streamed thinking + tool turn back unchanged", function()
    local resp = assert(run({ START,
      sse("content_block_start", { type = "content_block_start", index = 0, content_block = { type = "thinking", thinking = "", signature = "" } }),
      sse("content_block_delta", { type = "content_block_delta", index = 0, delta = { type = "thinking_delta", thinking = "hmm" } }),
      sse("content_block_delta", { type = "content_block_delta", index = 0, delta = { type = "signature_delta", signature = "SIG" } }),
      sse("content_block_stop", { type = "content_block_stop", index = 0 }),
      sse("content_block_start", { type = "content_block_start", index = 1, content_block = { type = "tool_use", id = "toolu_9", name = "f", input = json.object() } }),
      sse("content_block_delta", { type = "content_block_delta", index = 1, delta = { type = "input_json_delta", partial_json = '{"a":[]}' } }),
      sse("content_block_stop", { type = "content_block_stop", index = 1 }),
      sse("message_delta", { type = "message_delta", delta = { stop_reason = "tool_use" }, usage = { output_tokens = 9 } }),
    }))
    local _, _, text = wire{ model = "c", messages = { resp.message } }
    assert.truthy(text:find('{"signature":"SIG","thinking":"hmm","type":"thinking"}', 1, true), text)
    assert.truthy(text:find('"input":{"a":[]}', 1, true), text)
  end)
end)

describe("anthropic decode_response", function()
  it("decodes thinking, redacted thinking, text and tool_use", function()
    local body = assert(json.decode([[{"id":"msg_1","type":"message","role":"assistant","model":"claude",
      "content":[{"type":"thinking","thinking":"hm","signature":"S1"},{"type":"redacted_thinking","data":"D1"},
      {"type":"text","text":"Hi"},{"type":"tool_use","id":"toolu_1","name":"f","input":{"x":[]}}],
      "stop_reason":"tool_use","usage":{"input_tokens":5,"output_tokens":6,"cache_read_input_tokens":2}}]]))
    local r = P.decode_response(body, {})
    assert.are.equal("Hi", r.text)
    assert.are.equal("hm", r.reasoning)
    assert.are.equal("tool_calls", r.finish_reason)
    assert.are.equal('{"x":[]}', r.tool_calls[1].arguments_json)
    assert.are.same({ input_tokens = 5, output_tokens = 6, total_tokens = 11, cached_input_tokens = 2 }, r.usage)
    assert.are.equal("S1", r.message.content[1].provider_data.signature)
    assert.are.equal("D1", r.message.content[2].provider_data.data)
    assert.are.equal(r.tool_calls, r.message.tool_calls)
  end)

  it("maps every stop_reason", function()
    local map = { end_turn = "stop", stop_sequence = "stop", pause_turn = "stop", max_tokens = "length",
                  tool_use = "tool_calls", refusal = "content_filter", model_context_window_exceeded = "length" }
    for raw, want in pairs(map) do
      local r = P.decode_response({ content = json.array(), stop_reason = raw }, {})
      assert.are.equal(want, r.finish_reason)
    end
  end)

  it("fills parsed for response_format", function()
    local r = P.decode_response(assert(json.decode('{"content":[{"type":"text","text":"{\\"n\\":3}"}],"stop_reason":"end_turn"}')),
      { response_format = { type = "json_schema" } })
    assert.are.equal(3, r.parsed.n)
  end)
end)

describe("anthropic streams", function()
  it("ignores ping, gives raw for blocks without meaning, emits no done", function()
    local resp, err, evs = run({ START, sse("ping", { type = "ping" }),
      sse("content_block_start", { type = "content_block_start", index = 0, content_block = { type = "text", text = "" } }),
      sse("content_block_delta", { type = "content_block_delta", index = 0, delta = { type = "text_delta", text = "Hi" } }),
      sse("content_block_stop", { type = "content_block_stop", index = 0 }),
      sse("message_delta", { type = "message_delta", delta = { stop_reason = "end_turn", stop_sequence = json.null }, usage = { output_tokens = 5 } }),
      sse("message_stop", { type = "message_stop" }) })
    assert.is_nil(err)
    local types = {}
    for i, e in ipairs(evs) do types[i] = e.type end
    assert.are.same({ "usage", "raw", "text", "raw", "usage", "raw" }, types)
    assert.are.equal("content_block_delta", evs[3].name)
    assert.are.same({ input_tokens = 10, output_tokens = 5, total_tokens = 15 }, resp.usage)
    assert.are.equal("message", resp.raw.type)
  end)

  it("reports an error event after content and fails the stream", function()
    local resp, err, evs = run({ START,
      sse("content_block_start", { type = "content_block_start", index = 0, content_block = { type = "text", text = "" } }),
      sse("content_block_delta", { type = "content_block_delta", index = 0, delta = { type = "text_delta", text = "Hi" } }),
      sse("error", '{"type":"error","error":{"details":null,"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"   }') })
    assert.is_nil(resp)
    assert.are.equal("overloaded", err.kind)
    assert.are.equal("Overloaded", err.message)
    assert.are.equal("req_1", err.request_id)
    assert.is_nil(err.status)
    assert.are.equal("error", evs[#evs].type)
  end)

  it("maps in-stream error types", function()
    for typ, kind in pairs({ rate_limit_error = "rate_limit", api_error = "server",
                             billing_error = "quota", overloaded_error = "overloaded" }) do
      local _, err = run({ sse("error", { type = "error", error = { type = typ, message = "m" } }) })
      assert.are.equal(kind, err.kind)
    end
  end)

  it("fails a stream cut before message_delta, and on bad JSON", function()
    local resp, err = run({ START })
    assert.is_nil(resp)
    assert.are.equal("protocol", err.kind)
    resp, err = run({ START, sse("content_block_delta", "{oops") })
    assert.is_nil(resp)
    assert.are.equal("protocol", err.kind)
  end)

  it("keeps invalid tool JSON raw and an empty input as {}", function()
    local resp = assert(run({ START,
      sse("content_block_start", { type = "content_block_start", index = 0, content_block = { type = "tool_use", id = "t1", name = "f", input = json.object() } }),
      sse("content_block_delta", { type = "content_block_delta", index = 0, delta = { type = "input_json_delta", partial_json = '{"a": tru' } }),
      sse("content_block_stop", { type = "content_block_stop", index = 0 }),
      sse("content_block_start", { type = "content_block_start", index = 1, content_block = { type = "tool_use", id = "t2", name = "g", input = json.object() } }),
      sse("content_block_stop", { type = "content_block_stop", index = 1 }),
      sse("message_delta", { type = "message_delta", delta = { stop_reason = "tool_use" }, usage = { output_tokens = 3 } }) }))
    assert.is_nil(resp.tool_calls[1].arguments)
    assert.are.equal('{"a": tru', resp.tool_calls[1].arguments_json)
    assert.are.same({}, resp.tool_calls[2].arguments)
    assert.are.equal("", resp.tool_calls[2].arguments_json)
  end)

  it("decodes a 200,000-event stream", function()
    local state = P.new_stream_state({})
    P.decode_event(state, START)
    P.decode_event(state, sse("content_block_start", { type = "content_block_start", index = 0, content_block = { type = "text", text = "" } }))
    local ev = sse("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" word"}   }')
    local t0 = os.clock()
    for _ = 1, 200000 do P.decode_event(state, ev) end
    P.decode_event(state, sse("message_delta", { type = "message_delta", delta = { stop_reason = "end_turn" }, usage = { output_tokens = 200000 } }))
    local resp = assert(P.finish_stream(state))
    print(("anthropic decode_event: 200000 events in %.2f s CPU"):format(os.clock() - t0))
    assert.are.equal(200000 * 5, #resp.text)
  end)
end)

describe("anthropic decode_error", function()
  local function body(typ, msg, rid)
    return json.encode({ type = "error", error = { type = typ, message = msg }, request_id = rid })
  end
  local cases = {
    { 400, body("invalid_request_error", "messages: field required"), "bad_request" },
    { 401, body("authentication_error", "invalid x-api-key"), "auth" },
    { 403, body("permission_error", "no access"), "permission" },
    { 404, body("not_found_error", "model: claude-x"), "not_found" },
    { 413, body("request_too_large", "Request exceeds the maximum size"), "bad_request" },
    { 422, body("invalid_request_error", "unprocessable"), "bad_request" },
    { 429, body("rate_limit_error", "Number of request tokens has exceeded your rate limit"), "rate_limit" },
    { 400, body("billing_error", "Your credit balance is too low"), "quota" },
    { 500, body("api_error", "Internal server error"), "server" },
    { 503, body("api_error", "Service unavailable"), "server" },
    { 529, body("overloaded_error", "Overloaded", "req_529"), "overloaded" },
  }
  for _, c in ipairs(cases) do
    it(("HTTP %d %s -> %s"):format(c[1], json.decode(c[2]).error.type, c[3]), function()
      local headers = (c[1] ~= 529) and { ["request-id"] = "req_" .. c[1] } or {}
      local e = S.check_error_case(P, c, headers)
      assert.are.equal(json.decode(c[2]).error.type, e.type)
    end)
  end

  -- Registered only when the shared fixtures are there (hand-written bodies are above).
  if not F.dir() then print("fixtures absent: recorded error bodies not checked") end
  if F.dir() then it("reads fixture error bodies where they exist", function()
    local e, headers = S.fixture_error(P, "anthropic/anthropic_error_401")
    assert.are.equal("auth", e.kind)
    assert.are.equal("invalid x-api-key", e.message)
    assert.are.equal(headers["request-id"], e.request_id)
    e = S.fixture_error(P, "anthropic/anthropic_error_529_with_request_id", 529)
    assert.are.equal("overloaded", e.kind)
    assert.are.equal("req_011CZAau32QzxDkriovTaFCB", e.request_id)
  end) end

  it("gives a clear message for an HTML body", function()
    local e = P.decode_error(502, {}, "<!DOCTYPE html><html>bad gateway</html>")
    assert.are.equal("server", e.kind)
    assert.are.equal("HTTP 502 with an HTML body", e.message)
  end)
end)
