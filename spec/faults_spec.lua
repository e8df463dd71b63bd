-- The fault matrix: for chat and stream on every provider route, each transport or server
-- fault the mock can play. Each case asserts the error kind, that nothing received before
-- the fault is lost (a stream's events up to the fault are delivered, the error event is
-- last), and that the next call on the same client succeeds.
local mockmod = require("support.mock")
local llm = require("llm")
local json = require("llm.json")

local KEY = "sk-test-faults-0123456789"
local mock

setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

local merge = mockmod.merge

local function base_url(p, root)
  if p == "openai" or p == "responses" then return root .. "/v1" end
  if p == "gemini" then return root .. "/v1beta" end
  return root
end

local PROVIDER = { openai = "openai", responses = "openai", anthropic = "anthropic", gemini = "gemini", ollama = "ollama" }

local function client(p, opts, root)
  return llm.client(PROVIDER[p], merge({ model = "m", base_url = base_url(p, root or mock.url),
    api_key = p ~= "ollama" and KEY or nil, api = p == "responses" and "responses" or nil,
    max_retries = 0, idle_timeout = 0.3, first_token_timeout = 2 }, opts))
end

-- Events each route sends before its first text delta (mock: role chunk; created,
-- in_progress, output_item.added, content_part.added; message_start, content_block_start, ping).
local PREAMBLE = { openai = 1, responses = 4, anthropic = 3, gemini = 0, ollama = 0 }
local TEXT = "w1 w2 w3 w4 w5 w6 w7 w8"
local N = 6   -- the fault strikes after this many events

local net = require("support.net")
local closed_port = net.closed_port

local V = require("support.version")
local function is_utf8(s) return V.utf8.len(s) ~= nil end

-- kind: the error kind; text_events(p): how many text events a stream delivers first.
local FAULTS = {
  { name = "connection refused", refused = true, chat = "connection", stream = "connection" },
  { name = "reset before headers", fault = "reset-before-headers", chat = "connection", stream = "connection" },
  { name = "reset after headers", fault = "reset-after-events=0", chat = "connection", stream = "connection" },
  { name = "reset after n events", fault = "reset-after-events=" .. N, chat = "connection", stream = "connection",
    text_events = function(p) return N - PREAMBLE[p] end },
  { name = "stall before headers", fault = "stall-before-headers", opts = { timeout = 0.3 },
    chat = "timeout", stream = "timeout" },
  { name = "stall mid-body", fault = "stall-after-events=" .. N, opts = { timeout = 0.5 },
    chat = "timeout", stream = "timeout", text_events = function(p) return N - PREAMBLE[p] end },
  { name = "truncated chunked body", fault = "eof-after-events=" .. N, chat = "connection", stream = "connection",
    text_events = function(p) return N - PREAMBLE[p] end },
  { name = "200 with HTML", fault = "html-200", chat = "protocol", stream = "protocol" },
  { name = "200 with invalid JSON", fault = "invalid-json", stream_fault = "malformed-json",
    chat = "protocol", stream = "protocol" },
  { name = "200 with a JSON number", fault = "not-object", chat = "protocol" },
  { name = "200 with a JSON array", fault = "not-object=[1,2]", chat = "protocol" },
  { name = "oversized header", fault = "big-header=1048576", chat = "protocol", stream = "protocol" },
  { name = "oversized event", stream_fault = "big-event=20000", opts = { max_event_size = 8192 },
    stream = "protocol" },
  { name = "invalid UTF-8", fault = "bad-utf8", chat = "ok", stream = "ok" },
}

local ROUTES = { "openai", "responses", "anthropic", "gemini", "ollama" }

local function check_next_call(c, mode)
  if mode == "chat" then
    local r, err = c:chat("after")
    assert(r, tostring(err))
    assert.equal("echo: after", r.text)
  else
    local s = assert(c:stream("after"))
    local r, err = s:final()
    assert(r, tostring(err))
    assert.equal("echo: after", r.text)
  end
end

for _, p in ipairs(ROUTES) do
  describe(p, function()
    for _, f in ipairs(FAULTS) do
      for _, mode in ipairs{ "chat", "stream" } do
        local want = f[mode]
        local spec = mode == "stream" and (f.stream_fault or f.fault) or f.fault
        if want then
          it(mode .. ": " .. f.name .. " -> " .. want, function()
            local port = f.refused and closed_port() or nil
            local c = client(p, f.opts, port and ("http://127.0.0.1:" .. port))
            local req = { messages = { { role = "user", content = TEXT } },
                          extra_headers = { ["x-mock-fault"] = spec, ["x-mock-text"] = TEXT } }
            if mode == "chat" then
              local r, err = c:chat(req)
              if want == "ok" then
                assert(r, tostring(err))
                assert.is_true(is_utf8(r.text))
                assert.matches("\239\191\189", r.text, 1, true)
              else
                assert.is_nil(r)
                assert.equal(want, err.kind, tostring(err))
              end
            else
              local s, err = c:stream(req)
              local evs = {}
              if s then
                for ev in s:events() do evs[#evs + 1] = ev end
              end
              if want == "ok" then
                assert(s, tostring(err))
                local last = evs[#evs]
                assert.equal("done", last.type)
                assert.is_true(is_utf8(last.response.text))
                assert.matches("\239\191\189", last.response.text, 1, true)
              elseif not s then
                -- before the response started: stream() itself fails
                assert.equal(want, err.kind, tostring(err))
              else
                local last = evs[#evs]
                assert.equal("error", last.type)
                assert.equal(want, last.error.kind, tostring(last.error))
                local texts = {}
                for i = 1, #evs - 1 do
                  assert.are_not.equal("error", evs[i].type)    -- the error event is last
                  if evs[i].type == "text" then texts[#texts + 1] = evs[i].text end
                end
                if f.text_events then
                  assert.equal(f.text_events(p), #texts)        -- nothing received is lost
                  assert.equal(TEXT:sub(1, #table.concat(texts)), table.concat(texts))
                end
              end
            end
            if f.refused then
              -- once a server listens on that port, the same client's next call succeeds
              local late = mockmod.start{ port = port }
              local ok, e = pcall(check_next_call, c, mode)
              late:stop()
              assert(ok, e)
            else
              check_next_call(c, mode)
            end
          end)
        end
      end
    end

    it("invalid UTF-8 in a reply never goes back out as invalid JSON", function()
      local conv = client(p):conversation(p == "responses" and { store = false } or {})   -- whole history
      assert(conv:send("first", { extra_headers = { ["x-mock-fault"] = "bad-utf8" } }))
      assert(conv:send("second"))
      local reqs = mock:requests()
      local body = reqs[#reqs].body
      assert.is_true(is_utf8(body))
      assert.is_truthy(json.decode(body))
      assert.matches("\239\191\189", body, 1, true)
    end)
  end)
end

describe("error kinds come from libcurl's result codes", function()
  it("a 1 MiB header line, or more than 256 KiB of headers, is a protocol error, not retried", function()
    for _, f in ipairs{ "big-header=1048576", "many-headers=300" } do
      mock:reset()
      local c = client("openai", { max_retries = 2 })
      local r, err = c:chat{ messages = { { role = "user", content = "x" } },
                             extra_headers = { ["x-mock-fault"] = f } }
      assert.is_nil(r)
      assert.equal("protocol", err.kind, f)
      assert.is_false(err.retryable)
      assert.equal(1, #mock:requests())
      assert.equal("echo: ok", assert(c:chat("ok")).text)
    end
  end)

  it("a malformed URL is bad_request, not retried", function()
    local c = client("openai", { max_retries = 2 }, "http://127.0.0.1:99999")
    local r, err = c:chat("x")
    assert.is_nil(r)
    assert.equal("bad_request", err.kind, tostring(err))
    assert.is_false(err.retryable)
  end)

  it("a total timeout that fires while connecting says which = \"total\"", function()
    local port, close = net.full_listener()
    local c = client("openai", { timeout = 0.3, connect_timeout = 5 }, "http://127.0.0.1:" .. port)
    local r, err = c:chat("x")
    close()
    assert.is_nil(r)
    assert.equal("timeout", err.kind)
    assert.equal("total", err.which)
  end)
end)
