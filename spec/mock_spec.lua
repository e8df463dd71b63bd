-- lua5.1: yes
-- llm.mock (API §14): the mock server from Lua, its reply queue, what it received, and how
-- it stops (m:stop(), garbage collection, and the death of the process that started it).
local llm = require("llm")
local mock = require("llm.mock")
local V = require("support.version")

local PROVIDERS = { "openai", "anthropic", "gemini", "ollama" }

local function collect(stream)
  local out = {}
  for text in stream:text() do out[#out + 1] = text end
  return out
end

-- True once nothing accepts connections at url (bounded: 200 tries, 20 ms apart).
local function gone(url)
  local c = llm.client("openai", { base_url = url .. "/v1", api_key = "k", model = "m",
                                   max_retries = 0, connect_timeout = 1, timeout = 2 })
  for _ = 1, 200 do
    local _, err = c:chat("ping")
    if err and err.kind == "connection" then return true end
    llm.sleep(0.02)
  end
  return false
end

describe("llm.mock", function()
  local m
  before_each(function() m = assert(mock.start()) end)
  after_each(function() m:stop() end)

  it("listens on loopback and echoes the last user text for every provider", function()
    assert.is_number(m.port)
    assert.equal("http://127.0.0.1:" .. m.port, m.url)
    for _, p in ipairs(PROVIDERS) do
      local c = m:client(p, { max_retries = 0 })
      local resp = assert(c:chat("Hi there"))
      assert.equal("echo: Hi there", resp.text, p)
      assert.same({ "echo:", " Hi", " there" }, collect(assert(c:stream("Hi there"))), p)
    end
    local r = assert(m:client("openai", { api = "responses" }):chat("Hello"))
    assert.equal("echo: Hello", r.text)
  end)

  it("serves pushed replies in order from one queue, across providers", function()
    m:push{ text = "first" }
    m:push{ text = "second" }
    m:push{ text = "third" }
    assert.equal("first", assert(m:client("anthropic"):chat("x")).text)
    assert.equal("second", assert(m:client("gemini"):chat("x")).text)
    assert.equal("third", assert(m:client("openai"):chat("x")).text)
    assert.equal("echo: x", assert(m:client("ollama"):chat("x")).text)   -- queue empty again
  end)

  it("streams a list of deltas as given, with usage and tool calls", function()
    for _, p in ipairs(PROVIDERS) do
      local c = m:client(p, { max_retries = 0 })
      m:push{ text = { "Hel", "lo", " world" }, usage = { input_tokens = 11, output_tokens = 5 } }
      local s = assert(c:stream("x"))
      assert.same({ "Hel", "lo", " world" }, collect(s), p)
      local resp = assert(s:final())
      assert.equal(11, resp.usage.input_tokens, p)
      assert.equal(5, resp.usage.output_tokens, p)

      m:push{ tool_calls = { { name = "get_weather", arguments = { city = "Paris" } },
                             { id = "call_given", name = "add", arguments = { a = 1, b = 2 } } } }
      local r = assert(c:chat("weather?"))
      assert.equal("tool_calls", r.finish_reason, p)
      assert.equal(2, #r.tool_calls, p)
      assert.equal("get_weather", r.tool_calls[1].name, p)
      assert.same({ city = "Paris" }, r.tool_calls[1].arguments)
      assert.same({ a = 1, b = 2 }, r.tool_calls[2].arguments)
      if p == "openai" or p == "anthropic" then   -- Gemini and Ollama calls carry no id
        assert.is_string(r.tool_calls[1].id, p)
        assert.equal("call_given", r.tool_calls[2].id, p)
      end
    end
  end)

  it("plays a status with the provider's error body, its headers and error type", function()
    for _, p in ipairs(PROVIDERS) do
      local c = m:client(p, { max_retries = 0 })
      m:push{ status = 429, headers = { ["retry-after"] = "7" },
              error = { type = "rate_limit_error", message = "slow down, " .. p } }
      local resp, err = c:chat("x")
      assert.is_nil(resp)
      assert.equal("rate_limit", err.kind, p)
      assert.equal(429, err.status, p)
      assert.equal(7, err.retry_after, p)
      assert.matches("slow down, " .. p, err.message, 1, true)
    end
    m:push{ status = 401, error = { type = "authentication_error", message = "invalid x-api-key" } }
    local _, err = m:client("anthropic", { max_retries = 0 }):chat("x")
    assert.equal("auth", err.kind)
    assert.matches("invalid x-api-key", err.message, 1, true)
  end)

  it("puts an error without a status inside a 200 stream, after the content", function()
    local c = m:client("anthropic", { max_retries = 0 })
    m:push{ text = "partial answer", error = { type = "overloaded_error", message = "Overloaded now" } }
    local s = assert(c:stream("x"))
    local texts, err = {}, nil
    for ev in s:events() do
      if ev.type == "text" then texts[#texts + 1] = ev.text end
      if ev.type == "error" then err = ev.error end
    end
    assert.equal("partial answer", table.concat(texts))
    assert.is_table(err)
    assert.matches("Overloaded now", err.message, 1, true)
  end)

  it("cuts a stream after n events, and stalls one (an idle timeout)", function()
    local c = m:client("openai", { max_retries = 0, idle_timeout = 0.3, first_token_timeout = 0.3 })
    m:push{ text = { "a", "b", "c", "d", "e" }, cut_after = 3 }
    local s = assert(c:stream("x"))
    local texts, err = {}, nil
    for ev in s:events() do
      if ev.type == "text" then texts[#texts + 1] = ev.text end
      if ev.type == "error" then err = ev.error end
    end
    assert.equal("connection", err.kind)
    assert.is_true(#texts < 5)

    m:push{ text = { "a", "b", "c" }, stall_after = 2 }
    local err2
    s = assert(c:stream("x"))
    for ev in s:events() do
      if ev.type == "error" then err2 = ev.error end
    end
    assert.equal("timeout", err2.kind)

    m:push{ text = "never", pings = 3 }
    s = assert(c:stream("x"))
    local e3
    for ev in s:events() do
      if ev.type == "error" then e3 = ev.error end
    end
    assert.equal("timeout", e3.kind)
  end)

  it("delays a reply: a client with a shorter timeout gives up waiting for its headers", function()
    m:push{ text = "late", delay = 2 }
    local _, err = m:client("openai", { max_retries = 0, timeout = 0.2 }):chat("x")
    assert.equal("timeout", err.kind)
    m:push{ text = "on time", delay = 0.05 }
    assert.equal("on time", assert(m:client("openai", { max_retries = 0 }):chat("x")).text)
  end)

  it("renders reasoning (Anthropic thinking, Gemini thought parts, Ollama thinking)", function()
    for _, p in ipairs({ "anthropic", "gemini", "ollama" }) do
      local c = m:client(p)
      m:push{ reasoning = "Let me think.", text = "42" }
      local r = assert(c:chat("q"))
      assert.equal("Let me think.", r.reasoning, p)
      assert.equal("42", r.text, p)
      m:push{ reasoning = "Step by step.", text = "43" }
      local s = assert(c:stream("q"))
      local got = {}
      for ev in s:events() do
        if ev.type == "reasoning" then got[#got + 1] = ev.text end
      end
      assert.equal("Step by step.", table.concat(got), p)
      r = assert(s:final())
      assert.equal("43", r.text, p)
    end
  end)

  it("renders reasoning as Anthropic thinking blocks, streamed and not", function()
    local c = m:client("anthropic")
    m:push{ reasoning = "Let me think.", text = "42" }
    local r = assert(c:chat("q"))
    assert.equal("Let me think.", r.reasoning)
    assert.equal("42", r.text)
    m:push{ reasoning = "Step by step.", text = "43" }
    local s = assert(c:stream("q"))
    local kinds = {}
    for ev in s:events() do kinds[ev.type] = true end
    assert.is_true(kinds.reasoning)
    r = assert(s:final())
    assert.equal("Step by step.", r.reasoning)
    assert.equal("43", r.text)
  end)

  it("replays a fixture from the folder given to start", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/anthropic"))
    local f = assert(io.open(dir .. "/anthropic/tiny.json", "wb"))
    f:write('{"id":"msg_fx","type":"message","role":"assistant","model":"claude-fx","content":'
      .. '[{"type":"text","text":"from a fixture"}],"stop_reason":"end_turn","stop_sequence":null,'
      .. '"usage":{"input_tokens":3,"output_tokens":4}}')
    f:close()
    local fm = assert(mock.start{ fixtures = dir })
    fm:push{ fixture = "anthropic/tiny" }
    local r = assert(fm:client("anthropic"):chat("x"))
    assert.equal("from a fixture", r.text)
    assert.equal("claude-fx", r.model)
    fm:stop()
    os.execute("rm -rf " .. dir)
  end)

  it("lists what it received: method, path with query, lower-case headers, body, json", function()
    local c = m:client("gemini", { max_retries = 0, headers = { ["X-Trace"] = "t1" } })
    assert(c:chat("Hello"))
    collect(assert(c:stream("Again")))
    local reqs = m:requests()
    assert.equal(2, #reqs)
    assert.equal("POST", reqs[1].method)
    assert.equal("/v1beta/models/gemini-2.5-flash:generateContent", reqs[1].path)
    assert.equal("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", reqs[2].path)
    assert.equal("t1", reqs[1].headers["x-trace"])
    assert.equal("mock-key", reqs[1].headers["x-goog-api-key"])
    assert.equal("Hello", reqs[1].json.contents[1].parts[1].text)
    assert.is_string(reqs[1].body)
    m:reset()
    assert.same({}, m:requests())
  end)

  it("m:client fills base URL, placeholder key and model; opts win", function()
    local c = m:client("openai", { model = "my-model" })
    assert.equal(m.url .. "/v1", c.base_url)
    assert.equal("my-model", c.model)
    assert(c:chat("x"))
    assert.equal("Bearer mock-key", m:requests()[1].headers["authorization"])
    assert.equal(m.url .. "/v1beta", m:client("gemini").base_url)
    assert.equal(m.url, m:client("anthropic").base_url)
  end)

  it("raises on misuse, naming the mistake", function()
    assert.has_error(function() m:push{ txet = "typo" } end, "m:push: unknown field 'txet'")
    assert.has_error(function() m:push("text") end, "m:push: expected a table")
    assert.has_error(function() m:push{ text = 5 } end, "m:push: text must be a string or a list of deltas")
  end)
end)

describe("llm.mock stops", function()
  it("on m:stop(), and a second stop does nothing", function()
    local m = assert(mock.start())
    local url = m.url
    m:stop()
    m:stop()
    assert.is_true(gone(url))
    assert.has_error(function() m:push{ text = "x" } end)
  end)

  it("when the mock object is collected", function()
    local m = assert(mock.start())
    local url = m.url
    m = nil   -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.is_true(gone(url))
  end)

  it("on m:stop() even while a child of this process holds its pipe open", function()
    local root = os.getenv("LLM_ROOT") or "."
    local build = os.getenv("LLM_BUILD") or (root .. "/build")
    local pidfile = os.tmpname()
    local script = ([[
      package.path = %q .. "/lua/?.lua;" .. %q .. "/lua/?/init.lua;" .. package.path
      package.cpath = %q .. "/?.so;" .. package.cpath
      local m = assert(require("llm.mock").start())
      os.execute("sleep 120 >/dev/null 2>&1 & echo $! > %s")   -- inherits the pipe's write end
      m:stop()
      print("stopped")
    ]]):format(root, root, build, pidfile)
    local file = os.tmpname()
    local sf = assert(io.open(file, "w"))
    sf:write(script)
    sf:close()
    -- Bounded: a stop that waited for the sleeping child would be killed after 20 s.
    local p = assert(io.popen("timeout 20 " .. V.lua .. " " .. file .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    os.remove(file)
    local f = io.open(pidfile)
    local sleeper = f and tonumber(f:read("*a"))
    if f then f:close() end
    os.remove(pidfile)
    if sleeper then os.execute("kill " .. sleeper .. " 2>/dev/null") end
    assert.equal("stopped\n", out)
  end)

  it("when the process that started it dies, even by SIGKILL", function()
    local portfile = os.tmpname()
    local root = os.getenv("LLM_ROOT") or "."
    local build = os.getenv("LLM_BUILD") or (root .. "/build")
    local script = ([[
      package.path = %q .. "/lua/?.lua;" .. %q .. "/lua/?/init.lua;" .. package.path
      package.cpath = %q .. "/?.so;" .. package.cpath
      local m = assert(require("llm.mock").start())
      local f = io.open(%q, "w"); f:write(m.port); f:close()
      os.execute("kill -9 $PPID")   -- the shell's parent is this Lua process
    ]]):format(root, root, build, portfile)
    local file = os.tmpname()
    local sf = assert(io.open(file, "w"))
    sf:write(script)
    sf:close()
    os.execute(V.lua .. " " .. file .. " >/dev/null 2>&1")
    os.remove(file)
    local f = assert(io.open(portfile))
    local port = tonumber(f:read("*a"))
    f:close()
    os.remove(portfile)
    assert.is_number(port)
    assert.is_true(gone("http://127.0.0.1:" .. port))
  end)
end)

describe("llm-mock", function()
  it("needs no lua-cjson: it serves with no C module on its cpath", function()
    local root = os.getenv("LLM_ROOT") or "."
    local build = os.getenv("LLM_BUILD") or (root .. "/build")
    local script = ([[
      package.path = %q .. "/lua/?.lua;" .. %q .. "/lua/?/init.lua;" .. package.path
      package.cpath = %q .. "/?.so"
      local m = assert(require("llm.mock").start())
      m:push{ text = { "no", " cjson" } }
      local c = m:client("anthropic")
      local out = {}
      for t in assert(c:stream("x")):text() do out[#out + 1] = t end
      print(table.concat(out) .. "|" .. assert(c:chat("plain")).text)
      m:stop()
    ]]):format(root, root, build)
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    f:write(script)
    f:close()
    local p = assert(io.popen("LUA_CPATH_5_4=/nonexistent/?.so LUA_CPATH=/nonexistent/?.so " .. V.lua .. " " .. file .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    os.remove(file)
    assert.equal("no cjson|echo: plain\n", out)
  end)
end)
