-- Structured output you can trust (API §12): resp.parsed only when the reply is valid JSON
-- that satisfies the schema, else resp.parse_error with the path; the wire shape of each
-- route (Anthropic through a forced tool); streams emit partial objects ending in the whole.
local json = require("llm.json")
local partial_json = require("llm.partial_json")
local mtype = require("llm.compat").math_type
local mockmod = require("support.mock")

local mock
setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock.server:reset() end)

local function client(provider, opts)
  return mock.server:client(provider, mockmod.merge({ max_retries = 0 }, opts))
end

local function last()
  local reqs = mock.server:requests()
  return reqs[#reqs].json
end

local SCHEMA = { type = "object", properties = { name = { type = "string" },
  moons = { type = "array", items = { type = "string" } } }, required = { "name", "moons" },
  additionalProperties = false }
local FORMAT = { type = "json_schema", name = "planet", schema = SCHEMA }
local GOOD = { name = "Jupiter", moons = { "Io", "Europa", "Ganymede" } }
local BAD = { name = "Mars", moons = { "Phobos", 2 } }

local function req(extra)
  local r = { response_format = FORMAT, messages = { { role = "user", content = "Describe a planet" } } }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

local ROUTES = { { "openai" }, { "openai", "responses" }, { "anthropic" }, { "gemini" }, { "ollama" } }
local function label(route) return route[1] .. (route[2] and " (responses)" or "") end

describe("structured output on the wire", function()
  it("OpenAI Chat: response_format json_schema", function()
    assert(client("openai"):chat(req()))
    local rf = last().response_format
    assert.are.equal("json_schema", rf.type)
    assert.are.equal("planet", rf.json_schema.name)
    assert.are.same({ "name", "moons" }, rf.json_schema.schema.required)
  end)

  it("OpenAI Responses: text.format", function()
    assert(client("openai", { api = "responses" }):chat(req()))
    local f = last().text.format
    assert.are.equal("json_schema", f.type)
    assert.are.equal("planet", f.name)
    assert.are.equal("object", f.schema.type)
  end)

  it("Anthropic: a forced tool whose input is the object", function()
    mock.server:push{ json = GOOD }
    local resp = assert(client("anthropic"):chat(req()))
    local body = last()
    assert.are.same({ type = "tool", name = "planet" }, body.tool_choice)
    local tool = body.tools[#body.tools]
    assert.are.equal("planet", tool.name)
    assert.are.same({ "name", "moons" }, tool.input_schema.required)
    assert.is_nil(body.system)                        -- no instruction in the prompt
    assert.are.same({}, resp.tool_calls)               -- the forced tool is not a tool call
    assert.are.equal("stop", resp.finish_reason)
    assert.are.equal("tool_use", resp.raw_finish_reason)
    assert.are.same(GOOD, json.decode(resp.text))
    assert.are.same(GOOD, resp.parsed)
    assert.are.equal(resp.text, resp.message.content[1].text)   -- replays as the assistant's text
  end)

  it("Anthropic: a schema that is not an object is wrapped and unwrapped", function()
    mock.server:push{ json = { value = { "Io", "Europa" } } }
    local resp = assert(client("anthropic"):chat(req{ response_format = { type = "json_schema", name = "moons",
      schema = { type = "array", items = { type = "string" } } } }))
    local tool = last().tools[1]
    assert.are.equal("object", tool.input_schema.type)
    assert.are.equal("array", tool.input_schema.properties.value.type)
    assert.are.same({ "Io", "Europa" }, resp.parsed)
    assert.are.equal('["Io","Europa"]', resp.text)
  end)

  it("Anthropic with thinking: tool_choice auto and the tool asked for in the system prompt", function()
    mock.server:push{ json = GOOD }
    local resp = assert(client("anthropic"):chat(req{ reasoning = { budget_tokens = 1024 } }))
    local body = last()
    assert.are.same({ type = "auto" }, body.tool_choice)
    assert.matches("calling the tool planet", body.system)
    assert.are.same(GOOD, resp.parsed)
  end)

  it("Anthropic with tools of its own: tool_choice any, so a tool round can come first", function()
    local lookup = { name = "lookup", description = "Look a planet up",
      parameters = { type = "object", properties = { q = { type = "string" } } } }
    mock.server:push{ tool_calls = { { name = "lookup", arguments = { q = "Jupiter" } } } }
    local resp = assert(client("anthropic"):chat(req{ tools = { lookup } }))
    local body = last()
    assert.are.same({ type = "any" }, body.tool_choice)
    assert.are.same({ "lookup", "planet" }, { body.tools[1].name, body.tools[2].name })
    assert.are.equal("tool_calls", resp.finish_reason)   -- a call of the request's own tool
    assert.are.equal("lookup", resp.tool_calls[1].name)
    assert.is_nil(resp.parsed)
  end)

  it("Gemini: responseMimeType and responseSchema", function()
    assert(client("gemini"):chat(req()))
    local gc = last().generationConfig
    assert.are.equal("application/json", gc.responseMimeType)
    assert.are.equal("object", gc.responseSchema.type)
    assert.is_nil(gc.responseSchema.additionalProperties)   -- not in Gemini's schema subset
  end)

  it("Ollama: the schema as format", function()
    assert(client("ollama"):chat(req()))
    assert.are.same({ "name", "moons" }, last().format.required)
  end)
end)

describe("resp.parsed only when valid", function()
  for _, route in ipairs(ROUTES) do
    it(label(route) .. ": parsed when the reply satisfies the schema", function()
      mock.server:push{ json = GOOD }
      local resp = assert(client(route[1], { api = route[2] }):chat(req()))
      assert.are.same(GOOD, resp.parsed)
      assert.is_nil(resp.parse_error)
    end)

    it(label(route) .. ": a schema violation is parse_error with its path", function()
      mock.server:push{ json = BAD }
      local resp = assert(client(route[1], { api = route[2] }):chat(req()))
      assert.is_nil(resp.parsed)
      assert.matches("^%$%.moons%[2%]: expected string", resp.parse_error)
      assert.are.same(BAD, json.decode(resp.text))   -- the text is kept as it came
    end)
  end

  it("text that is not JSON is a parse_error, not a parsed value", function()
    mock.server:push{ text = "Jupiter has 95 moons." }
    local resp = assert(client("openai"):chat(req()))
    assert.is_nil(resp.parsed)
    assert.matches("^not valid JSON", resp.parse_error)
  end)

  it("a missing required property and an unknown one are reported with their paths", function()
    mock.server:push{ json = { moons = {}, size = 3 } }
    local resp = assert(client("gemini"):chat(req()))
    assert.is_nil(resp.parsed)
    assert.matches("%$%.name: required property is missing", resp.parse_error)
    assert.matches("%$%.size: unknown property", resp.parse_error)
  end)

  it("a response_format of the wrong shape raises before sending", function()
    local c = client("openai")
    local function raises(rf, pattern)
      local ok, err = pcall(c.chat, c, req{ response_format = rf })
      assert.is_false(ok)
      assert.matches(pattern, err)
    end
    raises({ type = "json" }, 'response_format.type must be "json_schema", "json_object" or "text", got "json"')
    raises({ type = "json_schema", name = "x" }, "a json_schema response_format needs `schema`")
    raises({ type = "json_schema", schema = { type = "object", properties = { a = { type = "strnig" } } } },
      "response_format%.schema%.properties%.a%.type: unknown type \"strnig\"")
    assert.are.equal(0, #mock.server:requests())
  end)

  it("type text: no parsing at all", function()
    mock.server:push{ text = "plain words" }
    local resp = assert(client("openai"):chat(req{ response_format = { type = "text" } }))
    assert.is_nil(resp.parsed)
    assert.is_nil(resp.parse_error)
  end)

  it("json_object: any JSON object", function()
    mock.server:push{ json = { a = 1 } }
    local resp = assert(client("openai"):chat(req{ response_format = { type = "json_object" } }))
    assert.are.same({ a = 1 }, resp.parsed)
    mock.server:push{ json = { 1, 2 } }
    resp = assert(client("openai"):chat(req{ response_format = { type = "json_object" } }))
    assert.is_nil(resp.parsed)
    assert.matches("^%$: expected object", resp.parse_error)
  end)
end)

describe("partial events", function()
  for _, route in ipairs(ROUTES) do
    it(label(route) .. ": objects so far after text deltas, ending in the full object", function()
      mock.server:push{ json = GOOD }
      local s = assert(client(route[1], { api = route[2] }):stream(req()))
      local partials, texts, last_was_text = {}, {}, false
      for ev in s:events() do
        if ev.type == "partial" then
          assert.is_true(last_was_text, "a partial event follows a text event")
          partials[#partials + 1] = ev.value
        elseif ev.type == "text" then
          texts[#texts + 1] = ev.text
        end
        last_was_text = ev.type == "text"
      end
      local resp = assert(s:final())
      assert.is_true(#partials >= 3, "partial events: " .. #partials)
      assert.is_true(#texts >= #partials)
      assert.are.same(GOOD, partials[#partials])
      assert.are.same(GOOD, resp.parsed)
      assert.are.equal(table.concat(texts), resp.text)
      -- the object fills in: an early partial has fewer moons than the last
      local first_moons = partials[1].moons and #partials[1].moons or 0
      assert.is_true(first_moons < 3)
      -- resp.parsed is decoded on its own: a partial value is not it
      partials[#partials].name = "changed"
      assert.are.equal("Jupiter", resp.parsed.name)
    end)
  end

  it("Anthropic: partials come from the forced tool's input_json deltas", function()
    mock.server:push{ json = GOOD }
    local s = assert(client("anthropic"):stream(req()))
    local from_tool = 0
    for ev in s:events() do
      if ev.type == "text" then
        assert.are.equal("input_json_delta", ev.raw.delta.type)
        from_tool = from_tool + 1
      end
      assert.are_not.equal("tool_call", ev.type)
    end
    local resp = assert(s:final())
    assert.is_true(from_tool > 3)
    assert.are.same({}, resp.tool_calls)
    assert.are.equal("stop", resp.finish_reason)
  end)

  it("a schema violation in a stream: partials still come, parsed is nil at the end", function()
    mock.server:push{ json = BAD }
    local s = assert(client("openai"):stream(req()))
    local n = 0
    for ev in s:events() do if ev.type == "partial" then n = n + 1 end end
    local resp = assert(s:final())
    assert.is_true(n > 0)
    assert.is_nil(resp.parsed)
    assert.matches("^%$%.moons%[2%]: expected string", resp.parse_error)
  end)

  it("no partial events without a response_format", function()
    mock.server:push{ text = '{"a": 1}' }
    local s = assert(client("openai"):stream{ messages = { { role = "user", content = "x" } } })
    for ev in s:events() do assert.are_not.equal("partial", ev.type) end
  end)
end)

describe("llm.partial_json", function()
  local TEXT = '```json\n{"name": "Jupiter \\"J\\" \\u00e9\\ud83d\\ude00", "moons": ["Io", "Europa"], '
    .. '"n": 95, "mass": 1.898e27, "neg": -3, "ok": true, "no": false, "x": null, "e": [], "o": {}, "deep": [[1, [2]], {"a": {}}]}'
  local WHOLE = json.decode(TEXT:sub(9))

  it("reaches the decoded value whatever the split, in at most one change per delta", function()
    for size = 1, 9 do
      local p = partial_json.new()
      local changes, deltas = 0, 0
      for i = 1, #TEXT, size do
        deltas = deltas + 1
        if p:feed(TEXT:sub(i, i + size - 1)) then changes = changes + 1 end
      end
      assert.is_true(changes <= deltas)
      assert.is_true(p:done())
      assert.are.same(WHOLE, p:value())
      assert.are.equal(json.encode(WHOLE), json.encode(p:value()))   -- [] and {} kept apart
      assert.are.equal(mtype(WHOLE.n), mtype(p:value().n))
      assert.are.equal(mtype(WHOLE.mass), mtype(p:value().mass))
    end
  end)

  it("every two-way split gives the same value", function()
    for cut = 1, #TEXT - 1 do
      local p = partial_json.new()
      p:feed(TEXT:sub(1, cut))
      p:feed(TEXT:sub(cut + 1))
      assert.are.same(WHOLE, p:value())
    end
  end)

  it("shows strings as far as they came, and numbers and literals once complete", function()
    local p = partial_json.new()
    assert.is_nil(p:value())
    assert.is_true(p:feed('{"title": "The Ha'))
    assert.are.same({ title = "The Ha" }, p:value())
    assert.is_true(p:feed('rbour", "year": 19'))
    assert.are.same({ title = "The Harbour" }, p:value())
    assert.is_false(p:feed("5"))
    assert.is_true(p:feed("4, "))
    assert.are.same({ title = "The Harbour", year = 1954 }, p:value())
    assert.is_false(p:feed('"ta'))                      -- a key alone changes nothing
    assert.is_false(p:feed('gs": '))
    assert.is_true(p:feed("["))
    assert.are.same({ title = "The Harbour", year = 1954, tags = {} }, p:value())
    assert.is_false(p:feed("tr"))
    assert.is_true(p:feed("ue]}"))
    assert.are.same({ title = "The Harbour", year = 1954, tags = { true } }, p:value())
    assert.is_false(p:feed(" trailing prose"))
  end)

  it("an earlier value stays as it was; finished containers are copied once and shared", function()
    local p = partial_json.new()
    p:feed('{"items": [{"n": 1}, {"n": 2}], "more": [')
    local v1 = p:value()
    p:feed('3, 4')
    p:feed(', 5]')
    local v2 = p:value()
    assert.are.same({ items = { { n = 1 }, { n = 2 } }, more = {} }, v1)
    assert.are.same({ items = { { n = 1 }, { n = 2 } }, more = { 3, 4, 5 } }, v2)
    assert.are_not.equal(v1, v2)                 -- the open root: a new table each time
    assert.are.equal(v1.items, v2.items)         -- the finished list: shared, not copied again
    -- a 28 KB object fed 6 bytes at a time costs what is open, not the whole object each time
    local items = {}
    for i = 1, 500 do items[i] = { id = i, name = "item number " .. i, tags = { "a", "b", "c" } } end
    local text = json.encode({ items = items })
    local q, copies = partial_json.new(), 0
    local seen = {}
    for i = 1, #text, 6 do
      if q:feed(text:sub(i, i + 5)) then
        local v = q:value()
        for _, it in ipairs(v.items or {}) do
          if not seen[it] then seen[it] = true; copies = copies + 1 end
        end
      end
    end
    assert.are.same(json.decode(text), q:value())
    -- an item is copied while it is open (once per change to it), then shared: about 8 each here,
    -- where copying everything per delta would make hundreds of thousands
    assert.is_true(copies < 20 * 500, "item copies: " .. copies)
  end)

  it("stops at text that is not JSON and keeps what it had", function()
    local p = partial_json.new()
    p:feed('{"a": [1, 2')
    p:feed(', oops]}')
    assert.are.same({ a = { 1, 2 } }, p:value())
    assert.is_false(p:feed('"more"'))
  end)
end)
