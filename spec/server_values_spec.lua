-- lua5.1: yes
-- Values a server sends that must not be taken at face value: retry-after in forms HTTP does
-- not allow, usage counts that are not integers. And the retries a client makes are logged.
local mockmod = require("support.mock")
local json = require("llm.json")
local llm = require("llm")

local KEY = "sk-values-0123456789abcdef"
local mock

setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

local function openai(opts, lib)
  local o = { model = "gpt-test", base_url = mock.url .. "/v1", api_key = KEY, max_retries = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return (lib or llm).client("openai", o)
end

local function retry_after(value, header)
  local _, err = openai{ headers = { ["x-mock-fault"] = "status=429;" .. (header or "retry-after") .. "=" .. value } }:chat("x")
  assert.equal("rate_limit", err.kind)
  return err.retry_after
end

describe("retry-after", function()
  it("takes decimal seconds, retry-after-ms and HTTP dates", function()
    assert.equal(3, retry_after("3"))
    assert.equal(1.5, retry_after("1.5"))
    assert.equal(0.25, retry_after("250", "retry-after-ms"))
    assert.equal(0, retry_after("Wed, 21 Oct 2015 07:28:00 GMT"))  -- a date in the past: now
  end)

  it("ignores hex, exponents, signs and other forms", function()
    for _, v in ipairs{ "0x10", "1e3", "-5", "inf", "nan", "+3", "3s", "0x10 " } do
      assert.is_nil(retry_after(v), "retry-after: " .. v)
    end
    assert.is_nil(retry_after("0x10", "retry-after-ms"))
    assert.is_nil(retry_after("1e5", "retry-after-ms"))
  end)
end)

describe("usage from a server", function()
  local openai_p = require("llm.providers.openai")

  it("keeps integer counts and drops counts that are not whole numbers", function()
    local body = json.decode('{"choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}],'
      .. '"usage":{"prompt_tokens":1e400,"completion_tokens":1.5,"total_tokens":-2}}')
    local resp = openai_p.decode_response(body, { model = "m" })
    assert.same({}, resp.usage)
    body = json.decode('{"choices":[],"usage":{"prompt_tokens":17.0,"completion_tokens":3,"total_tokens":null}}')
    resp = openai_p.decode_response(body, { model = "m" })
    assert.equal(17, resp.usage.input_tokens)
    assert.equal(math.type and "integer" or "number", math.type and math.type(resp.usage.input_tokens) or "number")
    assert.equal(20, resp.usage.total_tokens)
    -- integers (decoded as integers) past 2^53 or below 0 are dropped too; 2^53 itself is kept
    body = json.decode('{"choices":[],"usage":{"prompt_tokens":9007199254740994,'
      .. '"completion_tokens":-1,"total_tokens":9007199254740992}}')
    resp = openai_p.decode_response(body, { model = "m" })
    assert.is_nil(resp.usage.input_tokens)
    assert.is_nil(resp.usage.output_tokens)
    assert.equal(9007199254740992, resp.usage.total_tokens)
  end)

  it("in a stream too", function()
    local st = openai_p.new_stream_state({ model = "m", stream = true })
    local evs = openai_p.decode_event(st, { data = '{"id":"c","choices":[],"usage":{"prompt_tokens":-4,"completion_tokens":1e400}}' })
    for _, ev in ipairs(evs) do
      if ev.type == "usage" then
        assert.is_nil(ev.usage.input_tokens)
        assert.is_nil(ev.usage.output_tokens)
      end
    end
  end)
end)

describe("retries are logged", function()
  it("one info line per retry with the default policy", function()
    local lines = {}
    local lib = llm.new{ clock = require("llm.clock").fake(0) }
    lib.configure{ log = function(level, msg) if msg:find(": retry ") then lines[#lines + 1] = level .. " " .. msg end end }
    local function default_client(headers)
      return lib.client("openai", { model = "m", base_url = mock.url .. "/v1", api_key = KEY, headers = headers })
    end
    local c = default_client{ ["x-mock-sequence"] = "status=503|status=503|ok", ["x-mock-key"] = "logged-" .. os.time() }
    local resp = assert(c:chat("x"))
    assert.equal("echo: x", resp.text)
    assert.equal(2, #lines)
    assert.matches("^info openai m: retry 1 %(attempt 2%) in [%d.]+ s after: .*server.*HTTP 503", lines[1])
    assert.matches("^info openai m: retry 2 %(attempt 3%)", lines[2])
    -- streams too
    lines = {}
    local s = assert(default_client{ ["x-mock-sequence"] = "status=500|ok", ["x-mock-key"] = "logged-s-" .. os.time() }:stream("y"))
    assert(s:final())
    assert.equal(1, #lines)
  end)
end)
