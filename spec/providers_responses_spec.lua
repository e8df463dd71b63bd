-- lua5.1: yes
-- llm.providers.openai_responses: request bodies, responses, errors and streams of the
-- OpenAI Responses API.
local json = require("llm.json")
local P = require("llm.providers.openai_responses")
local F = require("support.fixtures")
local S = require("support.providers")

local function wire(req) return S.wire(P, req) end

local function ev(obj)
  return { name = obj.type, data = json.encode(obj) }
end

local function run(events, req) return F.run_stream(P, events, req) end

local types = S.types

local USAGE = { input_tokens = 10, output_tokens = 7, total_tokens = 17,
                input_tokens_details = { cached_tokens = 4 },
                output_tokens_details = { reasoning_tokens = 3 } }

local function response(status, output, extra)
  local r = { id = "resp_1", object = "response", model = "gpt-5", status = status,
              output = json.array(output or {}), usage = USAGE }
  for k, val in pairs(extra or {}) do r[k] = val end
  return r
end

describe("responses provider table", function()
  it("has the contract fields", function()
    assert.are.equal("https://api.openai.com/v1", P.base_url)
    assert.are.equal("OPENAI_API_KEY", P.api_key_env)
    assert.are.equal("sse", P.framing)
    assert.are.same({ authorization = "Bearer sk-x" }, P.auth_headers("sk-x"))
    assert.are.same({}, P.auth_headers(false))
    for _, f in ipairs({ "build_request", "decode_response", "decode_error", "new_stream_state",
                         "decode_event", "finish_stream" }) do
      assert.are.equal("function", type(P[f]), f)
    end
  end)
end)

describe("responses build_request", function()
  it("posts to /responses with a string input, instructions and options", function()
    local body, r = wire{ model = "gpt-5", input = "Hello", instructions = "Be brief.",
      max_tokens = 100, temperature = 0.5, top_p = 0.9, store = false,
      previous_response_id = "resp_0", tool_choice = "auto", extra = { truncation = "auto" } }
    assert.are.equal("POST", r.method)
    assert.are.equal("/responses", r.path)
    assert.are.equal("gpt-5", body.model)
    assert.are.equal("Hello", body.input)
    assert.are.equal("Be brief.", body.instructions)
    assert.are.equal(100, body.max_output_tokens)
    assert.is_nil(body.max_tokens)
    assert.are.equal(0.5, body.temperature)
    assert.are.equal(0.9, body.top_p)
    assert.are.equal(false, body.store)
    assert.are.equal("resp_0", body.previous_response_id)
    assert.are.equal("auto", body.tool_choice)
    assert.are.equal("auto", body.truncation)
    assert.is_nil(body.stream)
  end)

  it("takes instructions from system and streams when asked", function()
    local body, r = wire{ model = "m", system = "Be a pirate.", input = "Hi", stream = true }
    assert.are.equal("Be a pirate.", body.instructions)
    assert.is_true(body.stream)
    assert.are.equal("text/event-stream", r.headers.accept)
  end)

  it("merges extra last", function()
    local body = wire{ model = "m", input = "x", max_tokens = 5, extra = { max_output_tokens = 9 } }
    assert.are.equal(9, body.max_output_tokens)
  end)

  it("passes input items through", function()
    local body = wire{ model = "m", input = {
      { type = "message", role = "user", content = { { type = "input_text", text = "hi" } } },
      { type = "item_reference", id = "msg_9" } } }
    assert.is_true(F.same({
      { type = "message", role = "user", content = { { type = "input_text", text = "hi" } } },
      { type = "item_reference", id = "msg_9" } }, body.input))
  end)

  it("turns a tool-call history into message, function_call and function_call_output items", function()
    local _, _, text = wire{ model = "m", messages = {
      { role = "system", content = "sys" },
      { role = "user", content = { { type = "text", text = "Look:" },
                                   { type = "image", url = "https://x/cat.png" },
                                   { type = "image", data = "AAAA", mime_type = "image/jpeg" } } },
      { role = "assistant", content = "Calling.", tool_calls = {
        { id = "call_1", name = "add", arguments = { a = 1 }, arguments_json = '{"a":1}',
          provider_data = { provider = "openai_responses", id = "fc_1" } },
        { id = "call_2", name = "now", arguments = {} } } },
      { role = "tool", tool_call_id = "call_1", content = "2" },
      { role = "tool", tool_call_id = "call_2", content = { t = 5 } },
    } }
    local body = json.decode(text)
    local input = body.input
    assert.are.equal(7, #input)
    assert.is_true(F.same({ type = "message", role = "system", content = "sys" }, input[1]))
    assert.is_true(F.same({ type = "message", role = "user", content = {
      { type = "input_text", text = "Look:" },
      { type = "input_image", image_url = "https://x/cat.png", detail = "auto" },
      { type = "input_image", image_url = "data:image/jpeg;base64,AAAA", detail = "auto" } } }, input[2]))
    assert.is_true(F.same({ type = "message", role = "assistant", content = "Calling." }, input[3]))
    assert.is_true(F.same({ type = "function_call", call_id = "call_1", name = "add",
                            arguments = '{"a":1}', id = "fc_1" }, input[4]))
    assert.is_true(F.same({ type = "function_call", call_id = "call_2", name = "now",
                            arguments = "{}" }, input[5]))
    assert.is_true(F.same({ type = "function_call_output", call_id = "call_1", output = "2" }, input[6]))
    assert.is_true(F.same({ type = "function_call_output", call_id = "call_2", output = '{"t":5}' }, input[7]))
  end)

  it("sends tool outputs that are tables as JSON text", function()
    local body = wire{ model = "m", messages = {
      { role = "tool", tool_call_id = "c", content = { temp = 21 } } } }
    assert.are.equal('{"temp":21}', body.input[1].output)
  end)

  it("replays reasoning items from this provider only", function()
    local body = wire{ model = "m", messages = {
      { role = "user", content = "q" },
      { role = "assistant", content = {
        { type = "reasoning", text = "thinking...", provider_data = {
            provider = "openai_responses", id = "rs_1", encrypted_content = "gAAA" } },
        { type = "reasoning", text = "other", provider_data = { provider = "anthropic", signature = "s" } },
        { type = "text", text = "answer" } },
        tool_calls = { { id = "call_1", name = "f", arguments_json = "{}",
                         provider_data = { provider = "openai_responses", id = "fc_1" } } } },
    } }
    local input = body.input
    assert.are.equal(4, #input)
    assert.is_true(F.same({ type = "reasoning", id = "rs_1", encrypted_content = "gAAA",
      summary = { { type = "summary_text", text = "thinking..." } } }, input[2]))
    assert.are.equal("message", input[3].type)
    assert.are.equal("answer", input[3].content)
    assert.are.equal("function_call", input[4].type)
    assert.are.equal("fc_1", input[4].id)
  end)

  it("keeps an empty reasoning summary as []", function()
    local _, _, text = wire{ model = "m", messages = { { role = "assistant", content = {
      { type = "reasoning", text = "", provider_data = { provider = "openai_responses", id = "rs_2",
                                                         encrypted_content = "e" } } } } } }
    assert.truthy(text:find('"summary":[]', 1, true))
  end)

  it("converts function tools and passes hosted tools through", function()
    local body = wire{ model = "m", input = "x", tools = {
      { name = "add", description = "Add.", parameters = { type = "object",
          properties = { a = { type = "number" } }, required = { "a" } }, strict = true,
        run = function() end },
      { name = "noargs", run = function() end },
      { type = "web_search" },
      { type = "file_search", vector_store_ids = { "vs_1" } },
    }, tool_choice = { name = "add" } }
    assert.is_true(F.same({ type = "function", name = "add", description = "Add.", strict = true,
      parameters = { type = "object", properties = { a = { type = "number" } }, required = { "a" } } },
      body.tools[1]))
    assert.is_true(F.same({ type = "function", name = "noargs",
      parameters = { type = "object", properties = {} } }, body.tools[2]))
    assert.is_true(F.same({ type = "web_search" }, body.tools[3]))
    assert.is_true(F.same({ type = "file_search", vector_store_ids = { "vs_1" } }, body.tools[4]))
    assert.is_true(F.same({ type = "function", name = "add" }, body.tool_choice))
  end)

  it("leaves out an empty tools list", function()
    local body = wire{ model = "m", input = "x", tools = {} }
    assert.is_nil(body.tools)
  end)

  it("maps reasoning and asks for encrypted content when nothing is stored", function()
    local body = wire{ model = "m", input = "x", reasoning = { effort = "high", summary = "auto" },
                       store = false }
    assert.is_true(F.same({ effort = "high", summary = "auto" }, body.reasoning))
    assert.is_true(F.same({ "reasoning.encrypted_content" }, body.include))
    local stored = wire{ model = "m", input = "x", reasoning = { effort = "low" } }
    assert.is_true(F.same({ effort = "low" }, stored.reasoning))
    assert.is_nil(stored.include)
  end)

  it("maps a json_schema response_format to text.format", function()
    local body = wire{ model = "m", input = "x", response_format = { type = "json_schema",
      name = "person", schema = { type = "object", properties = { n = { type = "string" } },
                                   required = { "n" } }, strict = true } }
    assert.is_true(F.same({ format = { type = "json_schema", name = "person", strict = true,
      schema = { type = "object", properties = { n = { type = "string" } }, required = { "n" } } } },
      body.text))
  end)

  it("appends a string input after converted messages", function()
    local body = wire{ model = "m", messages = { { role = "user", content = "a" } }, input = "b" }
    assert.are.equal(2, #body.input)
    assert.are.equal("b", body.input[2].content)
  end)
end)

describe("responses decode_response", function()
  it("reads text, calls, reasoning, usage and id", function()
    local body = json.decode(json.encode(response("completed", {
      { id = "rs_1", type = "reasoning", encrypted_content = "enc",
        summary = { { type = "summary_text", text = "Plan. " }, { type = "summary_text", text = "Act." } } },
      { id = "msg_1", type = "message", role = "assistant",
        content = { { type = "output_text", text = "Hi ", annotations = {} },
                    { type = "output_text", text = "there", annotations = {} } } },
      { id = "fc_1", type = "function_call", call_id = "call_1", name = "add", arguments = '{"a":1}' },
      { id = "ws_1", type = "web_search_call", status = "completed" },
    })))
    local resp = P.decode_response(body, {})
    assert.are.equal("Hi there", resp.text)
    assert.are.equal("tool_calls", resp.finish_reason)
    assert.are.equal("completed", resp.raw_finish_reason)
    assert.are.equal("Plan. Act.", resp.reasoning)
    assert.are.equal("resp_1", resp.id)
    assert.are.equal("gpt-5", resp.model)
    assert.are.equal(body, resp.raw)
    assert.are.same({ input_tokens = 10, output_tokens = 7, total_tokens = 17,
                      reasoning_tokens = 3, cached_input_tokens = 4 }, resp.usage)
    local c = resp.tool_calls[1]
    assert.are.equal("call_1", c.id)
    assert.are.equal("add", c.name)
    assert.are.equal(1, c.arguments.a)
    assert.are.equal('{"a":1}', c.arguments_json)
    assert.are.same({ provider = "openai_responses", id = "fc_1" }, c.provider_data)
    local m = resp.message
    assert.are.equal("assistant", m.role)
    assert.are.equal(resp.tool_calls, m.tool_calls)
    assert.are.equal("reasoning", m.content[1].type)
    assert.are.equal("Plan. Act.", m.content[1].text)
    assert.are.equal("rs_1", m.content[1].provider_data.id)
    assert.are.equal("enc", m.content[1].provider_data.encrypted_content)
    assert.are.equal("openai_responses", m.content[1].provider_data.provider)
    assert.are.same({ type = "text", text = "Hi there" }, m.content[2])
  end)

  it("round-trips the message into the next request", function()
    local body = json.decode(json.encode(response("completed", {
      { id = "rs_1", type = "reasoning", encrypted_content = "enc",
        summary = { { type = "summary_text", text = "A" }, { type = "summary_text", text = "B" } } },
      { id = "fc_1", type = "function_call", call_id = "call_1", name = "f", arguments = "{}" } })))
    local resp = P.decode_response(body, {})
    local next_body = wire{ model = "m", messages = { resp.message,
      { role = "tool", tool_call_id = "call_1", content = "ok" } } }
    assert.is_true(F.same({
      { type = "reasoning", id = "rs_1", encrypted_content = "enc",
        summary = { { type = "summary_text", text = "A" }, { type = "summary_text", text = "B" } } },
      { type = "function_call", id = "fc_1", call_id = "call_1", name = "f", arguments = "{}" },
      { type = "function_call_output", call_id = "call_1", output = "ok" } }, next_body.input))
  end)

  it("maps statuses to finish reasons", function()
    local function fin(status, extra)
      local r = P.decode_response(response(status, {}, extra), {})
      return r.finish_reason, r.raw_finish_reason
    end
    assert.are.same({ "stop", "completed" }, { fin("completed") })
    assert.are.same({ "length", "incomplete:max_output_tokens" },
      { fin("incomplete", { incomplete_details = { reason = "max_output_tokens" } }) })
    assert.are.same({ "content_filter", "incomplete:content_filter" },
      { fin("incomplete", { incomplete_details = { reason = "content_filter" } }) })
    assert.are.same({ "error", "failed" }, { fin("failed", { error = { code = "server_error", message = "x" } }) })
  end)

  it("keeps the text of a message that is a string and refusals apart", function()
    local resp = P.decode_response(response("completed", {
      { type = "message", content = { { type = "refusal", refusal = "No." } } } }), {})
    assert.are.equal("", resp.text)
    assert.are.equal("No.", resp.refusal)
    assert.are.equal("", resp.message.content)
  end)

  it("decodes a json_schema reply into parsed", function()
    local resp = P.decode_response(response("completed", {
      { type = "message", content = { { type = "output_text", text = '{"n":"Kim"}' } } } }),
      { response_format = { type = "json_schema", schema = {} } })
    assert.are.equal("Kim", resp.parsed.n)
  end)
end)

describe("responses decode_error", function()
  it("reads the error object and the request id", function()
    local e = P.decode_error(400, { ["x-request-id"] = "req_1" },
      '{"error":{"message":"Bad temp","type":"invalid_request_error","param":"temperature","code":"decimal_below_min_value"}}')
    assert.are.equal("bad_request", e.kind)
    assert.are.equal("Bad temp", e.message)
    assert.are.equal("invalid_request_error", e.type)
    assert.are.equal("temperature", e.param)
    assert.are.equal("decimal_below_min_value", e.code)
    assert.are.equal("req_1", e.request_id)
    assert.are.equal(400, e.status)
  end)

  it("treats insufficient_quota as quota and other 429s as rate_limit", function()
    assert.are.equal("quota", P.decode_error(429, {},
      '{"error":{"message":"q","type":"insufficient_quota","code":"insufficient_quota"}}').kind)
    assert.are.equal("rate_limit", P.decode_error(429, {},
      '{"error":{"message":"slow","type":"requests","code":"rate_limit_exceeded"}}').kind)
    assert.are.equal("auth", P.decode_error(401, {}, '{"error":{"message":"bad key"}}').kind)
  end)

  it("gives its own message for a body that is not JSON", function()
    local e = P.decode_error(502, {}, "<html>bad gateway</html>")
    assert.are.equal("server", e.kind)
    assert.truthy(e.message:find("HTML", 1, true))
    assert.are.equal("<html>bad gateway</html>", e.body)
  end)
end)

describe("responses stream", function()
  local created = { type = "response.created", response = { id = "resp_s", status = "in_progress",
                                                           output = json.array() } }
  local function completed(output, status, extra)
    return { type = "response." .. (status == "incomplete" and "incomplete" or "completed"),
             response = response(status or "completed", output, extra) }
  end

  it("turns text, reasoning and tool-call events into normalized events", function()
    local fc = { id = "fc_1", type = "function_call", call_id = "call_1", name = "add", arguments = "" }
    local fc_done = { id = "fc_1", type = "function_call", call_id = "call_1", name = "add",
                      arguments = '{"a":1}' }
    local rs = { id = "rs_1", type = "reasoning", encrypted_content = "enc", summary = json.array() }
    local rs_done = { id = "rs_1", type = "reasoning", encrypted_content = "enc",
                      summary = { { type = "summary_text", text = "Think." } } }
    local resp, err, evs = run({
      ev(created),
      ev{ type = "response.in_progress", response = created.response },
      ev{ type = "response.output_item.added", output_index = 0, item = rs },
      ev{ type = "response.reasoning_summary_part.added", output_index = 0, item_id = "rs_1", summary_index = 0 },
      ev{ type = "response.reasoning_summary_text.delta", output_index = 0, item_id = "rs_1", delta = "Thi" },
      ev{ type = "response.reasoning_summary_text.delta", output_index = 0, item_id = "rs_1", delta = "nk." },
      ev{ type = "response.reasoning_summary_text.done", output_index = 0, item_id = "rs_1", text = "Think." },
      ev{ type = "response.output_item.done", output_index = 0, item = rs_done },
      ev{ type = "response.output_item.added", output_index = 1, item = { id = "msg_1", type = "message" } },
      ev{ type = "response.content_part.added", output_index = 1, item_id = "msg_1" },
      ev{ type = "response.output_text.delta", output_index = 1, item_id = "msg_1", delta = "Hel" },
      ev{ type = "response.output_text.delta", output_index = 1, item_id = "msg_1", delta = "lo" },
      ev{ type = "response.output_text.done", output_index = 1, item_id = "msg_1", text = "Hello" },
      ev{ type = "response.content_part.done", output_index = 1, item_id = "msg_1" },
      ev{ type = "response.output_item.added", output_index = 2, item = fc },
      ev{ type = "response.function_call_arguments.delta", output_index = 2, item_id = "fc_1", delta = '{"a"' },
      ev{ type = "response.function_call_arguments.delta", output_index = 2, item_id = "fc_1", delta = ":1}" },
      ev{ type = "response.function_call_arguments.done", output_index = 2, item_id = "fc_1", arguments = '{"a":1}' },
      ev{ type = "response.output_item.done", output_index = 2, item = fc_done },
      ev(completed({ rs_done, fc_done })),
    })
    assert.is_nil(err)
    assert.are.same({ "raw", "raw", "raw", "raw", "reasoning", "reasoning", "raw", "raw", "raw", "raw",
                      "text", "text", "raw", "raw", "tool_call", "tool_call", "tool_call",
                      "tool_call_done", "raw", "usage" }, types(evs))
    assert.are.equal("add", evs[15].name)
    assert.are.equal(1, evs[15].index)
    assert.are.equal("call_1", evs[16].id)
    assert.is_nil(evs[16].name)
    assert.are.equal('{"a"', evs[16].arguments_delta)
    assert.are.equal("call_1", evs[18].call.id)
    assert.are.same({ provider = "openai_responses", id = "fc_1" }, evs[18].call.provider_data)
    assert.are.equal("response.output_text.delta", evs[11].name)
    assert.are.equal("Hello", resp.text)
    assert.are.equal("Think.", resp.reasoning)
    assert.are.equal("tool_calls", resp.finish_reason)
    assert.are.equal("resp_1", resp.id)
    assert.are.equal(10, resp.usage.input_tokens)
    assert.are.equal("enc", resp.message.content[1].provider_data.encrypted_content)
    assert.are.equal("rs_1", resp.message.content[1].provider_data.id)
    assert.are.equal(1, resp.tool_calls[1].arguments.a)
  end)

  it("emits raw for hosted-tool and unknown events, never dropping one", function()
    local _, _, evs = run({
      ev{ type = "response.web_search_call.in_progress", output_index = 0, item_id = "ws_1" },
      ev{ type = "response.web_search_call.searching", output_index = 0, item_id = "ws_1" },
      ev{ type = "response.file_search_call.completed", output_index = 0, item_id = "fs_1" },
      ev{ type = "response.something_new", x = 1 },
    })
    assert.are.same({ "raw", "raw", "raw", "raw" }, types(evs))
    assert.are.equal("response.web_search_call.searching", evs[2].name)
    assert.are.equal("response.web_search_call.searching", evs[2].raw.type)
  end)

  it("adds the tail of the final arguments when deltas are missing", function()
    local fc = { id = "fc_1", type = "function_call", call_id = "call_1", name = "f", arguments = "" }
    local resp, _, evs = run({
      ev{ type = "response.output_item.added", output_index = 0, item = fc },
      ev{ type = "response.function_call_arguments.delta", output_index = 0, item_id = "fc_1", delta = '{"x"' },
      ev{ type = "response.output_item.done", output_index = 0, item = { id = "fc_1",
        type = "function_call", call_id = "call_1", name = "f", arguments = '{"x":2}' } },
      ev(completed({})),
    })
    assert.are.equal(':2}', evs[3].arguments_delta)
    assert.are.equal("tool_call_done", evs[4].type)
    assert.are.equal('{"x":2}', resp.tool_calls[1].arguments_json)
    assert.are.equal(2, resp.tool_calls[1].arguments.x)
  end)

  it("ends incomplete responses with length", function()
    local resp, err = run({ ev(created),
      ev{ type = "response.output_text.delta", output_index = 0, delta = "Once" },
      ev(completed({}, "incomplete", { incomplete_details = { reason = "max_output_tokens" } })) })
    assert.is_nil(err)
    assert.are.equal("length", resp.finish_reason)
    assert.are.equal("incomplete:max_output_tokens", resp.raw_finish_reason)
    assert.are.equal("Once", resp.text)
  end)

  it("fails a stream that ends before response.completed", function()
    local resp, err = run({ ev(created), ev{ type = "response.output_text.delta", delta = "Hi" } })
    assert.is_nil(resp)
    assert.are.equal("protocol", err.kind)
  end)

  it("turns response.failed and error events into errors", function()
    local resp, err, evs = run({ ev(created), ev{ type = "response.failed", response = response("failed", {},
      { error = { code = "server_error", message = "The model failed." } }) } })
    assert.is_nil(resp)
    assert.are.equal("server", err.kind)
    assert.are.equal("The model failed.", err.message)
    assert.are.equal("error", evs[2].type)
    assert.are.equal(err, evs[2].error)

    local resp2, err2 = run({ ev{ type = "error", code = "rate_limit_exceeded",
                                  message = "Slow down", param = json.null } })
    assert.is_nil(resp2)
    assert.are.equal("rate_limit", err2.kind)
    assert.are.equal("Slow down", err2.message)
    assert.is_nil(err2.status)
  end)

  it("reports bad JSON as a protocol error", function()
    local resp, err = run({ { name = "response.output_text.delta", data = "{nope" } })
    assert.is_nil(resp)
    assert.are.equal("protocol", err.kind)
  end)
end)
