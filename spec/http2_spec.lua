-- HTTP/2 over TLS: many concurrent requests to one host share few connections (multiplexed
-- streams). nghttpd (Debian nghttp2-server) speaks only HTTP/2, so a reply from it proves
-- the protocol; it serves static files from a directory over TLS with a certificate made for
-- this run. The connection counts come from the loop's counters (libcurl's
-- CURLINFO_NUM_CONNECTS per finished transfer), never from time.
local llm = require("llm")

local server, dir

-- A streamed OpenAI chat reply: role, three text deltas, finish, [DONE].
local function sse_body()
  local chunks = {}
  local function chunk(delta, finish)
    chunks[#chunks + 1] = 'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
      .. '"choices":[{"index":0,"delta":' .. delta .. ',"finish_reason":' .. finish .. '}]}\n\n'
  end
  chunk('{"role":"assistant","content":""}', "null")
  for _, w in ipairs{ "one", " two", " three" } do chunk('{"content":"' .. w .. '"}', "null") end
  chunk("{}", '"stop"')
  chunks[#chunks + 1] = "data: [DONE]\n\n"
  return table.concat(chunks)
end

setup(function()
  server = require("support.net").tls_server({
    ["htdocs/v1/chat/completions"] = sse_body(),
    ["htdocs/hello.txt"] = "hello over h2",
    ["htdocs/long.txt"] = string.rep("0123456789abcdef", 4096),   -- 64 KiB
    ["mime.types"] = "text/event-stream\tcompletions\ntext/plain\ttxt\n",
  }, function(port)
    return ("nghttpd -a 127.0.0.1 -d htdocs --mime-types-file=mime.types %d key.pem cert.pem"):format(port)
  end)
  dir = server.dir
end)

teardown(function() if server then server.stop() end end)

local function base() return server.url end

-- Connections opened and reused while fn(lib) runs, on a library instance of its own (its
-- own loop, so no connection is left over from another test). Its step budget is large, so
-- that one step starts every request before the first connection is up: each would open a
-- connection of its own unless it waits to learn whether it can share one (PIPEWAIT).
local function counting(fn)
  local lib = llm.new()
  lib.configure{ step_budget = 2 }
  fn(lib)
  local s = lib.loop:stats()
  return s.new_connections, s.connections_reused
end

describe("HTTP/2 over TLS", function()
  it("24 transfers of 64 KiB at once all finish, each with libcurl's full receive buffer", function()
    -- libcurl 7.88 receives an HTTP/2 stream's DATA into the transfer's receive buffer and
    -- pauses the stream when it is full: with the 1 KiB buffer that plain http transfers get
    -- beyond 16 at once, many HTTP/2 streams stalled for good.
    local lib = llm.new()
    local ts = {}
    for i = 1, 24 do
      ts[i] = lib.loop:transfer({ url = base() .. "/long.txt", ca_file = dir .. "/cert.pem", timeout = 30 })
    end
    local done = require("support.net").run_transfers(lib.loop, 24, function(rec)
      assert.is_nil(rec.error)
      assert.equal(65536, #rec.body)
    end, 2000)
    assert.equal(24, done)
    for _, t in ipairs(ts) do
      assert.equal(16384, t.buffer_size)
      t:close()
    end
    assert.equal(0, lib.loop:stats().small_buffers)
  end)

  it("serves a request: nghttpd answers only HTTP/2", function()
    local res = assert(llm.http.request{ url = base() .. "/hello.txt", ca_file = dir .. "/cert.pem", timeout = 10 })
    assert.equal(200, res.status)
    assert.equal("hello over h2", res.body)
  end)

  it("40 concurrent requests started in one step share one or two connections", function()
    local n = 40
    local statuses = {}
    local opened, reused = counting(function(lib)
      lib.run(function()
        local tasks = {}
        for i = 1, n do
          tasks[i] = lib.spawn(function()
            local res = assert(lib.http.request{ url = base() .. "/hello.txt", ca_file = dir .. "/cert.pem",
                                                 timeout = 10 })
            statuses[#statuses + 1] = res.status
            return res.body
          end)
        end
        local bodies = lib.gather(tasks)
        for i = 1, n do assert.equal("hello over h2", bodies[i]) end
      end)
    end)
    assert.equal(n, #statuses)
    assert.is_true(opened >= 1 and opened <= 2, "connections opened: " .. opened)
    assert.equal(n, opened + reused)
  end)

  it("30 concurrent streams through the client share one or two connections", function()
    local n = 30
    local texts = {}
    local opened, reused = counting(function(lib)
      local c = lib.client("openai", { base_url = base() .. "/v1", api_key = "k", model = "m",
                                       ca_file = dir .. "/cert.pem", max_retries = 0 })
      lib.run(function()
        local tasks = {}
        for i = 1, n do
          tasks[i] = lib.spawn(function()
            local s = assert(c:stream("hi"))
            local parts = {}
            for ev in s:events() do
              if ev.type == "text" then parts[#parts + 1] = ev.text end
            end
            texts[i] = table.concat(parts)
          end)
        end
        lib.gather(tasks)
      end)
    end)
    for i = 1, n do assert.equal("one two three", texts[i]) end
    assert.is_true(opened >= 1 and opened <= 2, "connections opened: " .. opened)
    assert.equal(n, opened + reused)
  end)
end)
