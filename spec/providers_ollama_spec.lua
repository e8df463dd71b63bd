-- lua5.1: yes
-- llm.providers.ollama: request bodies, responses, errors and NDJSON streams of Ollama's
-- native /api/chat. The transcripts in tests/ndjson/ go through the C NDJSON framer whole
-- and in seeded random splits.
local json = require("llm.json")
local P = require("llm.providers.ollama")
local F = require("support.fixtures")
local S = require("support.providers")

local root = os.getenv("LLM_ROOT") or "."
local SPLITS = 50

local function wire(req) return S.wire(P, req) end

local function line(obj) return { data = json.encode(obj) } end

local function run(events, req) return F.run_stream(P, events, req) end

local types = S.types

local core = require("llm.core")   -- the NDJSON framer is C

-- Frames NDJSON chunks with the C framer into { name, data, id } records.
local function frame(chunks)
  local f = core.framer("ndjson")
  local all = {}
  for _, c in ipairs(chunks) do
    local evs, err = f:feed(c)
    assert(evs, err and err.message)
    for _, e in ipairs(evs) do all[#all + 1] = e end
  end
  for _, e in ipairs(f:finish()) do all[#all + 1] = e end
  return all
end

describe("ollama provider table", function()
  it("has the contract fields", function()
    assert.are.equal("http://127.0.0.1:11434", P.base_url)
    assert.are.equal("ndjson", P.framing)
    assert.is_false(P.needs_key)
    assert.are.equal("OLLAMA_API_KEY", P.api_key_env)
    assert.are.same({}, P.auth_headers(false))
    assert.are.same({}, P.auth_headers(nil))
    assert.are.same({ authorization = "Bearer k" }, P.auth_headers("k"))
  end)
end)

describe("ollama build_request", function()
  it("posts to /api/chat with messages, options and stream", function()
    local body, r = wire{ model = "llama3.2", system = "Be brief.",
      messages = { { role = "user", content = "Hi" } }, max_tokens = 64, temperature = 0.1,
      top_p = 0.9, stop = { "###" } }
    assert.are.equal("POST", r.method)
    assert.are.equal("/api/chat", r.path)
    assert.are.equal("llama3.2", body.model)
    assert.is_false(body.stream)
    assert.is_true(F.same({ { role = "system", content = "Be brief." },
                            { role = "user", content = "Hi" } }, body.messages))
    assert.is_true(F.same({ num_predict = 64, temperature = 0.1, top_p = 0.9, stop = { "###" } },
      body.options))
    assert.is_nil(body.think)
    assert.is_nil(body.format)
  end)

  it("streams when asked and leaves out empty options", function()
    local body, r = wire{ model = "m", messages = {}, stream = true }
    assert.is_true(body.stream)
    assert.is_nil(body.options)
    assert.are.equal("application/x-ndjson", r.headers.accept)
  end)

  it("sends images as a base64 list and refuses image URLs", function()
    local body = wire{ model = "llava", messages = { { role = "user", content = {
      { type = "text", text = "What is " }, { type = "text", text = "this?" },
      { type = "image", data = "iVBOR" },
      { type = "image", url = "data:image/png;base64,AAAA" } } } } }
    assert.is_true(F.same({ role = "user", content = "What is this?", images = { "iVBOR", "AAAA" } },
      body.messages[1]))
    assert.has_error(function()
      P.build_request{ model = "m", messages = { { role = "user", content = {
        { type = "image", url = "https://x/cat.png" } } } } }
    end)
  end)

  it("maps tools, tool calls, tool results and thinking", function()
    local body = wire{ model = "qwen3", messages = {
      { role = "user", content = "Weather?" },
      { role = "assistant", content = {
          { type = "reasoning", text = "Need the tool.", provider_data = { provider = "ollama" } },
          { type = "reasoning", text = "alien", provider_data = { provider = "anthropic" } },
          { type = "text", text = "" } },
        tool_calls = { { id = "c1", name = "weather", arguments = { city = "Paris" } },
                       { name = "now", arguments_json = "" } } },
      { role = "tool", tool_call_id = "c1", content = { temp = 20 } },
      { role = "tool", name = "now", content = "noon" },
    }, tools = {
      { name = "weather", description = "Weather.", run = function() end,
        parameters = { type = "object", properties = { city = { type = "string" } }, required = { "city" } } },
    } }
    assert.is_true(F.same({ role = "assistant", content = "", thinking = "Need the tool.",
      tool_calls = { { id = "c1", ["function"] = { name = "weather", arguments = { city = "Paris" } } },
                     { ["function"] = { name = "now", arguments = {} } } } }, body.messages[2]))
    assert.is_true(F.same({ role = "tool", content = '{"temp":20}', tool_name = "weather" }, body.messages[3]))
    assert.is_true(F.same({ role = "tool", content = "noon", tool_name = "now" }, body.messages[4]))
    assert.is_true(F.same({ { type = "function", ["function"] = { name = "weather", description = "Weather.",
      parameters = { type = "object", properties = { city = { type = "string" } }, required = { "city" } } } } },
      body.tools))
  end)

  it("maps response_format to format and reasoning to think", function()
    local body = wire{ model = "m", messages = {}, response_format = { type = "json_schema",
      schema = { type = "object", properties = { n = { type = "string" } }, required = { "n" } } },
      reasoning = { effort = "high" } }
    assert.is_true(F.same({ type = "object", properties = { n = { type = "string" } }, required = { "n" } },
      body.format))
    assert.is_true(body.think)
    assert.are.equal("json", wire{ model = "m", messages = {}, response_format = { type = "json_object" } }.format)
    assert.are.equal("low", wire{ model = "gpt-oss:20b", messages = {}, reasoning = { effort = "low" } }.think)
    assert.is_false(wire{ model = "m", messages = {}, reasoning = false }.think)
  end)

  it("merges extra last", function()
    local body = wire{ model = "m", messages = {}, max_tokens = 5,
                       extra = { keep_alive = "5m", options = { num_ctx = 8192 } } }
    assert.are.equal("5m", body.keep_alive)
    assert.is_true(F.same({ num_ctx = 8192 }, body.options))
  end)
end)

describe("ollama decode_response", function()
  it("reads text, thinking, usage and finish reason", function()
    local body = json.decode([[{"model":"qwen3","created_at":"2025-01-01T00:00:00Z",
      "message":{"role":"assistant","content":"Hello!","thinking":"Greet."},
      "done":true,"done_reason":"stop","prompt_eval_count":11,"eval_count":4}]])
    local resp = P.decode_response(body, {})
    assert.are.equal("Hello!", resp.text)
    assert.are.equal("Greet.", resp.reasoning)
    assert.are.equal("stop", resp.finish_reason)
    assert.are.equal("stop", resp.raw_finish_reason)
    assert.are.same({ input_tokens = 11, output_tokens = 4, total_tokens = 15 }, resp.usage)
    assert.are.equal("qwen3", resp.model)
    assert.are.equal(body, resp.raw)
    assert.are.same({ { type = "reasoning", text = "Greet.", provider_data = { provider = "ollama" } },
                      { type = "text", text = "Hello!" } }, resp.message.content)
    -- the message goes back with its thinking
    local next_body = wire{ model = "m", messages = { resp.message } }
    assert.are.equal("Greet.", next_body.messages[1].thinking)
  end)

  it("reads whole tool calls and maps length", function()
    local body = json.decode([[{"model":"m","message":{"role":"assistant","content":"",
      "tool_calls":[{"function":{"name":"weather","arguments":{"city":"Paris"}}}]},
      "done":true,"done_reason":"stop","prompt_eval_count":30,"eval_count":9}]])
    local resp = P.decode_response(body, {})
    assert.are.equal("tool_calls", resp.finish_reason)
    assert.are.equal("weather", resp.tool_calls[1].name)
    assert.are.equal("call_1", resp.tool_calls[1].id)   -- generated: the server sent none
    assert.are.same({ provider = "ollama", id_generated = true }, resp.tool_calls[1].provider_data)
    assert.are.equal("Paris", resp.tool_calls[1].arguments.city)
    assert.are.equal('{"city":"Paris"}', resp.tool_calls[1].arguments_json)
    assert.are.equal(resp.tool_calls, resp.message.tool_calls)
    local cut = P.decode_response({ message = { content = "Once" }, done = true, done_reason = "length" }, {})
    assert.are.equal("length", cut.finish_reason)
    assert.are.equal("Once", cut.message.content)
  end)

  it("decodes a JSON reply into parsed", function()
    local resp = P.decode_response({ message = { content = '{"n":"Kim"}' }, done = true, done_reason = "stop" },
      { response_format = { type = "json_object" } })
    assert.are.equal("Kim", resp.parsed.n)
  end)
end)

describe("ollama decode_error", function()
  it("reads Ollama's error string", function()
    local e = P.decode_error(404, {}, '{"error":"model \\"nope\\" not found, try pulling it first"}')
    assert.are.equal("not_found", e.kind)
    assert.are.equal('model "nope" not found, try pulling it first', e.message)
    assert.are.equal(404, e.status)
    assert.are.equal("table", type(e.body))
    assert.are.equal("bad_request", P.decode_error(400, {}, '{"error":"invalid options"}').kind)
    assert.are.equal("server", P.decode_error(500, {}, "").kind)
  end)
end)

describe("ollama stream", function()
  it("turns lines into text, reasoning, tool-call and usage events", function()
    local resp, err, evs = run({
      line{ model = "m", message = { role = "assistant", content = "", thinking = "Hm" }, done = false },
      line{ model = "m", message = { role = "assistant", content = "Hi" }, done = false },
      line{ model = "m", message = { role = "assistant", content = "", tool_calls = {
        { ["function"] = { name = "f", arguments = { a = 1 } } } } }, done = false },
      line{ model = "m", message = { role = "assistant", content = "" }, done = true, done_reason = "stop",
            prompt_eval_count = 5, eval_count = 3 },
    })
    assert.is_nil(err)
    assert.are.same({ "reasoning", "text", "tool_call", "tool_call_done", "usage" }, types(evs))
    assert.are.equal("f", evs[3].name)
    assert.are.equal(1, evs[3].index)
    assert.are.equal('{"a":1}', evs[3].arguments_delta)
    assert.are.equal("tool_calls", resp.finish_reason)
    assert.are.equal("Hi", resp.text)
    assert.are.equal("Hm", resp.reasoning)
    assert.are.equal(8, resp.usage.total_tokens)
    assert.are.equal("Hi", resp.raw.message.content)
    assert.are.equal("f", resp.raw.message.tool_calls[1]["function"].name)
  end)

  it("needs done: true to be complete", function()
    local resp, err = run({ line{ message = { content = "Hi" }, done = false } })
    assert.is_nil(resp)
    assert.are.equal("protocol", err.kind)
  end)

  it("turns an error line into an error event", function()
    local resp, err, evs = run({ line{ message = { content = "Hi" }, done = false },
                                 line{ error = "an error was encountered while running the model" } })
    assert.is_nil(resp)
    assert.are.equal("server", err.kind)
    assert.are.equal("an error was encountered while running the model", err.message)
    assert.are.equal("error", evs[2].type)
  end)

  it("emits raw for a line without meaning and reports bad JSON", function()
    local _, _, evs = run({ line{ model = "m", message = { content = "" }, done = false } })
    assert.are.same({ "raw" }, types(evs))
    local resp, err = run({ { data = "{oops" } })
    assert.is_nil(resp)
    assert.are.equal("protocol", err.kind)
  end)
end)

describe("ollama NDJSON transcripts", function()
  local names = {}
  for _, n in ipairs(F.list(root .. "/tests", "ndjson")) do
    local stem = n:match("^(ollama_.*)%.ndjson$")
    if stem then names[#names + 1] = stem end
  end

  it("are present", function()
    assert.is_true(#names >= 3, "tests/ndjson/ollama_*.ndjson")
  end)

  for _, stem in ipairs(names) do
    local path = root .. "/tests/ndjson/" .. stem
    local exp = F.read_json(path .. ".expect.json")

    local function check(framed)
      assert.are.equal(exp.lines, #framed)
      local resp, err, evs = run(framed)
      assert.is_nil(err, err and err.message)
      assert.are.equal(exp.text, resp.text)
      assert.are.equal(exp.finish_reason, resp.finish_reason)
      assert.are.equal(exp.raw_finish_reason, resp.raw_finish_reason)
      assert.are.equal(exp.reasoning_text, resp.reasoning)
      assert.are.equal(exp.usage.input_tokens, resp.usage.input_tokens)
      assert.are.equal(exp.usage.output_tokens, resp.usage.output_tokens)
      assert.are.equal("integer", require("support.version").math_type(resp.usage.input_tokens))
      assert.are.equal(#exp.tool_calls, #resp.tool_calls)
      for i, ec in ipairs(exp.tool_calls) do
        local c = resp.tool_calls[i]
        assert.are.equal(ec.name, c.name)
        assert.are.equal("call_" .. i, c.id)   -- Ollama sends none: generated
        assert.is_true(F.same(ec.arguments, c.arguments))
      end
      -- the events say what the response says
      local text, reasoning, args, done = {}, {}, {}, 0
      for _, e in ipairs(evs) do
        assert.is_not_nil(e.raw)
        if e.type == "text" then text[#text + 1] = e.text
        elseif e.type == "reasoning" then reasoning[#reasoning + 1] = e.text
        elseif e.type == "tool_call" then
          args[e.index] = (args[e.index] or "") .. e.arguments_delta
        elseif e.type == "tool_call_done" then done = done + 1
        elseif e.type == "error" then error("error event in a good stream") end
      end
      assert.are.equal(resp.text, table.concat(text))
      assert.are.equal(resp.reasoning or "", table.concat(reasoning))
      assert.are.equal(#resp.tool_calls, done)
      for i, c in ipairs(resp.tool_calls) do assert.are.equal(c.arguments_json, args[i]) end
    end

    it(stem .. " (whole)", function()
      assert.is_not_nil(exp, "missing " .. stem .. ".expect.json")
      check(frame({ F.read(path .. ".ndjson") }))
    end)

    it(stem .. " (" .. SPLITS .. " random splits and byte by byte)", function()
      local bytes = F.read(path .. ".ndjson")
      for _, chunks in ipairs(F.splits(bytes, SPLITS, #bytes)) do check(frame(chunks)) end
      local singles = {}
      for i = 1, #bytes do singles[i] = bytes:sub(i, i) end
      check(frame(singles))
    end)
  end
end)
