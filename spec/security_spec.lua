-- lua5.1: yes
-- Secrets and hosts: a key goes only to a host the user named for its provider, and no key
-- (whole, encoded, cut short or elided) comes back out in an error, an event or a log line.
-- Each case plays against the mock server, which echoes the key the way careless servers do.
local mockmod = require("support.mock")
local json = require("llm.json")
local llm = require("llm")
local errors = require("llm.errors")
local V = require("support.version")

-- The key holds characters that URL-encoding and JSON escaping change.
local KEY = "sk-sec/ret+KEY=0123456789abcdefWXYZ"
local mock

setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

local function percent(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Every form of `key` that must not be visible in `text`.
local function assert_clean(text, key, what)
  key = key or KEY
  text = type(text) == "string" and text or json.encode(text)
  for _, form in ipairs{ key, percent(key), (key:gsub("/", "\\/")), key:sub(1, 8),
                         key:sub(1, 6) .. "...", "..." .. key:sub(-4) } do
    assert.is_nil(text:find(form, 1, true), (what or "text") .. " shows the key as " .. form .. ": " .. text)
  end
end

local function openai(opts, lib)
  local o = { model = "gpt-test", base_url = mock.url .. "/v1", api_key = KEY, max_retries = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return (lib or llm).client("openai", o)
end

describe("a server that echoes the key", function()
  for _, form in ipairs{ "plain", "percent", "json", "partial", "elided" } do
    it("in the error message and x-request-id (" .. form .. ")", function()
      local c = openai{ headers = { ["x-mock-fault"] = "status=401", ["x-mock-echo-key"] = form } }
      local resp, err = c:chat("hi")
      assert.is_nil(resp)
      assert.equal("auth", err.kind)
      assert.is_string(err.request_id)
      assert.matches("REDACTED", err.request_id)
      assert.matches("Incorrect API key provided: %[REDACTED%]", err.message)
      assert_clean(err.message, nil, "message")
      assert_clean(err.request_id, nil, "request_id")
      assert_clean(tostring(err), nil, "tostring")
      assert_clean(err.body, nil, "body")
      -- the same reply to a stream
      local s, serr = c:stream("hi")
      assert.is_nil(s)
      assert_clean(tostring(serr), nil, "stream error")
      assert_clean(serr.request_id, nil, "stream request_id")
    end)
  end

  it("in ev.raw of a stream's error event", function()
    local c = openai{ headers = { ["x-mock-fault"] = "error-after-events=2", ["x-mock-echo-key"] = "plain" } }
    local s = assert(c:stream("one two three"))
    local last
    for ev in s:events() do last = ev end
    assert.equal("error", last.type)
    assert.is_table(last.raw)
    assert.matches("REDACTED", json.encode(last.raw))
    assert_clean(last.raw, nil, "ev.raw")
    assert_clean(tostring(last.error), nil, "ev.error")
    assert_clean(last.error.body, nil, "ev.error.body")
  end)

  it("a key shorter than 4 characters, without destroying other text", function()
    local short = "q7Z"
    local c = openai{ api_key = short, headers = { ["x-mock-fault"] = "status=401", ["x-mock-echo-key"] = "plain" } }
    local _, err = c:chat("hi")
    assert.equal("Incorrect API key provided: [REDACTED]", err.message)
    assert.equal("[REDACTED]", err.request_id)
    -- as a whole token it is redacted; inside other words it is ordinary text
    assert.equal("key [REDACTED], not q7Zed or aq7Z", errors.redact("key q7Z, not q7Zed or aq7Z"))
    assert.equal("Authorization: Bearer [REDACTED]", errors.redact("Authorization: Bearer zz"))
  end)
end)

describe("credentials that are not the API key", function()
  it("inside base_url stay out of tostring(client), errors and debug lines", function()
    local lines = {}
    local lib = llm.new()
    lib.configure{ log = function(_, msg) lines[#lines + 1] = msg end }
    local url = mock.url:gsub("^http://", "http://alice:pw-Hunter2xyz@") .. "/v1"
    local c = openai({ base_url = url, headers = { ["x-mock-fault"] = "status=500" } }, lib)
    assert.is_nil(tostring(c):find("pw-Hunter2xyz", 1, true))
    assert.matches("%[REDACTED%]@127%.0%.0%.1", tostring(c))
    local _, err = c:chat("hi")
    assert.equal("server", err.kind)
    assert.truthy(#lines > 0)
    local all = table.concat(lines, "\n") .. tostring(err)
    assert.is_nil(all:find("pw-Hunter2xyz", 1, true))
    assert.is_nil(all:find("alice:pw", 1, true))
    assert.is_nil(all:find("YWxpY2U6cHctSHVudGVyMnh5eg", 1, true))   -- base64 of alice:pw-Hunter2xyz
    assert_clean(all, nil, "debug lines")
    -- the request did carry the key to the host the user named
    assert.equal("Bearer " .. KEY, mock:requests()[1].headers["authorization"])
  end)

  it("a key in a query string, percent-encoded, is redacted in debug lines", function()
    local lines = {}
    local lib = llm.new()
    lib.configure{ log = function(_, msg) lines[#lines + 1] = msg end }
    local c = openai({ api_key = false }, lib)
    assert(c:chat{ messages = { { role = "user", content = "q" } }, extra_query = { token = KEY } })
    assert.equal("token=" .. percent(KEY), mock:requests()[1].query)
    local all = table.concat(lines, "\n")
    assert.matches("token=%[REDACTED%]", all)
    assert_clean(all, nil, "debug lines")
  end)
end)

describe("redaction rules", function()
  local K = "sk-proj-AbCdEfGh12345678wxyz"
  setup(function() errors.add_secret(K) end)

  it("prefix runs, elisions, encodings", function()
    assert.equal("[REDACTED] is cut", errors.redact("sk-proj-AbCd is cut"))
    assert.equal("[REDACTED].", errors.redact("sk-proj-****************wxyz."))
    assert.equal("got [REDACTED]", errors.redact("got sk-pro...wxyz"))
    assert.equal("got [REDACTED]", errors.redact("got sk-proj-AbCd\226\128\166xyz"))
    assert.equal("x=[REDACTED]", errors.redact("x=" .. percent(K)))
    -- text that merely shares the common "sk-" prefix is left alone
    assert.equal("sk-other-key and sk-... text", errors.redact("sk-other-key and sk-... text"))
  end)
end)

describe("hosts", function()
  local function run_lua(env, code)
    local root = os.getenv("LLM_ROOT") or "."
    local build = os.getenv("LLM_BUILD") or (root .. "/build")
    local script = os.tmpname()
    local f = assert(io.open(script, "w")); f:write(code); f:close()
    local p = io.popen(("cd %s && env %s LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='%s/?.so;;' %s %s 2>&1")
      :format(root, env, build, V.lua, script))
    local out = p:read("*a")
    p:close()
    os.remove(script)
    return out
  end

  it("a derived provider's own base_url wins over the base's OPENAI_BASE_URL", function()
    local evil = mockmod.start()
    local out = run_lua(("OPENAI_BASE_URL=%s/v1 GROQ_TEST_KEY=gsk-groq-key-0123456789 OPENAI_API_KEY=sk-openai-0123456789")
      :format(evil.url), ([[
      local llm = require("llm")
      llm.providers.groq = { base = "openai", base_url = %q, api_key_env = "GROQ_TEST_KEY" }
      local c = llm.client("groq", { model = "m" })
      print(assert(c:chat("to groq")).text)
      llm.providers.nokey = { base = "openai", base_url = %q }
      print(pcall(llm.client, "nokey", { model = "m" }))
    ]]):format(mock.url .. "/v1", mock.url .. "/v1"))
    local evil_requests = evil:stats().requests
    evil:stop()
    assert.matches("echo: to groq", out)
    assert.equal(0, evil_requests)
    local reqs = mock:requests()
    assert.equal(1, #reqs)
    assert.equal("Bearer gsk-groq-key-0123456789", reqs[1].headers["authorization"])
    -- a provider with its own host and no key variable does not take OPENAI_API_KEY there
    assert.matches("false.*no API key for provider 'nokey'", out)
  end)

  it("a client's base_url option wins too, and the plain provider still reads the variable", function()
    local evil = mockmod.start()
    local out = run_lua(("OPENAI_BASE_URL=%s/v1"):format(evil.url), ([[
      local llm = require("llm")
      local c = llm.client("openai", { model = "m", api_key = "k-0123456789", base_url = %q })
      print(assert(c:chat("to mine")).text)
      local d = llm.client("openai", { model = "m", api_key = "k-0123456789" })
      print(assert(d:chat("to env")).text)
    ]]):format(mock.url .. "/v1"))
    local evil_requests = evil:stats().requests
    evil:stop()
    assert.matches("echo: to mine", out)
    assert.matches("echo: to env", out)
    assert.equal(1, evil_requests)
    assert.equal(1, #mock:requests())
  end)

  it("Gemini model names cannot walk the URL path", function()
    local g = llm.client("gemini", { model = "x", base_url = mock.url .. "/v1beta", api_key = KEY, max_retries = 0 })
    for _, model in ipairs{ "../../../evil", "a/../../b", "m?key=1#frag", "models/../x" } do
      mock:reset()
      g:chat{ model = model, messages = { { role = "user", content = "hi" } } }
      local r = mock:requests()[1]
      assert.matches("^/v1beta/models/[^/]+:generateContent$", r.path)
      assert.is_nil(r.path:find("/../", 1, true))
      assert.is_true(r.query == nil or r.query == "", "the model name made a query: " .. tostring(r.query))
    end
  end)

  it("a redirect to //host:port/path is another origin, refused as \"protocol\"", function()
    local other = mockmod.start()
    local target = "//127.0.0.1:" .. other.port .. "/v1/chat/completions"
    local _, err = openai{ headers = { ["x-mock-fault"] = "redirect=" .. target } }:chat("x")
    local other_requests = other:stats().requests
    other:stop()
    assert.equal("protocol", err.kind)
    assert.matches("another origin", err.message)
    assert.equal(0, other_requests)
    -- the same origin written scheme-relative is followed
    local same = "//127.0.0.1:" .. mock.port .. "/v1/chat/completions"
    local resp = assert(openai{ headers = { ["x-mock-sequence"] = "redirect=" .. same .. "|ok",
                                            ["x-mock-key"] = "scheme-relative" } }:chat("again"))
    assert.equal("echo: again", resp.text)
  end)

  it("client:request sends the key only to the provider's origin", function()
    local other = mockmod.start()
    local c = openai()
    local ok, err = pcall(c.request, c, "GET", other.url .. "/v1/models")
    local other_requests = other:stats().requests
    other:stop()
    assert.is_false(ok)
    assert.matches("not on the provider's origin", err)
    assert.equal(0, other_requests)
    -- an absolute URL on the same origin is fine
    local body = assert(c:request("POST", mock.url .. "/v1/chat/completions",
      { model = "m", messages = { { role = "user", content = "abs" } } }))
    assert.equal("chat.completion", body.object)
  end)

  it("extra_query names and values are escaped", function()
    assert(openai():chat{ messages = { { role = "user", content = "q" } },
                          extra_query = { ["a&b=c"] = "1&x=y", plain = "v" } })
    assert.equal("a%26b%3Dc=1%26x%3Dy&plain=v", mock:requests()[1].query)
  end)
end)
