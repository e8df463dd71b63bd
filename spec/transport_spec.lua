-- lua5.1: yes
-- The C loop and transfers through llm.http, against the mock server on 127.0.0.1.
-- Concurrency and reuse are read from the server's counters and the loop's own; nothing
-- here measures the wall clock.
local mockmod = require("support.mock")
local V = require("support.version")

local llm = require("llm")
local http = llm.http
local loop = llm.loop

local mock

setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

local function chat_spec(headers, stream, extra)
  local h = { ["content-type"] = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  local spec = {
    method = "POST", url = mock.url .. "/v1/chat/completions", headers = h,
    body = '{"model":"m","stream":' .. tostring(stream == true) .. ',"messages":[{"role":"user","content":"hi there"}]}',
    framing = stream and "sse" or nil,
  }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return spec
end

-- Poll the server (each poll drives our loop a little) until pred(stats) holds; generous, as
-- it returns as soon as the condition does.
local function wait_stats(pred, tries)
  for _ = 1, tries or 1000 do
    local st = mock:stats()
    if pred(st) then return st end
    llm.sleep(0.02)
  end
  return mock:stats()
end

describe("transfers", function()
  it("performs a request and returns status, lower-case headers and body", function()
    local res = assert(http.request(chat_spec({ ["x-mock-text"] = "hello" })))
    assert.equal(200, res.status)
    assert.matches("application/json", res.headers["content-type"])
    assert.matches('"hello"', res.body)
  end)

  it("streams server-sent events in batches, keep-alive comments excluded", function()
    local s = http.stream(chat_spec({ ["x-mock-text"] = "a b c" }, true))
    assert.is_true(s:wait_headers())
    assert.equal(200, s.status)
    local n, last = 0, nil
    while true do
      local ev, err = s:next_event()
      if not ev then assert.is_nil(err); break end
      n = n + 1
      last = ev.data
    end
    assert.equal("[DONE]", last)
    assert.is_true(n >= 5)
  end)

  it("waits for every record of a stream on one future, and every waiting task wakes #tasks", function()
    -- Each event in its own record (20 ms apart): a wait per event, one future for all.
    local h = chat_spec({ ["x-mock-text"] = "a b c d", ["x-mock-delay-ms"] = "20" }, true)
    local futs, n = {}, 0
    llm.run(function()
      local s = http.stream(h)
      assert.is_true(s:wait_headers())
      while s:next_event() do
        n = n + 1
        futs[s.settled_fut or "none"] = true
      end
      -- Two more tasks wait on the reader: the first waiter and the list of the others.
      local reader = llm.spawn(function() llm.sleep(0.01); return "r" end)
      local got = llm.gather({ llm.spawn(function() return llm.await(reader) end),
                               llm.spawn(function() return llm.await(reader) end) })
      assert.same({ "r", "r" }, got)
    end)
    assert.is_true(n >= 7)
    local count = 0
    for f in pairs(futs) do assert.is_table(f); count = count + 1 end
    assert.equal(1, count)
  end)

  it("reuses a closed transfer's easy handle, with none of its options", function()
    local lib = llm.new()                     -- a loop of its own: no handle kept from other tests
    assert.equal(0, lib.loop:stats().spare_handles)
    local first = chat_spec({ ["x-first"] = "1", ["x-mock-text"] = "one" })
    first.timeout = 7
    assert.equal(200, assert(lib.http.request(first)).status)
    assert.equal(1, lib.loop:stats().spare_handles)    -- kept, not cleaned up
    local res = assert(lib.http.request{ url = mock.url .. "/__mock/stats" })   -- a GET, no body
    assert.equal(200, res.status)
    assert.equal(1, lib.loop:stats().spare_handles)    -- taken and given back: still one
    local s = lib.http.stream(chat_spec({ ["x-mock-text"] = "two" }, true))
    assert.equal(0, lib.loop:stats().spare_handles)    -- in use by the stream
    assert.is_true(s:wait_headers())
    while s:next_event() do end
    s:close()
    assert.equal(1, lib.loop:stats().spare_handles)
    local reqs = mock:requests()
    assert.equal(2, #reqs)                    -- the GET of /__mock/stats is not logged
    assert.equal("1", reqs[1].headers["x-first"])
    assert.is_nil(reqs[2].headers["x-first"])  -- the reset handle kept no header of the first
    assert.equal("POST", reqs[2].method)
    assert.matches('"stream":true', reqs[2].body)
  end)

  it("sends a header with an empty value, and one longer than a line on the C stack", function()
    local long = string.rep("v", 700)
    local res = assert(http.request(chat_spec({ ["x-empty"] = "", ["x-long"] = long, ["x-mock-text"] = "ok" })))
    assert.equal(200, res.status)
    local req = mock:requests()[1]
    assert.equal("", req.headers["x-empty"])
    assert.equal(long, req.headers["x-long"])
  end)

  it("reports a stream's headers once (its done record has none) and a request's on its done record", function()
    local lib = llm.new()
    local long = "X-" .. string.rep("Long-Name-", 8)  -- a name over 64 bytes, lower-cased all the same
    mock.server:push{ text = "hi", headers = { [long] = "v", ["X-Mixed-Case"] = "w" } }
    local function records(spec)
      local t, out = lib.loop:transfer(spec), {}
      for _ = 1, 500 do
        local recs = lib.loop:step(0.05)
        for _, rec in ipairs(recs) do if rec.id == t.id then out[#out + 1] = rec end end
        if out[#out] and out[#out].type == "done" then break end
      end
      t:close()
      return out
    end
    local recs = records(chat_spec(nil, true))
    assert.equal("headers", recs[1].type)
    assert.equal("v", recs[1].headers[long:lower()])
    assert.equal("w", recs[1].headers["x-mixed-case"])
    local done = recs[#recs]
    assert.equal("done", done.type)
    assert.equal(200, done.status)
    assert.is_nil(done.headers)                     -- not built a second time
    recs = records(chat_spec({ ["x-mock-text"] = "one" }))
    assert.equal(1, #recs)
    assert.equal("done", recs[1].type)
    assert.matches("application/json", recs[1].headers["content-type"])
  end)

  it("keeps a stream's unread events as the core's batches: an event's table is made when it is read", function()
    local lib = llm.new()
    local spec = chat_spec({ ["x-mock-events"] = "3000" }, true)
    collectgarbage("collect")
    collectgarbage("stop")                          -- the heap's growth is what the stream holds
    local ok, err = pcall(function()
      local before = collectgarbage("count")
      local s = lib.http.stream(spec)
      assert(s:wait_headers())
      while not s.done do assert(s:wait()) end      -- the whole reply waits, unread
      local held = (collectgarbage("count") - before) * 1024
      local n, data = 0, 0
      while true do
        local ev = s:next_event()
        if not ev then break end
        n, data = n + 1, data + #ev.data
      end
      assert.equal(3003, n)
      -- The data strings, the batches and the stream; a table per queued event would add
      -- more than 100 bytes each.
      assert.is_true(held < data + 64 * n, string.format("%.0f bytes held for %.0f bytes of data", held, data))
    end)
    collectgarbage("restart")
    assert(ok, err)
  end)

  it("accepts a compressed response and hands over the decoded body", function()
    local res = assert(http.request(chat_spec({ ["x-mock-gzip"] = "1", ["x-mock-text"] = "zipped" })))
    assert.equal("gzip", res.headers["content-encoding"])
    assert.matches('"zipped"', res.body)
    local req = mock:requests()[1]
    assert.matches("gzip", req.headers["accept-encoding"])
  end)

  it("parses retry-after and x-should-retry into numbers in C", function()
    local res = assert(http.request(chat_spec({ ["x-mock-fault"] = "status=429;retry-after=7;x-should-retry=false" })))
    assert.equal(429, res.status)
    assert.equal(7, res.retry_after)
    assert.is_false(res.should_retry)
    res = assert(http.request(chat_spec({ ["x-mock-fault"] = "status=503;retry-after-ms=250" })))
    assert.equal(0.25, res.retry_after)
  end)

  it("refuses header values with CR or LF", function()
    assert.has_error(function()
      http.request(chat_spec({ ["x-evil"] = "a\r\nInjected: yes" }))
    end, "header contains CR, LF or NUL (refused to prevent header injection)")
    assert.equal(0, mock:stats().requests)
  end)

  it("keeps 200 requests in flight at once in one llm.run (peak concurrency 200) #tasks", function()
    local st
    llm.run(function()
      local tasks = {}
      for i = 1, 200 do
        tasks[i] = llm.spawn(function()
          return http.request(chat_spec({ ["x-mock-fault"] = "stall-before-headers" }))
        end)
      end
      st = wait_stats(function(s) return s.requests >= 200 end)
      for _, t in ipairs(tasks) do t:cancel() end
      local _, errs = llm.gather(V.unpack(tasks))
      for i = 1, 200 do assert.equal("cancelled", errs[i].kind) end
    end)
    assert.equal(200, st.requests)
    assert.equal(200, st.peak_active)
  end)

  it("step(0) returns at once while every stream is stalled #tasks", function()
    local streams = {}
    for i = 1, 20 do
      streams[i] = http.stream(chat_spec({ ["x-mock-fault"] = "stall-after-events=1" }, true))
    end
    llm.run(function() wait_stats(function(s) return s.requests >= 20 end) end)
    local before = loop:stats()
    for _ = 1, 500 do llm.step(0) end
    local after = loop:stats()
    assert.equal(before.blocking_waits, after.blocking_waits)   -- never waited
    assert.equal(before.waits + 500, after.waits)
    for _, s in ipairs(streams) do s:close() end
  end)

  it("a cancelled task frees its connection #tasks", function()
    local base = mock:stats().open_connections
    llm.run(function()
      local held = {}   -- the task, dropped before collecting: LuaJIT keeps a dead coroutine's
      held.t = llm.spawn(function()          -- stack (and the stream on it) while the task lives
        local s = http.stream(chat_spec({ ["x-mock-fault"] = "stall-after-events=1" }, true))
        assert(s:wait_headers())
        return s:next_event() and s:next_event()
      end)
      wait_stats(function(s) return s.active == 1 end)
      assert.equal(base + 1, mock:stats().open_connections)   -- a new one: the pool has none idle
      held.t:cancel()
      local _, err = llm.await(held.t)
      assert.equal("cancelled", err.kind)
      -- its connection is closed (an idle one from an earlier test may be gone too)
      local st = wait_stats(function(s) return s.open_connections <= base end)
      assert.is_true(st.open_connections <= base, "open " .. st.open_connections .. ", before " .. base)
      held.t = nil
      for _ = 1, 50 do                        -- the detached transfer object goes with its task,
                                              -- once the step that reports its end has run
        collectgarbage(); collectgarbage()
        if loop:stats().transfers == 0 then break end
        llm.sleep(0.02)
      end
      assert.equal(0, loop:stats().transfers)
    end)
  end)

  it("a stream dropped mid-flight is collected, detached and its connection closed #tasks", function()
    local base = mock:stats().open_connections
    do
      local s = http.stream(chat_spec({ ["x-mock-fault"] = "stall-after-events=2" }, true))
      assert(s:wait_headers())
      assert(s:next_event())
    end
    collectgarbage(); collectgarbage()
    assert.equal(0, loop:stats().transfers)
    llm.run(function()
      local st = wait_stats(function(s) return s.open_connections == base end)
      assert.equal(base, st.open_connections)
    end)
  end)

  it("1,000 sequential requests reuse one keep-alive connection", function()
    local own = llm.new()          -- its own loop, so its connection cache starts empty
    for _ = 1, 1000 do
      local res = assert(own.http.request(chat_spec()))
      assert.equal(200, res.status)
    end
    local st = mock:stats()
    local after = own.loop:stats()
    assert.equal(1000, st.requests)
    assert.equal(1, st.connections)               -- control queries are not counted
    assert.equal(1, after.new_connections)
    assert.equal(999, after.connections_reused)
  end)

  describe("timeouts", function()
    local function assert_timeout(err, which)
      assert.is_not_nil(err)
      assert.equal("timeout", err.kind)
      assert.equal(which, err.which)
    end

    it("total: a non-streaming attempt that takes too long", function()
      local res, err = http.request(chat_spec({ ["x-mock-fault"] = "stall-before-headers" }, false, { timeout = 0.2 }))
      assert.is_nil(res)
      assert_timeout(err, "total")
    end)

    it("headers: a stream whose headers do not arrive", function()
      local s = http.stream(chat_spec({ ["x-mock-fault"] = "stall-before-headers" }, true, { timeout = 0.2 }))
      local ok, err = s:wait_headers()
      assert.is_nil(ok)
      assert_timeout(err, "headers")
    end)

    it("first token: keep-alive comments do not count as content", function()
      local s = http.stream(chat_spec({ ["x-mock-fault"] = "pings=3" }, true, { first_token_timeout = 0.3 }))
      assert(s:wait_headers())
      local ev, err = s:next_event()
      assert.is_nil(ev)
      assert_timeout(err, "first_token")
    end)

    it("idle: only what the owner reports as content (t:content()) resets the idle clock", function()
      local s = http.stream({
        method = "POST", url = mock.url .. "/v1/messages",
        headers = { ["x-api-key"] = "k", ["anthropic-version"] = "2023-06-01",
                    ["x-mock-fault"] = "stall-after-events=3;pings=5", ["content-type"] = "application/json" },
        body = '{"model":"m","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}',
        framing = "sse", idle_timeout = 0.3,
      })
      assert(s:wait_headers())
      local names, err = {}
      while true do
        local ev, e = s:next_event()
        if not ev then err = e; break end
        names[#names + 1] = ev.name
        if ev.name ~= "ping" then s.t:content() end
      end
      assert.equal(5, #names - 3)   -- the pings arrived and did not count
      assert_timeout(err, "idle")
    end)

    it("connect: a server whose accept queue is full", function()
      local port, close = require("support.net").full_listener()
      local res, err = http.request({ url = "http://127.0.0.1:" .. port .. "/", connect_timeout = 0.3, timeout = 5 })
      close()
      assert.is_nil(res)
      assert_timeout(err, "connect")
    end)
  end)

  it("a connection refused is a connection error", function()
    local port = require("support.net").closed_port()
    local res, err = http.request({ url = "http://127.0.0.1:" .. port .. "/" })
    assert.is_nil(res)
    assert.equal("connection", err.kind)
    assert.is_true(err.retryable)
  end)

  -- The portable backend has no descriptor (llm.pollfd() is nil); host_loop_spec covers it.
  if llm.pollfd() then it("llm.pollfd() becomes readable when a timer or a transfer needs a step #tasks", function()
    local socket = require("socket")
    local fd = llm.pollfd()
    assert.is_true(V.math_type(fd) == "integer" and fd > 2)
    local pollable = { getfd = function() return fd end }
    local t = llm.spawn(function() llm.sleep(0.05); return "woke" end)
    llm.step(0)                                   -- starts the task; its timer is armed
    assert.is_false(t:done())
    local readable = socket.select({ pollable }, nil, 5)
    assert.equal(1, #readable)                    -- the host's own poll saw the timer
    for _ = 1, 10 do if t:done() then break end llm.step(0) end
    assert.equal("woke", llm.await(t))
    local res
    local r = llm.spawn(function() res = http.request(chat_spec({ ["x-mock-text"] = "polled" })) end)
    for _ = 1, 200 do                             -- a host loop: poll, then step(0)
      if r:done() then break end
      socket.select({ pollable }, nil, 1)
      llm.step(0)
    end
    assert.matches("polled", res.body)
  end) end

  it("one step reports a bounded amount of work and leaves the rest for the next step #tasks", function()
    local own = llm.new()
    local streams = {}
    for i = 1, 30 do
      streams[i] = own.http.stream(chat_spec({ ["x-mock-events"] = "3000" }, true))
    end
    local counts = {}
    own.run(function()
      local tasks = {}
      for i, s in ipairs(streams) do
        tasks[i] = own.spawn(function()
          assert(s:wait_headers())
          local n = 0
          while true do
            local ev, err = s:next_event()
            if not ev then assert.is_nil(err); break end
            n = n + 1
          end
          counts[i] = n
        end)
      end
      own.gather(V.unpack(tasks))
    end)
    for i = 1, 30 do assert.equal(counts[1], counts[i]) end   -- nothing lost or duplicated
    assert.is_true(counts[1] > 3000)
    local st = own.loop_stats()
    assert.is_true(st.deferred_steps > 0)                     -- 90,000 events did not fit in one step
  end)

  it("a consumer that stops reading pauses the transfer; the idle clock stops meanwhile", function()
    local s = http.stream(chat_spec({ ["x-mock-events"] = "20000" }, true, { idle_timeout = 0.2 }))
    assert(s:wait_headers())
    s.t:content()                          -- the idle clock runs from here
    for _ = 1, 200 do                      -- drive the loop without reading
      if s.paused then break end
      llm.step(0.01)
    end
    assert.is_true(s.paused)
    llm.sleep(0.6)                         -- three idle periods pass while paused
    assert.is_nil(s.done)                  -- neither finished nor timed out
    local n = 0
    while true do
      local ev, err = s:next_event()
      if not ev then assert.is_nil(err); break end
      n = n + 1
      s.t:content()
    end
    assert.is_true(n > 20000)              -- every delta plus the framing events
  end)

  it("an event over the size cap ends the stream with a protocol error", function()
    local s = http.stream(chat_spec({ ["x-mock-text"] = string.rep("x", 3000) }, true, { max_event_size = 1024 }))
    assert(s:wait_headers())
    local err
    repeat local ev, e = s:next_event(); err = e until not ev
    assert.equal("protocol", err.kind)
  end)
end)
