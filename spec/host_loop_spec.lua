-- The loop as a host sees it (API §11): a bounded step, a pollable descriptor that is
-- readable whenever a step has work, next_timeout, blocking = false, deadlines in the timer
-- heap and one reader per stream. Against the mock server; every assertion reads counters
-- (the loop's, the scheduler's, the server's), never the wall clock.
local mockmod = require("support.mock")
local socket = require("socket")
local llm = require("llm")

local KEY = "sk-test-host"
local CAP = 2     -- a host with nothing to wait for sleeps this long: more means it stalled
local mock

setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

local unique = 0
local function key()
  unique = unique + 1
  return "host" .. unique .. "-" .. os.time()
end

local function openai(L, headers, opts)
  local o = { model = "m", base_url = mock.url .. "/v1", api_key = KEY, headers = headers }
  for k, v in pairs(opts or {}) do o[k] = v end
  return L.client("openai", o)
end

local function pollable(L)
  local fd = L.pollfd()
  return fd and { getfd = function() return fd end }
end

-- True when the loop's descriptor is readable right now (no waiting).
local function readable_now(L)
  local r = socket.select({ pollable(L) }, nil, 0)
  return #r == 1
end

-- A host that steps only when the descriptor is readable, or, with `use_timeout`, also
-- when next_timeout() expires. On the portable backend (no descriptor) it waits for
-- next_timeout() capped at one 60 Hz frame. Returns the number of stalls (a wait that ran
-- to CAP while a task was unfinished) and of steps.
local function host(L, done, use_timeout)
  local p = pollable(L)
  local stalls, steps = 0, 0
  while not done() and steps < 20000 do
    local t = L.next_timeout()
    if p then
      local wait = CAP
      if use_timeout and t then wait = math.min(t, CAP) end
      local r = socket.select({ p }, nil, wait)
      if #r == 0 and wait >= CAP then stalls = stalls + 1; break end
    else
      socket.sleep(math.min(t or 1 / 60, 1 / 60))
    end
    L.step(0)
    steps = steps + 1
  end
  return stalls, steps
end

local function weather_tool(L)
  return L.tool{
    name = "get_weather", description = "Current weather for a city",
    parameters = { type = "object", properties = { city = { type = "string" } }, required = { "city" } },
    run = function(args)
      L.sleep(0.02)
      return { city = args.city, celsius = 21 }
    end,
  }
end

-- Each scenario runs in tasks of a fresh instance with blocking = false: nothing may block.
local SCENARIOS = {
  { "a three-call conversation", function(L)
      local conv = openai(L):conversation{ system = "terse" }
      local out = {}
      for i = 1, 3 do out[i] = assert(conv:send("turn " .. i)).text end
      return out
    end, function(out)
      assert.same({ "echo: turn 1", "echo: turn 2", "echo: turn 3" }, out)
      assert.equal(3, #mock:requests())
    end },
  { "a retried call (503, then 200)", function(L)
      local c = openai(L, { ["x-mock-sequence"] = "status=503;retry-after-ms=50|ok", ["x-mock-key"] = key() })
      return assert(c:chat("again")).text
    end, function(out)
      assert.equal("echo: again", out)
      assert.equal(2, #mock:requests())
    end },
  { "a sleep", function(L)
      L.sleep(0.05)
      return "slept"
    end, function(out) assert.equal("slept", out) end },
  { "a freshly spawned task", function(L)
      L.sleep(0.01)
      local child = L.spawn(function() return "child" end)
      return L.await(child)
    end, function(out) assert.equal("child", out) end },
  { "a tool loop", function(L)
      local c = openai(L, { ["x-mock-script"] = "two_cities", ["x-mock-key"] = key() }, { max_retries = 0 })
      local resp = assert(c:run_tools{ messages = { { role = "user", content = "Weather in Seoul and Busan?" } },
                                       tools = { weather_tool(L) } })
      return resp.text
    end, function(out)
      assert.is_string(out)
      assert.equal(2, #mock:requests())
    end },
}

describe("a host that steps only when llm.pollfd() is readable", function()
  for _, mode in ipairs({ { "the descriptor alone", false }, { "the descriptor or next_timeout()", true } }) do
    for _, sc in ipairs(SCENARIOS) do
      it("finishes " .. sc[1] .. " (waiting on " .. mode[1] .. ")", function()
        mock:reset()
        local L = llm.new()
        L.configure{ blocking = false }
        local out
        local t = L.spawn(function() out = sc[2](L) end)
        local stalls = host(L, function() return t:done() end, mode[2])
        assert.equal(0, stalls)
        assert.is_true(t:done())
        L.await(t)             -- re-raises a failure inside the scenario
        sc[3](out)
      end)
    end
  end
end)

describe("llm.pollfd() tells the truth", function()
  it("names its backend", function()
    local b = llm.backend()
    assert.is_true(b == "epoll" or b == "kqueue" or b == "poll")
    assert.equal(b == "poll", llm.pollfd() == nil)
  end)

  if llm.pollfd() then
    it("is readable at once for a task spawned between steps, and quiet once it ran", function()
      local L = llm.new()
      L.step(0)
      assert.is_false(readable_now(L))
      L.spawn(function() end)
      assert.is_true(readable_now(L))
      assert.equal(0, L.next_timeout())
      L.step(0)
      assert.is_false(readable_now(L))
      assert.is_nil(L.next_timeout())
    end)

    it("is readable at once when a waiting task is cancelled from the host", function()
      local L = llm.new()
      local t = L.spawn(function() return L.sleep(100) end)
      L.step(0)
      assert.is_false(readable_now(L))
      assert.is_true(L.next_timeout() > 50)
      t:cancel()
      assert.is_true(readable_now(L))
      L.step(0)
      assert.equal("cancelled", select(2, L.await(t)).kind)
    end)

    it("follows a timer armed from Lua inside a task: next_timeout and the descriptor agree", function()
      local L = llm.new()
      local t = L.spawn(function() L.sleep(0.05); return "woke" end)
      L.step(0)
      local nt = L.next_timeout()
      assert.is_true(nt > 0 and nt <= 0.05)
      assert.equal(1, #socket.select({ pollable(L) }, nil, CAP))   -- the timer's own wake-up
      L.step(0)
      assert.equal("woke", L.await(t))
    end)

    it("is readable for a request set up from host code, before any step", function()
      local L = llm.new()
      local s = L.http.stream({ method = "POST", url = mock.url .. "/v1/chat/completions",
                                body = '{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}',
                                headers = { ["content-type"] = "application/json" }, framing = "sse" })
      assert.equal(1, #socket.select({ pollable(L) }, nil, CAP))
      s:close()
    end)

    it("costs a blocking script no timer or wake-up calls until it is handed out, then shows a due start as a wake-up", function()
      local L = llm.new()
      local spec = { method = "POST", url = mock.url .. "/v1/chat/completions", framing = "sse",
                     body = '{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}',
                     headers = { ["content-type"] = "application/json" }, timeout = 30, idle_timeout = 30 }
      local s = L.http.stream(spec)                 -- blocking: the loop is stepped by the reads
      local n = 0
      while s:next_event() do n = n + 1 end
      s:close()
      assert.is_true(n > 0)
      local st = L.loop:stats()
      assert.equal(0, st.signals)                   -- nobody holds the descriptor: no eventfd write
      assert.equal(0, st.rearms)                    -- ... and no timerfd_settime

      assert.is_false(readable_now(L))              -- handed out from here on
      s = L.http.stream(spec)                       -- set up from host code: due at once
      assert.is_true(readable_now(L))
      st = L.loop:stats()
      assert.equal(1, st.signals)                   -- a wake-up ...
      assert.equal(0, st.rearms)                    -- ... not a timer armed for a time already past
      s:close()
    end)
  end

  it("leaves work a step could not finish visible: next_timeout() is 0 and the fd readable", function()
    local L = llm.new()
    L.configure{ step_budget = 0 }
    for _ = 1, 3 do L.spawn(function() end) end
    L.step(0)                                  -- one task per step
    assert.equal(0, L.next_timeout())
    if L.pollfd() then assert.is_true(readable_now(L)) end
    L.step(0); L.step(0)
    assert.is_nil(L.next_timeout())
    assert.equal(0, L.async.live_tasks())
  end)
end)

describe("a bounded step", function()
  it("5 streams x 3,000 events with a zero budget: work deferred across steps, every event in order", function()
    local L = llm.new()
    L.configure{ step_budget = 0 }             -- one unit of progress per step: deterministic
    local words = {}
    for i = 1, 3000 do words[i] = "w" .. i end
    local c = openai(L, { ["x-mock-events"] = "3000", ["x-mock-text"] = table.concat(words, " ") })
    local counts, bad = {}, {}
    local tasks = {}
    for i = 1, 5 do
      tasks[i] = L.spawn(function()
        local s = assert(c:stream("hi"))
        local n = 0
        for ev in s:events() do
          if ev.type == "text" then
            n = n + 1
            if ev.text ~= (n == 1 and "" or " ") .. "w" .. n then bad[i] = bad[i] or n end
          end
        end
        counts[i] = n
      end)
    end
    local function done()
      for i = 1, 5 do if not tasks[i]:done() then return false end end
      return true
    end
    local stalls = host(L, done, true)
    assert.equal(0, stalls)
    for i = 1, 5 do
      L.await(tasks[i])
      assert.equal(3000, counts[i])
      assert.is_nil(bad[i])                    -- in order, none lost or repeated
    end
    local st = L.loop_stats()
    assert.is_true(st.deferred_steps > 1000)   -- the work was spread over many steps
    assert.is_true(st.max_units <= 2)          -- a resumption and the one event it took
    assert.is_true(st.handed_out >= 15000)
  end)

  it("gets a transfer's queued events from the core in pieces: in order, the end after the last", function()
    local L = llm.new()
    local words = {}
    for i = 1, 1000 do words[i] = "w" .. i end
    local t = L.loop:transfer({ method = "POST", url = mock.url .. "/v1/chat/completions",
      body = '{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}',
      headers = { ["content-type"] = "application/json", ["x-mock-events"] = "1000",
                  ["x-mock-text"] = table.concat(words, " ") }, framing = "sse" })
    local recs, more = {}, nil
    local function take(max)
      local r
      r, more = L.loop:step(0.01, 1, max)
      for _, rec in ipairs(r) do
        if rec.id == t.id then recs[#recs + 1] = rec end
      end
    end
    -- No event handed out (max_events 0) until the whole reply waits in C: role, 1,000
    -- deltas, finish, [DONE].
    local guard = 0
    while t.pending < 1003 and guard < 100000 do take(0); guard = guard + 1 end
    assert.equal(1003, t.pending)
    for _, rec in ipairs(recs) do assert.not_equal("events", rec.type) end
    local before = #recs
    take(100)                                  -- 100 events: a full piece and the rest
    assert.is_true(more)
    assert.equal(903, t.pending)
    assert.same({ 64, 36 }, { recs[before + 1].n, recs[before + 2].n })
    while more do take() end
    assert.equal(0, t.pending)
    local datas, last = {}, nil
    for i, rec in ipairs(recs) do
      if rec.type == "events" then
        assert.is_true(rec.n <= 64)
        for j = 1, rec.n do datas[#datas + 1] = rec[j] end
      elseif rec.type == "done" then
        last = i
      end
    end
    assert.equal(#recs, last)                  -- the end comes after every event
    assert.equal(1003, #datas)
    for n = 1, 1000 do                         -- every delta once, in order
      local obj = llm.json.decode(datas[n + 1])
      assert.equal((n == 1 and "" or " ") .. "w" .. n, obj.choices[1].delta.content)
    end
    assert.equal("[DONE]", datas[1003])
    t:close()
  end)

  -- Four streams of 3,003 events (about 0.5 MiB each) that nobody takes, on a loop with the
  -- given queue limits; take(max) steps once, keeping what it reports.
  local function untaken_streams(read_mark, high_water)
    local L = llm.new()
    L.loop:queue_limits(read_mark, high_water)
    local words = {}
    for i = 1, 3000 do words[i] = "w" .. i end
    local ts = {}
    for i = 1, 4 do
      ts[i] = L.loop:transfer({ method = "POST", url = mock.url .. "/v1/chat/completions",
        body = '{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}',
        headers = { ["content-type"] = "application/json", ["x-mock-events"] = "3000",
                    ["x-mock-text"] = table.concat(words, " ") }, framing = "sse" })
    end
    local recs = {}
    local function take(max)
      for _, rec in ipairs((L.loop:step(0.01, 1, max))) do recs[#recs + 1] = rec end
    end
    return L, ts, recs, take
  end

  -- Take everything: every transfer reads on, all events arrive once, and the queues are
  -- empty (their buffers given back) at the end, never above `bound` on the way.
  local function take_all(L, ts, recs, take, bound)
    local done = 0
    for _, rec in ipairs(recs) do if rec.type == "done" then done = done + 1 end end
    local guard = 0
    while done < 4 and guard < 100000 do
      local before = #recs
      take()
      for j = before + 1, #recs do if recs[j].type == "done" then done = done + 1 end end
      guard = guard + 1
    end
    local counts = {}
    for _, rec in ipairs(recs) do
      if rec.type == "events" then counts[rec.id] = (counts[rec.id] or 0) + rec.n end
    end
    for _, t in ipairs(ts) do assert.equal(3003, counts[t.id]) end
    local st = L.loop:stats()
    assert.equal(0, st.queued_bytes)
    assert.is_true(st.queued_bytes_peak <= bound, "peak " .. st.queued_bytes_peak)
    for _, t in ipairs(ts) do t:close() end
  end

  it("stops reading sockets while the events waiting in C reach the read mark", function()
    local L, ts, recs, take = untaken_streams()
    local read_mark, high_water = L.loop:queue_limits()
    assert.equal(512 * 1024, read_mark)
    assert.equal(1024 * 1024, high_water)
    -- Steps that take no events (max_events 0): they pile up until a step leaves the sockets
    -- unread.
    local guard = 0
    while L.loop:stats().unread_steps == 0 and guard < 100000 do take(0); guard = guard + 1 end
    local st = L.loop:stats()
    assert.equal(1, st.unread_steps)
    assert.is_true(st.queued_bytes >= read_mark, "queued " .. st.queued_bytes)
    local pending = 0
    for _, t in ipairs(ts) do pending = pending + t.pending end
    assert.is_true(pending < 4 * 3003)               -- not the whole of the streams
    -- At the mark a step only reports: no socket is read (no socket action, no new events).
    local events = st.events
    take(0)
    st = L.loop:stats()
    assert.equal(2, st.unread_steps)
    assert.equal(events, st.events)
    -- Past the mark only by what one step's reads bring, which the high water bounds.
    take_all(L, ts, recs, take, high_water + 4 * 24 * 1024)
  end)

  it("stops a transfer mid-read at the high water, over all of a loop's transfers", function()
    -- With no read mark, the steps read on until the loop's queue reaches the high water;
    -- then a transfer with events of its own waiting stops reading (libcurl's pause) after
    -- at most one read of its own, and reads on once its queue is taken.
    local L, ts, recs, take = untaken_streams(2 ^ 40, 1024 * 1024)   -- a read mark never reached
    local function settled()            -- every transfer stopped reading or has it all
      for _, t in ipairs(ts) do
        if not (t.held or t.pending == 3003) then return false end
      end
      return true
    end
    local guard = 0
    while not settled() and guard < 100000 do take(0); guard = guard + 1 end
    assert.is_true(settled())
    local st = L.loop:stats()
    local held, pending = 0, 0
    for _, t in ipairs(ts) do
      if t.held then held = held + 1 end
      pending = pending + t.pending
    end
    assert.is_true(held >= 1)
    assert.is_true(st.holds >= held)
    assert.equal(0, st.unread_steps)
    assert.is_true(pending < 4 * 3003)
    -- 1 MiB, then at most one 16 KiB read per transfer framed into records (a few dozen
    -- bytes of record header per event of about 150 bytes)
    local bound = 1024 * 1024 + 4 * 24 * 1024
    assert.is_true(st.queued_bytes >= 1024 * 1024, "queued " .. st.queued_bytes)
    assert.is_true(st.queued_bytes <= bound, "queued " .. st.queued_bytes)
    take_all(L, ts, recs, take, bound)
  end)

  it("fills the caller's table with a step's records, when given one", function()
    local L = llm.new()
    local t = L.loop:transfer({ method = "POST", url = mock.url .. "/v1/chat/completions",
      body = '{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}',
      headers = { ["content-type"] = "application/json", ["x-mock-text"] = "a b" }, framing = "sse" })
    local out, kinds, guard = {}, {}, 0
    while kinds.done == nil and guard < 1000 do
      local recs = L.loop:step(0.05, 1, nil, out)
      assert.equal(out, recs)                                  -- the same table, not a new one
      for i = 1, #recs do
        kinds[recs[i].type] = (kinds[recs[i].type] or 0) + 1
        recs[i] = nil                                          -- emptied for the next step
      end
      guard = guard + 1
    end
    assert.equal(1, kinds.headers)
    assert.is_true(kinds.events >= 1)
    assert.equal(1, kinds.done)
    t:close()
  end)

  it("rejects queue limits that are not a positive number of bytes", function()
    local L = llm.new()
    assert.has_error(function() L.loop:queue_limits(0) end)
    assert.has_error(function() L.loop:queue_limits(nil, -1) end)
    assert.same({ 512 * 1024, 1024 * 1024 }, { L.loop:queue_limits() })
  end)

  -- A scheduler on a stand-in loop that hands out `n` records (type "x", n = 1 to n) at its
  -- first step, with `now` as the loop's clock and a step budget of `budget` seconds.
  local function stand_in(n, budget, now)
    local fake_loop = { now = now, wake = function() end, stats = function() return {} end }
    local sent = false
    function fake_loop.step()
      if sent then return {}, false end
      sent = true
      local recs = {}
      for i = 1, n do recs[i] = { type = "x", id = 1, n = i } end
      return recs, false
    end
    local A = require("llm.async")(fake_loop, require("llm.clock").fake(0))
    A.configure{ step_budget = budget }
    return A
  end

  it("stops before a unit of work that would overshoot the budget, not after it", function()
    -- The clock moves only when a record is handled (0.3 s each, budget 1 s): the fourth
    -- record of a step would end at 1.2 s, so a step takes three.
    local t = 0
    local A = stand_in(10, 1, function() return t end)
    local seen = {}
    -- watchers are held weakly (a dropped stream is collected): the spec keeps its own
    local watcher = { on_record = function(_, rec) t = t + 0.3; seen[#seen + 1] = rec.n end }
    A.watch({ id = 1 }, watcher)
    local ends = {}
    for _ = 1, 4 do
      local t0 = t
      A.step(0)
      ends[#ends + 1] = t - t0
    end
    assert.is_table(watcher)
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, seen)   -- in order, none lost
    for i = 1, 3 do assert.is_true(ends[i] <= 1, "step " .. i .. " took " .. ends[i]) end
    assert.near(0.9, ends[1], 1e-9)             -- three records, then the step stopped
  end)

  it("reads the clock once per several cheap units of work, still within the budget", function()
    -- 400 records of 1 ms each against a budget of 100 ms: a clock read per record would be
    -- 400 reads; the scheduler reads it again after a quarter of what fits in what is left
    -- (at most 4 units), so a step still ends before its budget does.
    local t, reads = 0, 0
    local A = stand_in(400, 0.1, function() reads = reads + 1; return t end)
    local seen = 0
    local watcher = { on_record = function() t = t + 0.001; seen = seen + 1 end }
    A.watch({ id = 1 }, watcher)
    local steps, longest = 0, 0
    while seen < 400 and steps < 100 do
      local t0 = t
      A.step(0)
      steps = steps + 1
      if t - t0 > longest then longest = t - t0 end
    end
    assert.is_table(watcher)
    assert.equal(400, seen)
    assert.is_true(longest <= 0.1 + 1e-9, "a step took " .. longest)
    assert.is_true(steps <= 6, steps .. " steps")                  -- about 100 records a step
    assert.is_true(reads < 400 / 2, reads .. " clock reads for 400 records")
  end)

  it("spreads the set-up of many requests over steps when the budget runs out", function()
    local L = llm.new()
    L.configure{ step_budget = 0 }
    local streams = {}
    L.spawn(function()
      for i = 1, 20 do
        streams[i] = L.http.stream({ url = mock.url .. "/v1/models", framing = "sse" })
      end
    end)
    L.step(0)
    assert.equal(1, L.loop:stats().transfers)   -- one set-up in the first step, the rest later
    for _ = 1, 40 do L.step(0) end
    assert.equal(20, L.loop:stats().transfers)
    for _, s in ipairs(streams) do s:close() end
  end)

  it("starts transfers (libcurl's connect and send) within the budget: one per step at budget 0", function()
    local L = llm.new()
    L.configure{ step_budget = 0 }
    local streams = {}
    for i = 1, 10 do                           -- set up from host code: nothing started yet
      streams[i] = L.http.stream({ method = "POST", url = mock.url .. "/v1/chat/completions",
        body = '{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}',
        headers = { ["content-type"] = "application/json" }, framing = "sse" })
    end
    assert.equal(0, L.loop:stats().deadline_checks)
    L.step(0)
    local st = L.loop:stats()
    assert.equal(1, st.deadline_checks)        -- one start examined and made
    assert.equal(1, st.deferred_starts)        -- nine left, due, for the next steps
    assert.equal(0, L.next_timeout())
    L.configure{ step_budget = 0.001 }
    L.run(function()
      for _, s in ipairs(streams) do assert(s:wait_headers()) end
    end)
    for _, s in ipairs(streams) do s:close() end
  end)

  it("rejects a negative budget", function()
    assert.has_error(function() llm.new().configure{ step_budget = -1 } end,
                     "step_budget must be a number of seconds >= 0")
  end)
end)

describe("deadlines live in the timer heap", function()
  it("a step with 2,000 waiting transfers examines none of them", function()
    local L = llm.new()
    local ts = {}
    for i = 1, 2000 do
      ts[i] = L.loop:transfer({ url = mock.url .. "/v1/models" })
      ts[i]:restart(1000)                      -- a retry far in the future: a deadline, no socket
    end
    local streams = {}
    for i = 1, 20 do                           -- and live streams that stall after one event
      streams[i] = L.http.stream({ method = "POST", url = mock.url .. "/v1/chat/completions",
        body = '{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}',
        headers = { ["content-type"] = "application/json", ["x-mock-fault"] = "stall-after-events=1" },
        framing = "sse", idle_timeout = 600, first_token_timeout = 600 })
    end
    L.run(function()
      for _, s in ipairs(streams) do assert(s:wait_headers()); assert(s:next_event()) end
    end)
    local before = L.loop:stats()
    assert.equal(2020, before.deadlines)
    for _ = 1, 200 do L.step(0) end
    local after = L.loop:stats()
    assert.equal(before.deadline_checks, after.deadline_checks)
    for _, t in ipairs(ts) do t:close() end
    for _, s in ipairs(streams) do s:close() end
    assert.equal(0, L.loop:stats().deadlines)
  end)

  it("an idle deadline earlier than the first-token one fires at its own time", function()
    local L = llm.new()
    local got, cap
    L.run(function()
      local s = L.http.stream({ method = "POST", url = mock.url .. "/v1/chat/completions",
        body = '{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}',
        headers = { ["content-type"] = "application/json", ["x-mock-fault"] = "stall-after-events=2" },
        framing = "sse", first_token_timeout = 300, idle_timeout = 0.05 })
      got, cap = L.timeout(20, function()      -- 20 s: far beyond the idle time, far below 300
        assert(s:wait_headers())
        while true do
          local ev, e = s:next_event()
          if not ev then return e end
          s.t:content()                        -- the owner says what is content (t:content())
        end
      end)
      s:close()
    end)
    assert.is_nil(cap)
    assert.equal("timeout", got.kind)
    assert.equal("idle", got.which)
  end)
end)

describe("blocking = false", function()
  local L
  before_each(function()
    L = llm.new()
    L.configure{ blocking = false }
  end)

  it("raises for calls outside a task that would wait, before anything is sent", function()
    local c = openai(L)
    assert.has_error(function() c:chat("x") end)
    assert.has_error(function() c:stream("x") end)
    assert.has_error(function() L.sleep(0.01) end)
    assert.has_error(function() c:request("GET", "/models") end)
    local ok, err = pcall(function() c:chat("x") end)
    assert.is_false(ok)
    assert.matches("would block outside a task", tostring(err))
    assert.equal(0, #mock:requests())
  end)

  it("still waits in llm.run and step(t > 0)", function()
    local c = openai(L)
    assert.equal("echo: fine", L.run(function() return assert(c:chat("fine")).text end))
    local t = L.spawn(function() L.sleep(0.01); return 1 end)
    for _ = 1, 100 do
      if t:done() then break end
      L.step(0.5)
    end
    assert.is_true(t:done())
  end)

  it("lets a stream's next() return what has arrived, and raises only when it would wait", function()
    local c = openai(L, { ["x-mock-events"] = "5", ["x-mock-delay-ms"] = "300" })
    local s
    L.run(function() s = assert(c:stream("x")) end)
    local got = 0
    local ok, err = pcall(function()
      while true do
        local ev = s:next()                    -- what was read ahead comes out without waiting
        if not ev then break end
        got = got + 1
      end
    end)
    assert.is_true(got >= 1)
    assert.is_false(ok)
    assert.matches("would block outside a task", tostring(err))
    s:close()
  end)
end)

describe("one reader per stream", function()
  local function slow_stream(L)
    return openai(L, { ["x-mock-events"] = "50", ["x-mock-delay-ms"] = "200" })
  end

  it("a second task reading while the first waits raises 'stream already has a reader'", function()
    local L = llm.new()
    local err
    L.run(function()
      local s = assert(slow_stream(L):stream("x"))
      local first = L.spawn(function() return s:final() end)
      L.sleep(0)
      local ok, e = pcall(function() return s:next() end)
      if not ok then err = e end
      s:close()
      L.await(first)
    end)
    assert.matches("stream already has a reader", tostring(err))
  end)

  it("close() from another task wakes the reader with the stream's end", function()
    local L = llm.new()
    local next_after, final_v, final_err
    L.run(function()
      local s = assert(slow_stream(L):stream("x"))
      local reader = L.spawn(function()
        while s:next() do end                  -- ends at nil once closed
        next_after = s:next()
        final_v, final_err = s:final()
      end)
      L.sleep(0)
      s:close()
      L.await(reader)
    end)
    assert.is_nil(next_after)
    assert.is_nil(final_v)
    assert.equal("cancelled", final_err.kind)
  end)

  it("close() from the host between steps wakes a waiting reader and shows on the fd", function()
    local L = llm.new()
    local s, got
    L.run(function() s = assert(slow_stream(L):stream("x")) end)
    local reader = L.spawn(function() local _, e = s:final(); got = e end)
    for _ = 1, 5 do L.step(0) end
    assert.is_false(reader:done())
    s:close()
    if L.pollfd() then assert.is_true(readable_now(L)) end
    for _ = 1, 5 do if reader:done() then break end L.step(0) end
    assert.is_true(reader:done())
    assert.equal("cancelled", got.kind)
  end)
end)
