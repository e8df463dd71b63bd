-- lua5.1: yes
-- Accounting and hooks (API §12): cache and reasoning usage on every route, `client.usage`
-- totals and cost over a mixed run, the hooks' order and fields, a raising hook that breaks
-- nothing, and LLM_LOG=info / warn.
local llm = require("llm")
local mock = require("llm.mock")
local clockmod = require("llm.clock")
local V = require("support.version")

local m
setup(function() m = assert(mock.start()) end)
teardown(function() if m then m:stop() end end)
before_each(function() m:reset() end)

local function drain(s)
  local usage_events = {}
  for ev in s:events() do
    if ev.type == "usage" then usage_events[#usage_events + 1] = ev.usage end
  end
  return usage_events
end

------------------------------------------------------------------------------------------
describe("usage fields", function()
  -- What each route reports when the mock is told these normalized counts: the provider's
  -- own fields (docs/mock.md) read back by the client.
  local ROUTES = {
    { "openai", {}, { input_tokens = 20, output_tokens = 9, cached_input_tokens = 12, reasoning_tokens = 4 } },
    { "openai", { api = "responses" },
      { input_tokens = 20, output_tokens = 9, cached_input_tokens = 12, reasoning_tokens = 4 } },
    { "anthropic", {}, { input_tokens = 20, output_tokens = 9, cached_input_tokens = 12,
                         cache_creation_input_tokens = 5 } },
    { "gemini", {}, { input_tokens = 20, output_tokens = 9, cached_input_tokens = 12, reasoning_tokens = 4 } },
    { "ollama", {}, { input_tokens = 20, output_tokens = 9 } },
  }

  it("cached, cache-creation and reasoning tokens on every route, chat and stream", function()
    for _, r in ipairs(ROUTES) do
      local name, opts, usage = r[1], r[2], r[3]
      local what = name .. (opts.api and " responses" or "")
      local want = {}
      for k, v in pairs(usage) do want[k] = v end
      want.total_tokens = usage.input_tokens + usage.output_tokens
      local c = m:client(name, opts)
      m:push{ text = "hi", usage = usage }
      local resp = assert(c:chat("x"))
      assert.same(want, resp.usage, what)
      m:push{ text = { "h", "i" }, usage = usage }
      local s = assert(c:stream("x"))
      local evs = drain(s)
      assert.same(want, evs[#evs], what .. " (last usage event)")
      assert.same(want, assert(s:final()).usage, what .. " (stream)")
    end
  end)

  it("x-mock-usage sets the usage of an echoed or scripted reply", function()
    local c = m:client("gemini", { headers = { ["x-mock-usage"] = "input_tokens=30,output_tokens=8,cached_input_tokens=20,reasoning_tokens=3" } })
    assert.same({ input_tokens = 30, output_tokens = 8, total_tokens = 38, cached_input_tokens = 20, reasoning_tokens = 3 },
      assert(c:chat("x")).usage)
    c = m:client("openai", { headers = { ["x-mock-usage"] = "input_tokens=30,output_tokens=8,cached_input_tokens=20",
                                         ["x-mock-script"] = "add", ["x-mock-key"] = "usage-" .. os.time() } })
    local r = assert(c:chat("x"))
    assert.equal("add", r.tool_calls[1].name)
    assert.same({ input_tokens = 30, output_tokens = 8, total_tokens = 38, cached_input_tokens = 20 }, r.usage)
  end)

  it("the wire carries each provider's own fields", function()
    local c = m:client("anthropic")
    m:push{ text = "hi", usage = { input_tokens = 7, output_tokens = 2, cached_input_tokens = 30,
                                   cache_creation_input_tokens = 3 } }
    local resp = assert(c:chat("x"))
    assert.same({ input_tokens = 7, output_tokens = 2, cache_read_input_tokens = 30,
                  cache_creation_input_tokens = 3 }, resp.raw.usage)
    local g = m:client("gemini")
    m:push{ text = "hi", usage = { input_tokens = 20, output_tokens = 9, cached_input_tokens = 12, reasoning_tokens = 4 } }
    local u = assert(g:chat("x")).raw.usageMetadata
    assert.equal(20, u.promptTokenCount)          -- the cached tokens are part of the prompt
    assert.equal(12, u.cachedContentTokenCount)
    assert.equal(5, u.candidatesTokenCount)       -- thoughts are counted apart
    assert.equal(4, u.thoughtsTokenCount)
  end)
end)

------------------------------------------------------------------------------------------
describe("client.usage", function()
  local PRICES = {
    ["gpt-test"] = { input = 2, output = 8, cached_input = 0.5 },
    ["claude-test"] = { input = 3, output = 15, cached_input = 0.3, cache_write = 3.75 },
  }
  local add = llm.tool{
    name = "add", description = "Adds two numbers",
    parameters = { type = "object", properties = { a = { type = "number" }, b = { type = "number" } },
                   required = { "a", "b" } },
    run = function(args) return { sum = args.a + args.b } end,
  }

  it("starts at zero with no cost", function()
    local c = m:client("openai", { prices = PRICES })
    assert.same({ requests = 0, input_tokens = 0, output_tokens = 0, cached_input_tokens = 0,
                  cache_creation_input_tokens = 0, reasoning_tokens = 0, by_model = {} }, c.usage)
    assert.is_nil(c.usage.cost)
  end)

  it("totals and cost over chat, stream and tool calls across providers #tasks", function()
    local gpt = m:client("openai", { model = "gpt-test", prices = PRICES })
    local claude = m:client("anthropic", { model = "claude-test", prices = PRICES })
    local gemini = m:client("gemini", { model = "gemini-test", prices = PRICES })   -- no price

    -- OpenAI: a chat with cache hits and reasoning, a stream, a chat naming another model.
    m:push{ text = "a", usage = { input_tokens = 1000, output_tokens = 200, cached_input_tokens = 400,
                                  reasoning_tokens = 50 } }
    assert(gpt:chat("x"))
    m:push{ text = { "b", "c" }, usage = { input_tokens = 500, output_tokens = 100 } }
    local s = assert(gpt:stream("x"))
    assert.equal(1, gpt.usage.requests)            -- a stream counts when its usage arrives
    assert(s:final())
    m:push{ text = "d", usage = { input_tokens = 10, output_tokens = 5 } }
    assert(gpt:chat{ model = "gpt-other", messages = { { role = "user", content = "x" } } })

    -- Anthropic: a chat reading and writing the cache, then a tool loop of two calls.
    m:push{ text = "e", usage = { input_tokens = 300, output_tokens = 50, cached_input_tokens = 1000,
                                  cache_creation_input_tokens = 200 } }
    assert(claude:chat("x"))
    m:push{ tool_calls = { { name = "add", arguments = { a = 1, b = 2 } } },
            usage = { input_tokens = 100, output_tokens = 20 } }
    m:push{ text = "3", usage = { input_tokens = 150, output_tokens = 30 } }
    local r = assert(claude:run_tools{ messages = { { role = "user", content = "1 + 2?" } }, tools = { add } })
    assert.equal("3", r.text)

    -- Gemini: a stream with thoughts, and no price.
    m:push{ text = { "f" }, usage = { input_tokens = 80, output_tokens = 40, reasoning_tokens = 10 } }
    drain(assert(gemini:stream("x")))

    local u = gpt.usage
    assert.equal(3, u.requests)
    assert.equal(1510, u.input_tokens)             -- OpenAI's input already holds the cached tokens
    assert.equal(305, u.output_tokens)
    assert.equal(400, u.cached_input_tokens)
    assert.equal(50, u.reasoning_tokens)
    -- (600 * 2 + 400 * 0.5 + 200 * 8) + (500 * 2 + 100 * 8), per million; gpt-other has no price
    assert.near(0.0048, u.cost, 1e-12)
    assert.equal(2, u.by_model["gpt-test"].requests)
    assert.equal(1500, u.by_model["gpt-test"].input_tokens)
    assert.near(0.0048, u.by_model["gpt-test"].cost, 1e-12)
    assert.equal(1, u.by_model["gpt-other"].requests)
    assert.equal(10, u.by_model["gpt-other"].input_tokens)
    assert.is_nil(u.by_model["gpt-other"].cost)

    u = claude.usage
    assert.equal(3, u.requests)                    -- the tool loop made two calls
    assert.equal(1500 + 100 + 150, u.input_tokens) -- cache reads and writes count as input
    assert.equal(100, u.output_tokens)
    assert.equal(1000, u.cached_input_tokens)
    assert.equal(200, u.cache_creation_input_tokens)
    -- (300 * 3 + 1000 * 0.3 + 200 * 3.75 + 50 * 15) + (100 * 3 + 20 * 15) + (150 * 3 + 30 * 15)
    assert.near(0.0042, u.cost, 1e-12)
    assert.same({ "claude-test" }, (function()
      local ks = {}
      for k in pairs(u.by_model) do ks[#ks + 1] = k end
      return ks
    end)())

    u = gemini.usage
    assert.equal(1, u.requests)
    assert.equal(80, u.input_tokens)
    assert.equal(40, u.output_tokens)
    assert.equal(10, u.reasoning_tokens)
    assert.is_nil(u.cost)
    assert.is_nil(u.by_model["gemini-test"].cost)
  end)

  it("cached input and cache writes fall back to the input price", function()
    local c = m:client("anthropic", { model = "claude-test", prices = { ["claude-test"] = { input = 1, output = 2 } } })
    m:push{ text = "a", usage = { input_tokens = 10, output_tokens = 5, cached_input_tokens = 100,
                                  cache_creation_input_tokens = 40 } }
    assert(c:chat("x"))
    assert.near((10 + 100 + 40 + 5 * 2) / 1e6, c.usage.cost, 1e-15)
  end)

  it("a retried attempt is not a second request; a failed call is none", function()
    local lib = llm.new{ clock = clockmod.fake(0) }
    local c = m:client("openai", { llm = lib, model = "gpt-test", prices = PRICES })
    m:push{ status = 500 }
    m:push{ text = "ok", usage = { input_tokens = 10, output_tokens = 5 } }
    assert(c:chat("x"))
    assert.equal(2, #m:requests())
    assert.equal(1, c.usage.requests)
    assert.equal(10, c.usage.input_tokens)
    m:push{ status = 400 }
    assert.is_nil(c:chat{ messages = { { role = "user", content = "x" } }, max_retries = 0 })
    m:push{ status = 503 }
    m:push{ text = { "o", "k" }, usage = { input_tokens = 7, output_tokens = 2 } }
    assert(assert(c:stream("x")):final())
    assert.equal(2, c.usage.requests)
    assert.equal(17, c.usage.input_tokens)
  end)

  it("a stream closed early counts the usage it reported", function()
    local c = m:client("anthropic", { model = "claude-test" })
    m:push{ text = { "a", "b", "c" }, usage = { input_tokens = 12, output_tokens = 3 } }
    local s = assert(c:stream("x"))
    s:close()
    assert.equal(1, c.usage.requests)
    assert.equal(12, c.usage.input_tokens)        -- message_start carried the input
    s:close()
    assert.equal(1, c.usage.requests)
  end)

  it("prices and hooks are checked when the client is built", function()
    local function err_of(opts)
      local ok, e = pcall(m.client, m, "openai", opts)
      assert.is_false(ok)
      return tostring(e)
    end
    assert.matches("prices must be a table", err_of{ prices = 3 })
    assert.matches("prices%[\"gpt%-test\"%] must be a table", err_of{ prices = { ["gpt-test"] = 2 } })
    assert.matches("unknown price 'inptu' %(did you mean 'input'%?%)", err_of{ prices = { g = { inptu = 1 } } })
    assert.matches("prices%[\"g\"%]%.output must be a number", err_of{ prices = { g = { output = "1" } } })
    assert.matches("unknown hook 'on_requets' %(did you mean 'on_request'%?%)",
      err_of{ hooks = { on_requets = function() end } })
    assert.matches("hooks%.on_error must be a function", err_of{ hooks = { on_error = true } })
    assert.matches("hooks must be a table", err_of{ hooks = print })
    local c = m:client("openai", { prices = { ["gpt-test"] = { input = 0, output = 1, cached_input = 0, cache_write = 2 } },
                                   hooks = { on_request = function() end } })
    assert.is_table(c.usage)
  end)
end)

------------------------------------------------------------------------------------------
describe("hooks", function()
  local SECRET = "hooksecret0123456789"

  local function recorder()
    local seen = {}
    local hooks = {}
    for _, name in ipairs{ "on_request", "on_response", "on_retry", "on_error" } do
      hooks[name] = function(info) seen[#seen + 1] = { name = name, info = info } end
    end
    return hooks, seen
  end

  local function names(seen)
    local out = {}
    for i, s in ipairs(seen) do out[i] = s.name .. ":" .. tostring(s.info.attempt) end
    return out
  end

  -- No string anywhere inside `v` (keys, values, error fields) contains the secret.
  local function clean(v, depth)
    depth = depth or 0
    if type(v) == "string" then return not v:find(SECRET, 1, true) end
    if type(v) ~= "table" or depth > 6 then return true end
    for k, x in pairs(v) do
      if not clean(k, depth + 1) or not clean(x, depth + 1) then return false end
    end
    return clean(tostring(v))
  end

  it("fire in order with the call's fields: a retried chat, a failed one, a stream", function()
    local lib = llm.new{ clock = clockmod.fake(0) }
    local hooks, seen = recorder()
    local c = m:client("openai", { llm = lib, model = "gpt-test", hooks = hooks })
    m:push{ status = 500 }
    m:push{ text = "ok", usage = { input_tokens = 10, output_tokens = 5 } }
    assert(c:chat("x"))
    assert.same({ "on_request:1", "on_response:1", "on_retry:1", "on_request:2", "on_response:2" }, names(seen))
    local req1, resp1, retry, resp2 = seen[1].info, seen[2].info, seen[3].info, seen[5].info
    assert.equal("openai", req1.provider)
    assert.equal("gpt-test", req1.model)
    assert.equal("POST", req1.method)
    assert.equal(m.url .. "/v1/chat/completions", req1.url)
    assert.equal(0, req1.elapsed)
    assert.is_nil(req1.status)
    assert.equal(500, resp1.status)
    assert.equal("server", resp1.error.kind)
    assert.equal(500, retry.status)
    assert.equal("server", retry.error.kind)
    assert.is_number(retry.wait)
    assert.equal(200, resp2.status)
    assert.is_string(resp2.request_id)
    assert.same({ input_tokens = 10, output_tokens = 5, total_tokens = 15 }, resp2.usage)
    assert.is_true(resp2.elapsed >= retry.wait)    -- seconds since the call started (fake clock)
    assert.is_nil(resp2.error)

    -- fails for good: on_error once, after the last response
    for i = #seen, 1, -1 do seen[i] = nil end
    m:push{ status = 400, error = { type = "invalid_request_error", message = "bad" } }
    assert.is_nil(c:chat{ messages = { { role = "user", content = "x" } }, max_retries = 0 })
    assert.same({ "on_request:1", "on_response:1", "on_error:1" }, names(seen))
    assert.equal(400, seen[3].info.status)
    assert.equal("bad_request", seen[3].info.error.kind)

    -- a connection that fails: no response, retries, then on_error with the last error
    for i = #seen, 1, -1 do seen[i] = nil end
    local dead = lib.client("openai", { model = "gpt-test", api_key = "k", hooks = hooks, max_retries = 1,
                                        base_url = "http://127.0.0.1:" .. require("support.net").closed_port() .. "/v1" })
    local _, err = dead:chat("x")
    assert.equal("connection", err.kind)
    assert.same({ "on_request:1", "on_retry:1", "on_request:2", "on_error:2" }, names(seen))
    assert.is_nil(seen[4].info.status)

    -- a stream: its response at the headers; a failure after content fires on_error when read
    for i = #seen, 1, -1 do seen[i] = nil end
    m:push{ text = { "a", "b" } }
    local s = assert(c:stream("x"))
    assert.same({ "on_request:1", "on_response:1" }, names(seen))
    assert.equal(200, seen[2].info.status)
    assert(s:final())
    assert.equal(2, #seen)
    m:push{ text = "partial", error = { type = "server_error", message = "boom" } }
    s = assert(c:stream("x"))
    local _, serr = s:final()
    assert.is_table(serr)
    assert.same({ "on_request:1", "on_response:1", "on_request:1", "on_response:1", "on_error:1" }, names(seen))
    assert.equal(serr, seen[5].info.error)
  end)

  it("a client without hooks calls none; hooks set on it later fire from the next attempt", function()
    local hooks, seen = recorder()
    local c = m:client("openai", { model = "gpt-test" })
    assert.is_nil(c.hooks)
    assert(c:chat("x"))
    c.hooks = hooks
    assert(c:chat("x"))
    assert.same({ "on_request:1", "on_response:1" }, names(seen))
    assert.equal(200, seen[2].info.status)
    c.hooks = nil
    assert(c:chat("x"))
    assert.equal(2, #seen)
  end)

  it("a followed redirect is a response of its own", function()
    local hooks, seen = recorder()
    local c = m:client("openai", { model = "gpt-test", hooks = hooks, headers = {
      ["x-mock-sequence"] = "redirect=/v1/chat/completions|ok", ["x-mock-key"] = "redir-" .. os.time() } })
    assert(c:chat("x"))
    assert.same({ "on_request:1", "on_response:1", "on_response:1" }, names(seen))
    assert.is_true(seen[2].info.status >= 300 and seen[2].info.status < 400)
    assert.equal(200, seen[3].info.status)
    assert.equal(1, c.usage.requests)
  end)

  it("raw requests fire them too, and no key reaches them", function()
    local hooks, seen = recorder()
    local c = m:client("openai", { model = "gpt-test", hooks = hooks, api_key = SECRET, max_retries = 0,
                                   base_url = m.url:gsub("://", "://user:" .. SECRET .. "@") .. "/v1" })
    local body = assert(c:request("POST", "/chat/completions", { model = "gpt-raw",
      messages = { { role = "user", content = "x" } } }))
    assert.equal("chat.completion", body.object)
    assert.same({ "on_request:1", "on_response:1" }, names(seen))
    assert.equal("gpt-raw", seen[1].info.model)
    m:push{ status = 401, error = { type = "invalid_request_error", message = "Incorrect API key provided: " .. SECRET } }
    assert.is_nil(c:chat("x"))
    assert.equal(5, #seen)
    assert.matches("%[REDACTED%]", seen[5].info.error.message)
    for _, s in ipairs(seen) do assert.is_true(clean(s.info), s.name) end
    assert.equal(0, c.usage.requests)             -- raw calls are not accounted; the chat failed
  end)

  it("a raising hook is logged at warn and breaks no call, nor another in flight #tasks", function()
    local lib = llm.new()
    local lines = {}
    lib.configure{ log = function(level, msg) if level == "warn" then lines[#lines + 1] = msg end end }
    local raising = {}
    for _, name in ipairs{ "on_request", "on_response", "on_retry", "on_error" } do
      raising[name] = function(info) error("hook failed for " .. info.provider .. " " .. SECRET) end
    end
    local bad = m:client("openai", { llm = lib, model = "gpt-test", hooks = raising, api_key = SECRET })
    local good_hooks, seen = recorder()
    local good = m:client("anthropic", { llm = lib, model = "claude-test", hooks = good_hooks })
    local results = lib.run(function()
      local tasks = {}
      for i = 1, 3 do
        tasks[#tasks + 1] = lib.spawn(function() return bad:chat("bad " .. i).text end)
        tasks[#tasks + 1] = lib.spawn(function()
          local s = assert(bad:stream("stream " .. i))
          return assert(s:final()).text
        end)
        tasks[#tasks + 1] = lib.spawn(function() return good:chat("good " .. i).text end)
      end
      return (lib.gather(require("llm.compat").unpack(tasks)))
    end)
    for i = 1, 3 do
      assert.equal("echo: bad " .. i, results[3 * i - 2])
      assert.equal("echo: stream " .. i, results[3 * i - 1])
      assert.equal("echo: good " .. i, results[3 * i])
    end
    assert.equal(6, bad.usage.requests)
    assert.equal(3, good.usage.requests)
    assert.equal(6, #seen)                        -- on_request and on_response of each good call
    assert.equal(12, #lines)                      -- on_request and on_response of each bad call
    assert.matches("^openai: hook on_%a+ raised %(ignored%): .*hook failed for openai", lines[1])
    for _, l in ipairs(lines) do assert.is_nil(l:find(SECRET, 1, true)) end
    -- on_error raising: the call still returns its error
    m:push{ status = 400 }
    local _, err = bad:chat{ messages = { { role = "user", content = "x" } }, max_retries = 0 }
    assert.equal("bad_request", err.kind)
    assert.matches("hook on_error raised", lines[#lines])
  end)
end)

------------------------------------------------------------------------------------------
describe("LLM_LOG", function()
  local KEY = "sk-logged-SECRET-0123456789"

  -- Runs a script against the mock with LLM_LOG=level; returns its stderr lines.
  local function run(level, body)
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
      local llm = require("llm")
      local URL, KEY = %q, %q
      %s
    ]]):format(m.url, KEY, body))
    f:close()
    local root = os.getenv("LLM_ROOT") or "."
    local build = os.getenv("LLM_BUILD") or (root .. "/build")
    local p = io.popen(("cd %s && LLM_LOG=%s LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='%s/?.so;;' %s %s 2>&1")
      :format(root, level, build, V.lua, script))
    local out = p:read("*a")
    p:close()
    os.remove(script)
    assert.is_nil(out:find(KEY, 1, true))
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    return lines, out
  end

  local SCRIPT = [[
    local c = llm.client("openai", { model = "m", base_url = URL .. "/v1", api_key = KEY,
      retry = llm.retry.policy{ stop = llm.retry.stop_after_attempt(3), wait = llm.retry.wait_fixed(0) },
      headers = { ["x-mock-sequence"] = "status=503|ok", ["x-mock-key"] = "log-" .. os.time() .. "-" .. math.random(1e9) },
      hooks = { on_response = function() error("oops " .. KEY) end } })
    assert(c:chat("logged"))
    assert(assert(llm.client("anthropic", { model = "a", base_url = URL, api_key = KEY }):stream("s")):final())
    print("done")
  ]]

  it("info: one line per call and one per retry, and the warnings", function()
    local lines, out = run("info", SCRIPT)
    assert.equal("done", lines[#lines], out)
    local calls, retries, warns = {}, {}, {}
    for _, l in ipairs(lines) do
      if l:find("^llm info: .*: retry ") then retries[#retries + 1] = l
      elseif l:find("^llm info: ") then calls[#calls + 1] = l
      elseif l:find("^llm warn: ") then warns[#warns + 1] = l
      else assert.is_nil(l:find("^llm debug"), l) end
    end
    assert.equal(2, #calls, out)
    assert.matches("^llm info: openai m: POST http://127%.0%.0%.1:%d+/v1/chat/completions %-> 200 in [%d.]+ s %(2 attempts, tokens in %d+ out %d+%)$", calls[1])
    assert.matches("^llm info: anthropic a: POST http://127%.0%.0%.1:%d+/v1/messages %-> 200 in [%d.]+ s %(1 attempt, tokens in %d+ out %d+", calls[2])
    assert.equal(1, #retries, out)
    assert.matches("^llm info: openai m: retry 1 %(attempt 2%) in 0%.000 s after: .*503", retries[1])
    assert.equal(2, #warns, out)                 -- the hook raised on both responses
    assert.matches("^llm warn: openai: hook on_response raised %(ignored%): .*oops %[REDACTED%]", warns[1])
  end)

  it("warn: only the warnings", function()
    local lines, out = run("warn", SCRIPT)
    assert.equal("done", lines[#lines], out)
    assert.equal(3, #lines, out)
    assert.matches("^llm warn: openai: hook on_response raised", lines[1])
    assert.matches("^llm warn: openai: hook on_response raised", lines[2])
  end)

  it("llm.configure{ log = level } sends that level and above to the sink on stderr", function()
    local lines, out = run("", [[
      llm.configure{ log = "info" }
      assert(llm.client("openai", { model = "m", base_url = URL .. "/v1", api_key = KEY }):chat("x"))
      llm.configure{ log = false }
      assert(llm.client("openai", { model = "m", base_url = URL .. "/v1", api_key = KEY }):chat("y"))
      print("done")
    ]])
    assert.equal(2, #lines, out)
    assert.matches("^llm info: openai m: POST .* %-> 200", lines[1])
    local ok, err = pcall(llm.new().configure, { log = "verbose" })
    assert.is_false(ok)
    assert.matches("llm.configure: log must be a function, \"debug\", \"info\", \"warn\" or false, got verbose", err, 1, true)
  end)
end)
