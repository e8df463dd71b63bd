-- HTTP/2 over TLS: many concurrent requests to one host share few connections (multiplexed
-- streams). nghttpd (Debian nghttp2-server) speaks only HTTP/2, so a reply from it proves
-- the protocol; it serves static files from a directory over TLS with a certificate made for
-- this run. The connection counts come from the loop's counters (libcurl's
-- CURLINFO_NUM_CONNECTS per finished transfer), never from time.
local llm = require("llm")
local socket = require("socket")

local dir, port, pid

local function sh(cmd) return os.execute(cmd) end

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
  dir = os.tmpname(); os.remove(dir)
  assert(sh("mkdir -p " .. dir .. "/htdocs/v1/chat"))
  assert(sh(("cd %s && env -u LD_PRELOAD openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
    .. "-addext subjectAltName=IP:127.0.0.1 -keyout key.pem -out cert.pem >/dev/null 2>&1"):format(dir)))
  local f = assert(io.open(dir .. "/htdocs/v1/chat/completions", "w")); f:write(sse_body()); f:close()
  f = assert(io.open(dir .. "/htdocs/hello.txt", "w")); f:write("hello over h2"); f:close()
  f = assert(io.open(dir .. "/mime.types", "w")); f:write("text/event-stream\tcompletions\ntext/plain\ttxt\n"); f:close()
  port = require("support.net").closed_port()
  assert(sh(("cd %s && env -u LD_PRELOAD nghttpd -a 127.0.0.1 -d htdocs --mime-types-file=mime.types %d key.pem cert.pem "
    .. ">nghttpd.log 2>&1 & echo $! > %s/pid"):format(dir, port, dir)))
  local pf = assert(io.open(dir .. "/pid")); pid = pf:read("*n"); pf:close()
  for _ = 1, 100 do           -- wait until it accepts
    local c = socket.tcp()
    c:settimeout(0.1)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    if ok then break end
    sh("sleep 0.05")
  end
end)

teardown(function()
  if pid then sh("kill " .. pid .. " 2>/dev/null") end
  if dir then sh("rm -rf " .. dir) end
end)

local function base() return ("https://127.0.0.1:%d"):format(port) end

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
