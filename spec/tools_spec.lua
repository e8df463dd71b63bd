-- Tools end to end: llm.tool definitions, client:run_tools against scripted mock
-- conversations for every provider (the same tools and loop code for each), the tool
-- results the mock received in each provider's format, and streamed tool calls from the
-- recorded fixtures. Concurrency is shown by the tools' own start/finish records.
local mockmod = require("support.mock")
local F = require("support.fixtures")
local json = require("llm.json")
local llm = require("llm")

local mock
setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

local unique = 0
local function key()
  unique = unique + 1
  return "tools-" .. unique .. "-" .. os.time()
end

local function bodies()
  local out = {}
  for i, r in ipairs(mock:requests()) do out[i] = assert(json.decode(r.body)) end
  return out
end

------------------------------------------------------------------------------------------
-- Providers, and how each one carries tool results in a request body:
-- results(body) -> list of { id, name, content (string or table), is_error (nil when the
-- format has no such field) } in body order.

local function chat_results(body)
  local out = {}
  for _, m in ipairs(body.messages or {}) do
    if m.role == "tool" then out[#out + 1] = { id = m.tool_call_id, content = m.content } end
  end
  return out
end

local function responses_results(body)
  local out = {}
  if type(body.input) == "table" then
    for _, it in ipairs(body.input) do
      if it.type == "function_call_output" then out[#out + 1] = { id = it.call_id, content = it.output } end
    end
  end
  return out
end

local function anthropic_results(body)
  local out = {}
  for _, m in ipairs(body.messages or {}) do
    if m.role == "user" and type(m.content) == "table" then
      for _, b in ipairs(m.content) do
        if b.type == "tool_result" then
          out[#out + 1] = { id = b.tool_use_id, content = b.content, is_error = b.is_error == true }
        end
      end
    end
  end
  return out
end

local function gemini_results(body)
  local out = {}
  for _, c in ipairs(body.contents or {}) do
    for _, p in ipairs(c.parts or {}) do
      local fr = p.functionResponse
      if fr then
        local r = fr.response or {}
        out[#out + 1] = { id = fr.id, name = fr.name, is_error = r.error ~= nil,
                          content = r.error ~= nil and r.error or r.output }
      end
    end
  end
  return out
end

local function ollama_results(body)
  local out = {}
  for _, m in ipairs(body.messages or {}) do
    if m.role == "tool" then out[#out + 1] = { name = m.tool_name, content = m.content } end
  end
  return out
end

local PROVIDERS = {
  { label = "openai", name = "openai", path = "/v1", results = chat_results, raw_json = true },
  { label = "openai responses", name = "openai", module = "openai_responses", path = "/v1", api = "responses",
    results = responses_results, raw_json = true },
  { label = "anthropic", name = "anthropic", path = "", results = anthropic_results, has_is_error = true },
  { label = "gemini", name = "gemini", module = "gemini", path = "/v1beta", results = gemini_results,
    has_is_error = true, by_name = true },
  { label = "ollama", name = "ollama", module = "ollama", path = "", results = ollama_results, by_name = true },
}

local function client_for(p, script)
  local c = llm.client(p.name, { model = "test-model", base_url = mock.url .. p.path, api_key = "sk-test",
                               max_retries = 0, api = p.api,
                               headers = { ["x-mock-script"] = script, ["x-mock-key"] = key() } })
  return c
end

------------------------------------------------------------------------------------------
-- One set of tools, used unchanged with every provider.

local function make_tools(rec)
  rec = rec or {}
  local function note(s) rec[#rec + 1] = s end
  local weather = llm.tool{
    name = "get_weather", description = "Current weather for a city",
    parameters = { type = "object", properties = { city = { type = "string", minLength = 1 } },
                   required = { "city" }, additionalProperties = false },
    run = function(args)
      note("start " .. args.city)
      llm.sleep(args.city == "Seoul" and 0.05 or 0.02)
      note("finish " .. args.city)
      return { city = args.city, celsius = args.city == "Seoul" and 21 or 24 }
    end,
  }
  local lookup = llm.tool{
    name = "lookup", description = "Where a person lives",
    parameters = { type = "object", properties = { person = { type = "string" } }, required = { "person" } },
    run = function(args) note("lookup " .. args.person); return args.person .. " lives in Seoul" end,
  }
  local add = llm.tool{
    name = "add", description = "Adds two integers",
    parameters = { type = "object", properties = { a = { type = "integer" }, b = { type = "integer" } },
                   required = { "a", "b" } },
    run = function(args) note("add"); return tostring(args.a + args.b) end,
  }
  local explode = llm.tool{
    name = "explode", description = "Always fails",
    parameters = { type = "object", properties = { why = { type = "string" } } },
    run = function() error("kaboom: the detonator is missing") end,
  }
  return { weather, lookup, add, explode }
end

local USER = { { role = "user", content = "What is the weather in Seoul and Busan?" } }

local function content_text(c)
  if type(c) == "table" then return json.encode(c) end
  return tostring(c)
end

for _, p in ipairs(PROVIDERS) do
  describe("run_tools with " .. p.label, function()
    for _, streaming in ipairs({ false, true }) do
      local mode = streaming and " (streamed)" or ""

      it("runs two parallel calls of one round concurrently, results in call order" .. mode, function()
        local rec = {}
        local events = {}
        local resp, err = client_for(p, "two_cities"):run_tools{
          messages = USER, tools = make_tools(rec), stream = streaming,
          on_event = function(ev, round) events[#events + 1] = { ev.type, round } end,
        }
        assert.is_nil(err)
        assert.equal("Seoul is 21 C and Busan is 24 C.", resp.text)
        assert.equal("stop", resp.finish_reason)
        -- both tools started before either finished
        assert.equal(4, #rec)
        assert.same({ "start Seoul", "start Busan" }, { rec[1], rec[2] })
        assert.truthy(rec[3]:match("^finish") and rec[4]:match("^finish"))
        -- steps and transcript
        assert.equal(2, #resp.steps)
        assert.equal(2, #resp.steps[1].calls)
        assert.equal(2, #resp.steps[1].results)
        assert.equal(0, #resp.steps[2].calls)
        assert.equal(resp, resp.steps[2].response)
        local m = resp.messages
        assert.equal(5, #m)
        assert.same({ "user", "assistant", "tool", "tool", "assistant" },
                    { m[1].role, m[2].role, m[3].role, m[4].role, m[5].role })
        assert.equal(resp.steps[1].calls[1].id, m[3].tool_call_id)
        assert.equal("get_weather", m[3].name)
        assert.is_false(m[3].is_error)
        -- the second request carries both results, Seoul's first although it finished last
        local b = bodies()
        assert.equal(2, #b)
        assert.equal(0, #p.results(b[1]))
        local res = p.results(b[2])
        assert.equal(2, #res)
        assert.truthy(content_text(res[1].content):find("Seoul", 1, true))
        assert.truthy(content_text(res[2].content):find("Busan", 1, true))
        if not p.by_name then
          assert.equal(resp.steps[1].calls[1].id, res[1].id)
          assert.equal(resp.steps[1].calls[2].id, res[2].id)
        end
        if p.has_is_error then assert.is_false(res[1].is_error) end
        if streaming then
          local seen = {}
          for _, e in ipairs(events) do seen[e[1] .. "@" .. e[2]] = true end
          assert.truthy(seen["tool_call@1"])
          assert.truthy(seen["done@1"])
          assert.truthy(seen["text@2"])
          assert.truthy(seen["done@2"])
        else
          assert.equal(0, #events)
        end
      end)

      it("follows a three-step chain" .. mode, function()
        local rec = {}
        local resp, err = client_for(p, "chain"):run_tools{ messages = USER, tools = make_tools(rec),
                                                            stream = streaming }
        assert.is_nil(err)
        assert.equal(4, #resp.steps)
        assert.same({ "lookup Kim", "start Seoul", "finish Seoul", "add" }, rec)
        assert.equal("lookup", resp.steps[1].calls[1].name)
        assert.equal("get_weather", resp.steps[2].calls[1].name)
        assert.equal("add", resp.steps[3].calls[1].name)
        assert.equal("24", resp.steps[3].results[1].content)
        assert.truthy(resp.text:find("Kim lives in Seoul", 1, true))
        local b = bodies()
        assert.equal(4, #b)
        local res = p.results(b[4])
        assert.equal(3, #res)
        assert.equal("Kim lives in Seoul", res[1].content)
        assert.equal("24", res[3].content)
        assert.equal(8, #resp.messages) -- user, 3 x (assistant, tool), the answer
      end)
    end

    it("answers a call to an unknown tool with an error result", function()
      local resp, err = client_for(p, "unknown_tool"):run_tools{ messages = USER, tools = make_tools() }
      assert.is_nil(err)
      assert.equal("I cannot teleport you.", resp.text)
      local r = resp.steps[1].results[1]
      assert.is_true(r.is_error)
      assert.truthy(r.content:find('unknown tool "teleport"', 1, true))
      assert.truthy(r.content:find("get_weather", 1, true))
      local res = p.results(bodies()[2])
      assert.equal(1, #res)
      assert.truthy(content_text(res[1].content):find("unknown tool", 1, true))
      if p.has_is_error then assert.is_true(res[1].is_error) end
    end)

    it("sends schema errors back and runs the corrected call of the next round", function()
      local rec = {}
      local resp, err = client_for(p, "bad_args"):run_tools{ messages = USER, tools = make_tools(rec) }
      assert.is_nil(err)
      assert.equal("Seoul is 21 C.", resp.text)
      assert.equal(3, #resp.steps)
      local r1 = resp.steps[1].results[1]
      assert.is_true(r1.is_error)
      assert.truthy(r1.content:find("args.city: expected string, got number", 1, true))
      assert.truthy(r1.content:find("args.planet: unknown property", 1, true))
      assert.is_false(resp.steps[2].results[1].is_error)
      assert.same({ "start Seoul", "finish Seoul" }, rec) -- the bad call never ran
      local b = bodies()
      local res2 = p.results(b[2])
      assert.truthy(content_text(res2[1].content):find("expected string, got number", 1, true))
      if p.has_is_error then assert.is_true(res2[1].is_error) end
      local res3 = p.results(b[3])
      assert.equal(2, #res3)
      if p.has_is_error then assert.is_false(res3[2].is_error) end
      assert.truthy(content_text(res3[2].content):find("21", 1, true))
    end)

    if p.raw_json then
      it("answers arguments that are not valid JSON with an error result", function()
        local rec = {}
        local resp, err = client_for(p, "bad_json"):run_tools{ messages = USER, tools = make_tools(rec) }
        assert.is_nil(err)
        assert.equal(3, #resp.steps)
        assert.is_nil(resp.steps[1].calls[1].arguments)
        local r1 = resp.steps[1].results[1]
        assert.is_true(r1.is_error)
        assert.truthy(r1.content:find("not valid JSON", 1, true))
        assert.same({ "start Seoul", "finish Seoul" }, rec)
      end)
    end

    it("turns a tool that raises into an error result without position or traceback", function()
      local resp, err = client_for(p, "tool_raises"):run_tools{ messages = USER, tools = make_tools() }
      assert.is_nil(err)
      assert.equal("The tool failed; sorry.", resp.text)
      local r = resp.steps[1].results[1]
      assert.is_true(r.is_error)
      assert.equal("kaboom: the detonator is missing", r.content)
      local res = p.results(bodies()[2])
      assert.equal("kaboom: the detonator is missing", content_text(res[1].content))
      if p.has_is_error then assert.is_true(res[1].is_error) end
    end)

    it("stops after max_steps round trips with finish_reason max_steps", function()
      local rec = {}
      local resp, err = client_for(p, "endless"):run_tools{ messages = USER, tools = make_tools(rec),
                                                            max_steps = 3 }
      assert.is_nil(err)
      assert.equal("max_steps", resp.finish_reason)
      assert.equal(3, #resp.steps)
      assert.equal(3, #bodies())
      assert.equal(6, #rec) -- the last round's calls ran too, so the transcript is complete
      local last = resp.messages[#resp.messages]
      assert.equal("tool", last.role)
      assert.equal(1 + 3 * 2, #resp.messages)
    end)
  end)
end

------------------------------------------------------------------------------------------
describe("run_tools options (openai)", function()
  local p = PROVIDERS[1]

  it("lets before_tool_call deny a call or answer it, and on_tool_call see each result", function()
    local rec, seen = {}, {}
    local resp = assert(client_for(p, "two_cities"):run_tools{
      messages = USER, tools = make_tools(rec),
      before_tool_call = function(call)
        if call.arguments.city == "Seoul" then return false end
        return { city = call.arguments.city, celsius = 99, cached = true }
      end,
      on_tool_call = function(call, result, msg)
        seen[#seen + 1] = call.arguments.city .. "=" .. tostring(msg.is_error)
        if call.arguments.city == "Busan" then assert.same({ city = "Busan", celsius = 99, cached = true }, result)
        else assert.is_nil(result) end
      end,
    })
    assert.same({}, rec) -- neither tool ran
    table.sort(seen)
    assert.same({ "Busan=false", "Seoul=true" }, seen)
    local r = resp.steps[1].results
    assert.is_true(r[1].is_error)
    assert.truthy(r[1].content:find("denied", 1, true))
    assert.same({ city = "Busan", celsius = 99, cached = true }, r[2].content)
    local res = chat_results(bodies()[2])
    assert.equal('{"cached":true,"celsius":99,"city":"Busan"}', res[2].content)
  end)

  it("runs the calls one after another with parallel = false", function()
    local rec = {}
    assert(client_for(p, "two_cities"):run_tools{ messages = USER, tools = make_tools(rec), parallel = false })
    assert.same({ "start Seoul", "finish Seoul", "start Busan", "finish Busan" }, rec)
  end)

  it("gives a tool that overruns its timeout an error result; the other call still answers", function()
    local slow = llm.tool{ name = "slow", parameters = { type = "object", properties = {} }, timeout = 0.05,
                           run = function() llm.sleep(30); return "never" end }
    local tools = make_tools()
    tools[#tools + 1] = slow
    local resp = assert(client_for(p, "slow_tool"):run_tools{ messages = USER, tools = tools })
    local r = resp.steps[1].results
    assert.is_true(r[1].is_error)
    assert.truthy(r[1].content:find("timed out", 1, true))
    assert.is_false(r[2].is_error)
  end)

  it("applies tool_timeout to every tool", function()
    local slow = llm.tool{ name = "slow", run = function() llm.sleep(30) end }
    local tools = make_tools()
    tools[#tools + 1] = slow
    local resp = assert(client_for(p, "slow_tool"):run_tools{ messages = USER, tools = tools, tool_timeout = 0.05 })
    assert.truthy(resp.steps[1].results[1].content:find("timed out after 0.05 s", 1, true))
  end)

  it("sends nil, err as an error result and other values as text", function()
    local weather = llm.tool{ name = "get_weather", parameters = { type = "object", properties = { city = { type = "string" } } },
      run = function(args)
        if args.city == "Seoul" then return nil, "station offline" end
        return 24
      end }
    local resp = assert(client_for(p, "two_cities"):run_tools{ messages = USER, tools = { weather } })
    local r = resp.steps[1].results
    assert.same({ true, "station offline" }, { r[1].is_error, r[1].content })
    assert.same({ false, "24" }, { r[2].is_error, r[2].content })
  end)

  it("hands calls to a tool without run back to the application", function()
    local manual = llm.tool{ name = "get_weather", parameters = { type = "object", properties = { city = { type = "string" } } } }
    local resp = assert(client_for(p, "two_cities"):run_tools{ messages = USER, tools = { manual } })
    assert.equal("tool_calls", resp.finish_reason)
    assert.equal(2, #resp.tool_calls)
    assert.equal(1, #resp.steps)
    assert.equal("assistant", resp.messages[#resp.messages].role)
  end)

  it("passes hosted tools through and forces tool_choice on the first round only", function()
    local tools = make_tools()
    tools[#tools + 1] = llm.tool{ type = "web_search_preview" }
    assert(client_for(p, "two_cities"):run_tools{ messages = USER, tools = tools, tool_choice = "required",
                                                  temperature = 0.5 })
    local b = bodies()
    assert.equal("required", b[1].tool_choice)
    assert.is_nil(b[2].tool_choice)
    assert.equal(0.5, b[2].temperature)
    assert.same({ type = "web_search_preview" }, b[1].tools[5])
    assert.equal("get_weather", b[1].tools[1]["function"].name)
    assert.is_nil(b[1].tools[1].run)
  end)

  it("works inside a task while other tasks run", function()
    local ticks = 0
    local resp = llm.run(function()
      local ticker = llm.spawn(function()
        for _ = 1, 1000 do llm.sleep(0.001); ticks = ticks + 1 end
      end)
      local r = assert(client_for(p, "two_cities"):run_tools{ messages = USER, tools = make_tools() })
      ticker:cancel()
      return r
    end)
    assert.equal("Seoul is 21 C and Busan is 24 C.", resp.text)
    assert.is_true(ticks > 0)
  end)

  it("continues from resp.messages", function()
    local c = client_for(p, "two_cities")
    local r1 = assert(c:run_tools{ messages = USER, tools = make_tools() })
    local msgs = r1.messages
    msgs[#msgs + 1] = { role = "user", content = "Thanks" }
    local r2 = assert(c:run_tools{ messages = msgs, tools = make_tools() })
    assert.equal(1, #r2.steps)
    assert.equal(7, #r2.messages)
    assert.equal(6, #msgs) -- the input list was copied, not extended
    assert.are_not.equal(msgs, r2.messages)
  end)

  it("returns nil, err and the partial transcript when a round fails", function()
    local c = llm.client("openai", { model = "m", base_url = mock.url .. "/v1", api_key = "sk-test", max_retries = 0,
                                     headers = { ["x-mock-fault"] = "status=400" } })
    local resp, err, partial = c:run_tools{ messages = USER, tools = make_tools() }
    assert.is_nil(resp)
    assert.equal("bad_request", err.kind)
    assert.equal(0, #partial.steps)
    assert.equal(1, #partial.messages)
  end)

  it("raises on misuse and propagates errors of the application's hooks", function()
    local c = client_for(p, "two_cities")
    assert.has_error(function() c:run_tools("hi") end)
    assert.has_error(function() c:run_tools{ messages = USER, max_steps = 0 } end)
    assert.has_error(function() c:run_tools{ messages = USER, tools = { { name = "bad name" } } } end)
    assert.has_error(function()
      c:run_tools{ messages = USER, tools = make_tools(), on_tool_call = function() error("hook bug") end }
    end, "hook bug")
  end)
end)

------------------------------------------------------------------------------------------
describe("run_tools with api = responses", function()
  it("passes api through, so tool results go out as function_call_output items", function()
    local resp = assert(client_for({ path = "/v1", name = "openai" }, "two_cities"):run_tools{
      messages = USER, tools = make_tools(), api = "responses" })
    assert.equal("Seoul is 21 C and Busan is 24 C.", resp.text)
    local reqs = mock:requests()
    assert.equal("/v1/responses", reqs[2].path)
    local res = responses_results(assert(json.decode(reqs[2].body)))
    assert.equal(2, #res)
    assert.equal(resp.steps[1].calls[1].id, res[1].id)
  end)
end)

------------------------------------------------------------------------------------------
describe("llm.tool", function()
  it("returns a checked copy that every provider accepts", function()
    local def = { name = "get_weather", description = "d",
                  parameters = { type = "object", properties = { city = { type = "string" } } },
                  run = function() end, strict = true }
    local t = llm.tool(def)
    assert.are_not.equal(def, t)
    assert.equal("get_weather", t.name)
    assert.equal(t, llm.tool(t))
    assert.equal(def.run, t.run)
  end)

  it("defaults parameters to an empty object schema", function()
    local t = llm.tool{ name = "now", run = function() return "noon" end }
    assert.same({ type = "object", properties = {} }, t.parameters)
  end)

  it("flattens the OpenAI wire shape", function()
    local t = llm.tool{ type = "function", ["function"] = { name = "f", parameters = { type = "object" } },
                        run = function() end }
    assert.equal("f", t.name)
    assert.is_nil(t.type)
    assert.is_nil(t["function"])
  end)

  it("passes hosted tools through unchanged", function()
    local h = { type = "web_search" }
    assert.equal(h, llm.tool(h))
  end)

  it("rejects bad definitions", function()
    assert.has_error(function() llm.tool("x") end)
    assert.has_error(function() llm.tool{ name = "has space" } end)
    assert.has_error(function() llm.tool{ name = "1starts_with_digit" } end)
    assert.has_error(function() llm.tool{ name = string.rep("a", 65) } end)
    assert.has_error(function() llm.tool{ name = "f", parameters = { type = "string" } } end)
    assert.has_error(function() llm.tool{ name = "f", parameters = { type = "object", properties = { a = { type = "str" } } } } end)
    assert.has_error(function() llm.tool{ name = "f", run = 42 } end)
    assert.has_error(function() llm.tool{ name = "f", timeout = -1 } end)
    assert.has_error(function() llm.tool{ name = "f", strict = "yes" } end)
    local ok, err = pcall(llm.tool, { name = "f", parameters = { type = "object", properties = { a = { type = "str" } } } })
    assert.is_false(ok)
    assert.truthy(err:find("parameters.properties.a.type: unknown type", 1, true))
  end)
end)

------------------------------------------------------------------------------------------
describe("streamed tool calls from recorded fixtures", function()
  local dir = F.dir()
  if not dir then
    print("fixtures absent: streamed tool-call fixtures not run")
    return
  end
  local CASES = {
    { "openai_chat", "chat_parallel_tool_calls_stream", "openai", "/v1" },
    { "openai_chat", "chat_tool_call_stream", "openai", "/v1" },
    { "openai_chat", "chat_tool_call_stream_2", "openai", "/v1" },
    { "anthropic", "anthropic_tool_use_stream", "anthropic", "" },
    { "anthropic", "anthropic_tool_use_stream_2", "anthropic", "" },
    { "anthropic", "anthropic_tool_use_stream_3", "anthropic", "" },
    { "gemini", "gemini_function_call_stream", "gemini", "/v1beta", "gemini" },
    { "gemini", "gemini_function_call_thought_signature_stream", "gemini", "/v1beta", "gemini" },
    { "openai_responses", "responses_function_call_stream", "openai", "/v1", "openai_responses", "responses" },
    { "openai_responses", "responses_function_call_stream_2", "openai", "/v1", "openai_responses", "responses" },
  }
  local null = json.null
  for _, cs in ipairs(CASES) do
    local folder, name, provider, path, api = cs[1], cs[2], cs[3], cs[4], cs[6]
    local exp = F.read_json(dir .. "/" .. folder .. "/" .. name .. ".expect.json")
    if exp then
      it("gives the calls of " .. folder .. "/" .. name .. " as deltas, done events and final calls", function()
        local c = llm.client(provider, { model = "m", base_url = mock.url .. path, api_key = "sk-test",
          max_retries = 0, api = api,
          headers = { ["x-mock-fixture"] = folder .. "/" .. name, ["x-mock-split"] = "random" } })
        local s = assert(c:stream("hi"))
        local deltas, names, ids, done = {}, {}, {}, {}
        for ev in s:events() do
          if ev.type == "tool_call" then
            deltas[ev.index] = (deltas[ev.index] or "") .. (ev.arguments_delta or "")
            if ev.name then names[ev.index] = ev.name end
            if ev.id then ids[ev.index] = ev.id end
          elseif ev.type == "tool_call_done" then
            done[#done + 1] = ev.call
          elseif ev.type == "error" then
            error("stream failed: " .. tostring(ev.error))
          end
        end
        local resp = assert(s:final())
        local want = exp.tool_calls or {}
        assert.equal(#want, #resp.tool_calls)
        assert.equal(#want, #done)
        assert.equal("tool_calls", resp.finish_reason)
        for i, w in ipairs(want) do
          local got = resp.tool_calls[i]
          -- a call the server sent without an id gets call_<n> (API §12)
          local wid = w.id ~= null and w.id or ("call_" .. i)
          assert.equal(wid, got.id)
          assert.equal(w.name, got.name)
          assert.is_true(F.same(w.arguments, got.arguments), "arguments of call " .. i)
          assert.equal(w.name, names[i])
          if wid then assert.equal(wid, ids[i]) end
          assert.equal(got.arguments_json, deltas[i])
          local from_deltas = deltas[i] == "" and {} or json.decode(deltas[i]) -- "" means {}
          assert.is_true(F.same(w.arguments, from_deltas), "deltas of call " .. i)
          assert.equal(w.name, done[i].name)
          assert.is_true(F.same(w.arguments, done[i].arguments))
        end
        assert.same(resp.tool_calls, resp.message.tool_calls)
      end)
    end
  end
end)
