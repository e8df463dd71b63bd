-- lua5.1: yes
-- Bad input from users raises before anything is sent: each case checks the message names
-- the field (and the likely intended one) and that the mock server received no request.
local mockmod = require("support.mock")
local json = require("llm.json")
local llm = require("llm")

local KEY = "sk-input-0123456789abcdef"
local mock

setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

local URLS = { openai = "/v1", anthropic = "", gemini = "/v1beta", ollama = "" }
local function client(name, opts)
  local o = { model = "m-test", base_url = mock.url .. (URLS[name] or "/v1"), api_key = KEY }
  for k, v in pairs(opts or {}) do o[k] = v end
  return llm.client(name, o)
end

-- Runs fn, which must raise; returns the message. Asserts nothing reached the server.
local function raises(fn, pattern)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.is_string(err)
  assert.matches(pattern, err)
  assert.equal(0, mock:stats().requests, "a request was sent")
  return err
end

local function sent_body()
  local reqs = mock:requests()
  return assert(json.decode(reqs[#reqs].body))
end

describe("requests that raise before anything is sent", function()
  it("messages as a string, or a list of strings", function()
    local c = client("openai")
    raises(function() c:chat{ messages = "hi" } end, "messages must be a list of messages")
    raises(function() c:chat{ messages = { "hi" } } end, "messages%[1%] must be a message table")
    raises(function() c:stream{ messages = { role = "user", content = "hi" } } end, "wrap the message in a list")
  end)

  it("an unknown role names the likely one", function()
    local c = client("anthropic")
    raises(function() c:chat{ messages = { { role = "usr", content = "hi" } } } end,
      "messages%[1%]: unknown role \"usr\" %(did you mean 'user'%?%)")
    raises(function() c:chat{ messages = { { content = "hi" } } } end, "messages%[1%] has no role")
    raises(function() c:chat{ messages = { { role = "user" } } } end, "messages%[1%] has no content")
  end)

  it("misspelt request fields name the intended one and point at `extra`", function()
    local c = client("openai")
    local e = raises(function() c:chat{ messages = { { role = "user", content = "hi" } }, max_token = 5 } end,
      "unknown field 'max_token' %(did you mean 'max_tokens'%?%)")
    assert.matches("extra", e)
    raises(function() c:chat{ temprature = 0.5 } end, "did you mean 'temperature'")
    raises(function() c:stream{ stream_options = {} } end, "unknown field 'stream_options'")
  end)

  it("the error blames the caller's line", function()
    local c = client("openai")
    local ok, err = pcall(function() c:chat{ max_token = 1 } end)
    assert.is_false(ok)
    assert.matches("input_spec%.lua:%d+:", err)
  end)

  it("misspelt client options", function()
    local ok, err = pcall(llm.client, "openai", { model = "m", api_key = KEY, timeot = 5 })
    assert.is_false(ok)
    assert.matches("unknown option 'timeot' %(did you mean 'timeout'%?%)", err)
    ok, err = pcall(llm.client, "openai", { api_key = KEY, limiter = {} })  -- not a limiter: raises
    assert.is_false(ok)
    assert.matches("limiter must be made by llm.limiter", err)
  end)

  it("wrong types raise about the user's mistake", function()
    local ok, err = pcall(llm.client, "openai", "gpt-4.1")
    assert.is_false(ok)
    assert.matches("options must be a table", err)
    assert.matches("model = \"gpt%-4%.1\"", err)
    ok, err = pcall(llm.client, "openai", { "gpt-4.1", api_key = KEY })
    assert.is_false(ok)
    assert.matches("options are named", err)
    ok, err = pcall(llm.client, "openai", { api_key = KEY, headers = "x: 1" })
    assert.is_false(ok)
    assert.matches("headers must be a table of header names to values", err)
    assert.not_matches("for iterator", err)
    ok, err = pcall(llm.client, "openai", { api_key = KEY, headers = { true } })
    assert.is_false(ok)
    assert.matches("headers must map header names to values", err)
    ok, err = pcall(llm.client, "openai", { api_key = KEY, timeout = "10" })
    assert.is_false(ok)
    assert.matches("timeout must be a number", err)
    local c = client("openai")
    raises(function() c:chat{ extra_headers = { true } } end, "extra_headers must map header names")
    raises(function() c:chat{ max_tokens = 1.5 } end, "max_tokens must be an integer")
    raises(function() c:chat{ stop = { 1 } } end, "stop%[1%] must be a string")
  end)

  it("names the first bad field in one fixed order, whatever order the request's keys have", function()
    local c = client("openai")
    -- the checks run in validate's order (timeout ... max_retries, model, max_tokens, temperature,
    -- ..., tools), only for the fields present; one bad field alone is named too
    local bad = { temperature = "hot", max_tokens = 0, model = 7, timeout = -1, seed = 1.5 }
    local order = { "timeout", "model", "max_tokens", "temperature", "seed" }
    for i = 1, #order do
      local req = {}
      for j = i, #order do req[order[j]] = bad[order[j]] end
      raises(function() c:chat(req) end, "request: " .. order[i] .. " must be")
      local alone = { [order[#order - i + 1]] = bad[order[#order - i + 1]] }
      raises(function() c:chat(alone) end, "request: " .. order[#order - i + 1] .. " must be")
    end
  end)

  it("run_tools with one tool instead of a list", function()
    local c = client("openai")
    local one = llm.tool{ name = "t", run = function() return 1 end }
    raises(function() c:run_tools{ messages = { { role = "user", content = "x" } }, tools = one } end,
      "run_tools: tools must be a list of tools")
    raises(function() c:chat{ tools = one } end, "tools must be a list of tools")
    raises(function() c:run_tools{ messages = { { role = "user", content = "x" } }, tools = { one }, max_token = 3 } end,
      "did you mean 'max_tokens'")
  end)

  it("parts a route cannot take raise naming the provider (API §12)", function()
    local refused = { openai = { "document" }, anthropic = { "document", "audio" }, gemini = { "document" },
                      ollama = { "document", "file", "audio" } }
    for name, types in pairs(refused) do
      local c = client(name)
      for _, ty in ipairs(types) do
        raises(function()
          c:chat{ messages = { { role = "user", content = { { type = "text", text = "see" },
                                                             { type = ty, data = "AAAA" } } } } }
        end, "^[^:]*:%d+: " .. name .. ": " .. ty .. " parts are not supported")
      end
    end
    local r = client("openai", { api = "responses" })
    raises(function() r:chat{ messages = { { role = "user", content = { { type = "audio", data = "AA" } } } } } end,
      "openai %(Responses API%): audio parts are not supported")
    raises(function() client("openai"):chat{ messages = { { role = "user", content = { { type = "imag", url = "u" } } } } } end,
      "unknown part type \"imag\" %(did you mean 'image'%?%)")
  end)

  it("media and cache fields of the wrong shape raise", function()
    local c = client("anthropic")
    raises(function() c:chat{ messages = { { role = "user", content = { { type = "image", path = 42 } } } } } end,
      "messages%[1%]%.content%[1%]: path must be a string, got number")
    raises(function() c:chat{ messages = { { role = "user", content = { { type = "text", text = "x", cache = "yes" } } } } } end,
      "cache must be true or false")
    raises(function() c:chat{ messages = { { role = "user", content = { { type = "image" } } } } } end,
      "an image part needs exactly one of `path`, `data` %(base64%) or `url`")
    raises(function() c:chat{ messages = { { role = "user", content = "x" } }, cache = 1 } end,
      "cache must be a boolean")
    raises(function() c:chat{ messages = { { role = "user", content = "x" } }, prompt_cache_key = "k" } end,
      "anthropic: the request field 'prompt_cache_key' is not supported by this API")
  end)

  it("llm.map with a concurrency below 1 #tasks", function()
    for _, n in ipairs{ 0, -1, 0.5 } do
      local ok, err = pcall(function()
        return llm.run(function() return llm.map({ 1, 2 }, function(x) return x end, { concurrency = n }) end)
      end)
      assert.is_false(ok)
      assert.matches("concurrency must be a positive integer", tostring(err))
    end
  end)
end)

describe("the optional contract fields (API §9)", function()
  it("are mapped where the provider has them", function()
    assert(client("openai"):chat{ seed = 7, n = 1, presence_penalty = 0.5, frequency_penalty = 0.25,
      logprobs = true, top_logprobs = 2, user = "u1", metadata = { team = "a" }, service_tier = "flex" })
    local b = sent_body()
    assert.equal(7, b.seed); assert.equal(0.5, b.presence_penalty); assert.equal(0.25, b.frequency_penalty)
    assert.is_true(b.logprobs); assert.equal(2, b.top_logprobs); assert.equal("u1", b.user)
    assert.same({ team = "a" }, b.metadata); assert.equal("flex", b.service_tier)

    mock:reset()
    assert(client("anthropic"):chat{ top_k = 5, user = "u2", service_tier = "auto" })
    b = sent_body()
    assert.equal(5, b.top_k); assert.same({ user_id = "u2" }, b.metadata); assert.equal("auto", b.service_tier)

    mock:reset()
    assert(client("gemini"):chat{ seed = 3, top_k = 4, presence_penalty = 0.1, logprobs = true, top_logprobs = 1 })
    b = sent_body()
    assert.same({ seed = 3, topK = 4, presencePenalty = 0.1, responseLogprobs = true, logprobs = 1 }, b.generationConfig)

    mock:reset()
    assert(client("ollama", { api_key = false }):chat{ seed = 9, top_k = 2 })
    b = sent_body()
    assert.equal(9, b.options.seed); assert.equal(2, b.options.top_k)
  end)

  it("raise naming the provider where it has no such field", function()
    raises(function() client("openai"):chat{ top_k = 5 } end, "openai: the request field 'top_k' is not supported")
    raises(function() client("anthropic"):chat{ seed = 1 } end, "anthropic: the request field 'seed' is not supported")
    raises(function() client("gemini"):chat{ user = "u" } end, "gemini: the request field 'user' is not supported")
    raises(function() client("ollama", { api_key = false }):chat{ n = 2 } end, "ollama: the request field 'n'")
    raises(function() client("openai"):chat{ input = "hi" } end, "belongs to the Responses API")
  end)
end)

describe("R.if_error", function()
  it("matches plain { kind = ... } errors, raised or returned", function()
    local R = llm.retry
    local p = R.policy{ stop = R.stop_after_attempt(3), wait = R.wait_fixed(0), retry = R.if_error("busy") }
    local n = 0
    local v = p:call(function()
      n = n + 1
      if n == 1 then return nil, { kind = "busy" } end
      if n == 2 then error({ kind = "busy" }) end
      return "ok"
    end)
    assert.equal("ok", v)
    assert.equal(3, n)
  end)
end)

describe("more places that check their input", function()
  it("names from the providers' own APIs point at ours", function()
    local c = client("openai")
    raises(function() c:chat{ max_completion_tokens = 5 } end, "did you mean 'max_tokens'")
    raises(function() c:chat{ stop_sequences = { "x" } } end, "did you mean 'stop'")
    raises(function() c:chat{ stream = true } end, "call client:stream%(req%)")
    raises(function() c:chat{ "hello" } end, "messages go in `messages = { ... }`")
  end)

  it("conversation options are checked when the conversation is made", function()
    local c = client("openai")
    local ok, err = pcall(function() local conv = c:conversation{ system = "s", temprature = 1 }; return conv end)
    assert.is_false(ok)
    assert.matches("input_spec%.lua:%d+: .*did you mean 'temperature'", err)
    assert.equal(0, mock:stats().requests)
  end)

  it("llm.configure defaults are checked when configured", function()
    local lib = llm.new()
    local ok, err = pcall(lib.configure, { defaults = { provider = "openai", modle = "m" } })
    assert.is_false(ok)
    assert.matches("llm.configure defaults: unknown option 'modle' %(did you mean 'model'%?%)", err)
  end)

  it("client:request options", function()
    local c = client("openai")
    raises(function() c:request("GET", "/models", nil, { heades = {} }) end, "did you mean 'headers'")
    raises(function() c:request("GET", "/models", nil, { headers = "x: 1" }) end, "headers must be a table")
  end)

  it("openai.derive with its own base_url drops the base's variables", function()
    local d = require("llm.providers.openai").derive{ base_url = "https://example.invalid/v1" }
    assert.is_nil(d.base_url_env)
    assert.is_nil(d.api_key_env)
    local e = require("llm.providers.openai").derive{ base_url = "https://e.invalid/v1", api_key_env = "E_KEY" }
    assert.equal("E_KEY", e.api_key_env)
  end)
end)
