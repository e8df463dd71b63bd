-- lua5.1: yes
-- llm.providers.gemini: request bodies, responses, errors and streams of the Gemini API.
local json = require("llm.json")
local P = require("llm.providers.gemini")
local F = require("support.fixtures")
local S = require("support.providers")

local function wire(req) return S.wire(P, req) end

local function chunk(obj) return { data = json.encode(obj) } end

local function run(events, req) return F.run_stream(P, events, req) end

local types = S.types

local function cand(parts, finish)
  return { content = { role = "model", parts = parts }, finishReason = finish, index = 0 }
end

describe("gemini provider table", function()
  it("has the contract fields and puts the key in a header only", function()
    assert.are.equal("https://generativelanguage.googleapis.com/v1beta", P.base_url)
    assert.are.equal("GEMINI_API_KEY", P.api_key_env)
    assert.are.equal("sse", P.framing)
    assert.are.same({ ["x-goog-api-key"] = "AIza-x" }, P.auth_headers("AIza-x"))
    local r = P.build_request{ model = "gemini-2.5-flash", messages = {} }
    assert.is_nil(r.path:find("key=", 1, true))
  end)
end)

describe("gemini build_request", function()
  it("uses generateContent and streamGenerateContent?alt=sse paths", function()
    local _, r = wire{ model = "gemini-2.5-flash", messages = { { role = "user", content = "Hi" } } }
    assert.are.equal("POST", r.method)
    assert.are.equal("/models/gemini-2.5-flash:generateContent", r.path)
    local _, rs = wire{ model = "models/gemini-2.5-flash", messages = {}, stream = true }
    assert.are.equal("/models/gemini-2.5-flash:streamGenerateContent?alt=sse", rs.path)
    assert.are.equal("text/event-stream", rs.headers.accept)
  end)

  it("maps system, roles, parts and generationConfig", function()
    local body = wire{ model = "m", system = "Be brief.", messages = {
      { role = "system", content = "Also polite." },
      { role = "user", content = { { type = "text", text = "What is this?" },
                                   { type = "image", data = "iVBOR", mime_type = "image/png" },
                                   { type = "image", url = "https://x/cat.JPG" },
                                   { type = "image", url = "data:image/webp;base64,UklG" } } },
      { role = "assistant", content = "A cat." },
      { role = "user", content = "Thanks" },
    }, max_tokens = 50, temperature = 0.3, top_p = 0.8, stop = "END" }
    assert.is_true(F.same({ parts = { { text = "Be brief.\n\nAlso polite." } } }, body.systemInstruction))
    assert.is_true(F.same({
      { role = "user", parts = {
        { text = "What is this?" },
        { inline_data = { mime_type = "image/png", data = "iVBOR" } },
        { file_data = { mime_type = "image/jpeg", file_uri = "https://x/cat.JPG" } },
        { inline_data = { mime_type = "image/webp", data = "UklG" } } } },
      { role = "model", parts = { { text = "A cat." } } },
      { role = "user", parts = { { text = "Thanks" } } },
    }, body.contents))
    assert.is_true(F.same({ maxOutputTokens = 50, temperature = 0.3, topP = 0.8,
                            stopSequences = { "END" } }, body.generationConfig))
  end)

  it("leaves out generationConfig and systemInstruction when nothing is set", function()
    local body, _, text = wire{ model = "m", messages = {} }
    assert.is_nil(body.generationConfig)
    assert.is_nil(body.systemInstruction)
    assert.truthy(text:find('"contents":[]', 1, true))
  end)

  it("declares function tools and converts hosted tools", function()
    local body = wire{ model = "m", messages = {}, tools = {
      { name = "weather", description = "Weather.", run = function() end,
        parameters = { type = "object", properties = { city = { type = "string" } },
                       required = { "city" }, additionalProperties = false } },
      { name = "now", description = "Time.", run = function() end },
      { type = "google_search" },
      { codeExecution = {} },
    }, tool_choice = { name = "weather" } }
    assert.is_true(F.same({
      { functionDeclarations = {
        { name = "weather", description = "Weather.", parameters = { type = "object",
            properties = { city = { type = "string" } }, required = { "city" } } },
        { name = "now", description = "Time." } } },
      { google_search = {} },
      { codeExecution = {} },
    }, body.tools))
    assert.is_true(F.same({ functionCallingConfig = { mode = "ANY", allowedFunctionNames = { "weather" } } },
      body.toolConfig))
    local b2 = wire{ model = "m", messages = {}, tool_choice = "none" }
    assert.is_true(F.same({ functionCallingConfig = { mode = "NONE" } }, b2.toolConfig))
    local b3 = wire{ model = "m", messages = {}, tool_choice = "required" }
    assert.are.equal("ANY", b3.toolConfig.functionCallingConfig.mode)
  end)

  it("turns tool calls and results into functionCall / functionResponse parts", function()
    local body = wire{ model = "m", messages = {
      { role = "user", content = "Weather in Paris and Rome?" },
      { role = "assistant", content = "", tool_calls = {
        { id = nil, name = "weather", arguments = { city = "Paris" },
          provider_data = { provider = "gemini", thought_signature = "SIG1" } },
        { id = "c2", name = "weather", arguments_json = '{"city":"Rome"}' } } },
      { role = "tool", name = "weather", content = "20C" },
      { role = "tool", tool_call_id = "c2", content = { temp = 25 } },
      { role = "tool", name = "weather", content = "boom", is_error = true },
    } }
    assert.are.equal(3, #body.contents)
    assert.is_true(F.same({ role = "model", parts = {
      { functionCall = { name = "weather", args = { city = "Paris" } }, thoughtSignature = "SIG1" },
      { functionCall = { name = "weather", args = { city = "Rome" }, id = "c2" } } } }, body.contents[2]))
    assert.is_true(F.same({ role = "user", parts = {
      { functionResponse = { name = "weather", response = { output = "20C" } } },
      { functionResponse = { name = "weather", id = "c2", response = { output = { temp = 25 } } } },
      { functionResponse = { name = "weather", response = { error = "boom" } } } } }, body.contents[3]))
  end)

  it("replays thought parts and signatures from Gemini only", function()
    local body = wire{ model = "m", messages = { { role = "assistant", content = {
      { type = "reasoning", text = "Hmm.", provider_data = { provider = "gemini", thought_signature = "S" } },
      { type = "reasoning", text = "Other.", provider_data = { provider = "anthropic", signature = "x" } },
      { type = "text", text = "Done.", provider_data = { provider = "gemini", thought_signature = "T" } } } } } }
    assert.is_true(F.same({ { text = "Hmm.", thought = true, thoughtSignature = "S" },
                            { text = "Done.", thoughtSignature = "T" } }, body.contents[1].parts))
  end)

  it("maps response_format and reasoning", function()
    local body = wire{ model = "gemini-2.5-pro", messages = {},
      response_format = { type = "json_schema", schema = { type = "object",
        properties = { n = { type = "string" } }, additionalProperties = false } },
      reasoning = { budget_tokens = 2048 } }
    assert.are.equal("application/json", body.generationConfig.responseMimeType)
    assert.is_true(F.same({ type = "object", properties = { n = { type = "string" } } },
      body.generationConfig.responseSchema))
    assert.is_true(F.same({ includeThoughts = true, thinkingBudget = 2048 }, body.generationConfig.thinkingConfig))
    local b2 = wire{ model = "gemini-2.5-flash", messages = {}, reasoning = { effort = "low" } }
    assert.are.equal(1024, b2.generationConfig.thinkingConfig.thinkingBudget)
    local b3 = wire{ model = "gemini-3-pro-preview", messages = {}, reasoning = { effort = "high" } }
    assert.are.equal("high", b3.generationConfig.thinkingConfig.thinkingLevel)
    local b4 = wire{ model = "m", messages = {}, response_format = { type = "json_object" } }
    assert.are.equal("application/json", b4.generationConfig.responseMimeType)
    assert.is_nil(b4.generationConfig.responseSchema)
  end)

  it("merges extra last", function()
    local body = wire{ model = "m", messages = {}, max_tokens = 5,
                       extra = { safetySettings = { { category = "HARM_CATEGORY_HATE_SPEECH",
                                                      threshold = "BLOCK_NONE" } } } }
    assert.are.equal("BLOCK_NONE", body.safetySettings[1].threshold)
    assert.are.equal(5, body.generationConfig.maxOutputTokens)
  end)
end)

describe("gemini decode_response", function()
  it("reads text, thoughts, calls with signatures, usage and ids", function()
    local body = json.decode(json.encode({
      candidates = { cand({ { text = "Let me think.", thought = true, thoughtSignature = "TS" },
                            { text = "Checking " }, { text = "now." },
                            { functionCall = { name = "weather", args = { city = "Paris" } },
                              thoughtSignature = "FS" } }, "STOP") },
      usageMetadata = { promptTokenCount = 12, candidatesTokenCount = 8, thoughtsTokenCount = 30,
                        totalTokenCount = 50, cachedContentTokenCount = 4 },
      modelVersion = "gemini-2.5-flash", responseId = "r1" }))
    local resp = P.decode_response(body, {})
    assert.are.equal("Checking now.", resp.text)
    assert.are.equal("Let me think.", resp.reasoning)
    assert.are.equal("tool_calls", resp.finish_reason)
    assert.are.equal("STOP", resp.raw_finish_reason)
    assert.are.same({ input_tokens = 12, output_tokens = 38, total_tokens = 50, reasoning_tokens = 30,
                      cached_input_tokens = 4 }, resp.usage)
    assert.are.equal("r1", resp.id)
    assert.are.equal("gemini-2.5-flash", resp.model)
    local c = resp.tool_calls[1]
    assert.are.equal("call_1", c.id)   -- generated: the server sent none
    assert.are.equal("weather", c.name)
    assert.are.equal("Paris", c.arguments.city)
    assert.are.equal('{"city":"Paris"}', c.arguments_json)
    assert.are.same({ provider = "gemini", thought_signature = "FS", id_generated = true }, c.provider_data)
    local m = resp.message
    assert.are.equal("reasoning", m.content[1].type)
    assert.are.same({ provider = "gemini", thought_signature = "TS" }, m.content[1].provider_data)
    assert.are.same({ type = "text", text = "Checking now." }, m.content[2])
    -- the message goes back as it came
    local next_body = wire{ model = "m", messages = { m } }
    assert.is_true(F.same({
      { text = "Let me think.", thought = true, thoughtSignature = "TS" },
      { text = "Checking now." },
      { functionCall = { name = "weather", args = { city = "Paris" } }, thoughtSignature = "FS" },
    }, next_body.contents[1].parts))
  end)

  it("maps finish reasons", function()
    local function fin(reason)
      return P.decode_response({ candidates = { cand({ { text = "x" } }, reason) } }, {}).finish_reason
    end
    assert.are.equal("stop", fin("STOP"))
    assert.are.equal("length", fin("MAX_TOKENS"))
    for _, r in ipairs({ "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY" }) do
      assert.are.equal("content_filter", fin(r))
    end
    assert.are.equal("error", fin("MALFORMED_FUNCTION_CALL"))
    assert.are.equal("error", fin("OTHER"))
  end)

  it("treats a blocked prompt as content_filter", function()
    local resp = P.decode_response({ promptFeedback = { blockReason = "SAFETY" },
      usageMetadata = { promptTokenCount = 5, totalTokenCount = 5 } }, {})
    assert.are.equal("content_filter", resp.finish_reason)
    assert.are.equal("SAFETY", resp.raw_finish_reason)
    assert.are.equal("", resp.text)
    assert.are.equal(5, resp.usage.input_tokens)
    assert.is_nil(resp.usage.output_tokens)
  end)

  it("lists every candidate in choices", function()
    local resp = P.decode_response({ candidates = {
      cand({ { text = "A" } }, "STOP"), { content = { parts = { { text = "B" } } }, finishReason = "MAX_TOKENS", index = 1 } } }, {})
    assert.are.equal("A", resp.text)
    assert.are.equal(2, #resp.choices)
    assert.are.equal("B", resp.choices[2].text)
    assert.are.equal("length", resp.choices[2].finish_reason)
  end)

  it("decodes a JSON reply into parsed", function()
    local resp = P.decode_response({ candidates = { cand({ { text = '{"a":1}' } }, "STOP") } },
      { response_format = { type = "json_object" } })
    assert.are.equal(1, resp.parsed.a)
  end)
end)

describe("gemini decode_error", function()
  local function status_body(code, status, message, details)
    return json.encode({ error = { code = code, status = status, message = message,
                                   details = details and json.array(details) or nil } })
  end

  it("maps API_KEY_INVALID to auth", function()
    local e = P.decode_error(400, {}, status_body(400, "INVALID_ARGUMENT",
      "API key not valid. Please pass a valid API key.",
      { { ["@type"] = "type.googleapis.com/google.rpc.ErrorInfo", reason = "API_KEY_INVALID",
          domain = "googleapis.com" } }))
    assert.are.equal("auth", e.kind)
    assert.are.equal("API key not valid. Please pass a valid API key.", e.message)
    assert.are.equal("INVALID_ARGUMENT", e.type)
    assert.are.equal(400, e.code)
    assert.are.equal(400, e.status)
  end)

  it("keeps other 400s as bad_request", function()
    local e = P.decode_error(400, {}, status_body(400, "INVALID_ARGUMENT", "Bad field"))
    assert.are.equal("bad_request", e.kind)
  end)

  it("reads RetryInfo into retry_after and tells a daily quota apart", function()
    local minute = P.decode_error(429, {}, status_body(429, "RESOURCE_EXHAUSTED", "slow down", {
      { ["@type"] = "type.googleapis.com/google.rpc.QuotaFailure",
        violations = { { quotaId = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier" } } },
      { ["@type"] = "type.googleapis.com/google.rpc.RetryInfo", retryDelay = "34.4s" } }))
    assert.are.equal("rate_limit", minute.kind)
    assert.are.equal(34.4, minute.retry_after)
    local day = P.decode_error(429, {}, status_body(429, "RESOURCE_EXHAUSTED", "daily", {
      { ["@type"] = "type.googleapis.com/google.rpc.QuotaFailure",
        violations = { { quotaId = "GenerateRequestsPerDayPerProjectPerModel-FreeTier" } } },
      { ["@type"] = "type.googleapis.com/google.rpc.RetryInfo", retryDelay = "2s" } }))
    assert.are.equal("quota", day.kind)
    assert.are.equal(2, day.retry_after)
    local plain = P.decode_error(429, {}, status_body(429, "RESOURCE_EXHAUSTED", "x"))
    assert.are.equal("rate_limit", plain.kind)
    assert.is_nil(plain.retry_after)
  end)

  it("reads an error body wrapped in a list and maps 5xx", function()
    local e = P.decode_error(503, {}, "[" .. status_body(503, "UNAVAILABLE", "The model is overloaded.") .. "]")
    assert.are.equal("server", e.kind)
    assert.are.equal("The model is overloaded.", e.message)
    assert.are.equal("UNAVAILABLE", e.type)
  end)

  it("parses durations", function()
    assert.are.equal(34.4, P.duration_seconds("34.4s"))
    assert.are.equal(0, P.duration_seconds("0s"))
    assert.is_nil(P.duration_seconds("soon"))
  end)
end)

describe("gemini stream", function()
  it("turns chunks into text, reasoning, tool-call and usage events", function()
    local resp, err, evs = run({
      chunk{ candidates = { cand({ { text = "Plan", thought = true } }) },
             usageMetadata = { promptTokenCount = 9, totalTokenCount = 9 }, responseId = "r", modelVersion = "g" },
      chunk{ candidates = { cand({ { text = "Hel" }, { text = "lo" } }) },
             usageMetadata = { promptTokenCount = 9, candidatesTokenCount = 2, thoughtsTokenCount = 4, totalTokenCount = 15 } },
      chunk{ candidates = { cand({ { functionCall = { name = "f", args = { x = 1 } }, thoughtSignature = "S" },
                                   { functionCall = { name = "g", args = {} } } }, "STOP") },
             usageMetadata = { promptTokenCount = 8, candidatesTokenCount = 5, thoughtsTokenCount = 4, totalTokenCount = 17 } },
    })
    assert.is_nil(err)
    assert.are.same({ "reasoning", "usage", "text", "usage", "tool_call", "tool_call", "tool_call_done",
                      "tool_call_done", "usage" }, types(evs))
    assert.are.equal("Hello", evs[3].text)
    assert.are.equal(1, evs[5].index)
    assert.are.equal("f", evs[5].name)
    assert.are.equal('{"x":1}', evs[5].arguments_delta)
    assert.are.equal(2, evs[6].index)
    assert.are.equal("{}", evs[6].arguments_delta)
    assert.are.equal("Hello", resp.text)
    assert.are.equal("Plan", resp.reasoning)
    assert.are.equal("tool_calls", resp.finish_reason)
    assert.are.same({ input_tokens = 8, output_tokens = 9, total_tokens = 17, reasoning_tokens = 4 }, resp.usage)
    assert.are.equal("r", resp.id)
    assert.are.equal("g", resp.model)
    assert.are.same({ provider = "gemini", thought_signature = "S", id_generated = true },
      resp.tool_calls[1].provider_data)
    assert.are.equal("STOP", resp.raw.candidates[1].finishReason)
    assert.are.equal(4, #resp.raw.candidates[1].content.parts)
  end)

  it("keeps a signature that arrives on an empty text part", function()
    local resp = run({
      chunk{ candidates = { cand({ { text = "An" } }) } },
      chunk{ candidates = { cand({ { text = "swer" } }) } },
      chunk{ candidates = { cand({ { text = "", thoughtSignature = "END" } }, "STOP") } },
    })
    assert.are.equal("Answer", resp.text)
    assert.are.same({ { type = "text", text = "Answer",
      provider_data = { provider = "gemini", thought_signature = "END" } } }, resp.message.content)
  end)

  it("needs a finishReason to be complete", function()
    local resp, err = run({ chunk{ candidates = { cand({ { text = "Hi" } }) } } })
    assert.is_nil(resp)
    assert.are.equal("protocol", err.kind)
  end)

  it("turns an error chunk into an error event", function()
    local resp, err, evs = run({
      chunk{ candidates = { cand({ { text = "Hi" } }) } },
      chunk{ error = { code = 503, status = "UNAVAILABLE", message = "overloaded" } },
    })
    assert.is_nil(resp)
    assert.are.equal("server", err.kind)
    assert.are.equal("overloaded", err.message)
    assert.is_nil(err.status)
    assert.are.equal("error", evs[2].type)
  end)

  it("ends a blocked prompt with content_filter", function()
    local resp, err = run({ chunk{ promptFeedback = { blockReason = "PROHIBITED_CONTENT" } } })
    assert.is_nil(err)
    assert.are.equal("content_filter", resp.finish_reason)
    assert.are.equal("PROHIBITED_CONTENT", resp.raw_finish_reason)
  end)

  it("emits raw for a chunk without meaning", function()
    local _, _, evs = run({ chunk{ candidates = { cand({ { text = "" } }) } } })
    assert.are.same({ "raw" }, types(evs))
  end)
end)
