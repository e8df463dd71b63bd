-- llm.limiter (API §13) on a fake clock against the mock server: queued calls are paced to
-- each budget (requests and tokens per minute, calls at once), go by priority, and the
-- limiter learns from OpenAI's and Anthropic's rate-limit headers. Times are the fake
-- clock's, read when each request leaves (the clock stands still while transfers run).
local support = require("support.mock")
local llm_mod = require("llm")
local clockmod = require("llm.clock")

local server, mock   -- the spec's server (counters) and its llm.mock object (push, client)
setup(function() server = support.start(); mock = server.server end)
teardown(function() if server then server:stop() end end)
before_each(function() mock:reset() end)

local EPOCH = 1800000000

-- An llm instance on a fake clock whose sends are recorded: { t, body } per request.
local function instance()
  local clock = clockmod.fake(0, EPOCH)
  local L = llm_mod.new{ clock = clock }
  local sent = {}
  local req, stream = L.http.request, L.http.stream
  L.http.request = function(spec, ...)
    sent[#sent + 1] = { t = clock:now(), body = spec.body }
    return req(spec, ...)
  end
  L.http.stream = function(spec, ...)
    sent[#sent + 1] = { t = clock:now(), body = spec.body }
    return stream(spec, ...)
  end
  return L, clock, sent
end

local function near(a, b) return math.abs(a - b) < 1e-6 end

local function rfc3339(epoch)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", epoch)
end

describe("llm.limiter header values", function()
  local lim = require("llm.limiter")
  it("reads Go durations", function()
    assert.equal(360, lim.parse_duration("6m0s"))
    assert.is_true(near(0.12, lim.parse_duration("120ms")))
    assert.is_true(near(3723.5, lim.parse_duration("1h2m3.5s")))
    assert.equal(0, lim.parse_duration("0s"))
    assert.is_true(near(17.143, lim.parse_duration("17.143s")))
    assert.is_true(near(2e-6, lim.parse_duration("2us")))
    assert.equal(20, lim.parse_duration("20"))
    assert.is_nil(lim.parse_duration("soon"))
    assert.is_nil(lim.parse_duration("5x"))
  end)
  it("reads RFC 3339 timestamps", function()
    assert.equal(0, lim.parse_rfc3339("1970-01-01T00:00:00Z"))
    assert.equal(EPOCH + 42, lim.parse_rfc3339(rfc3339(EPOCH + 42)))
    assert.equal(951782400, lim.parse_rfc3339("2000-02-29T00:00:00Z"))
    assert.is_true(near(3600.5, lim.parse_rfc3339("1970-01-01T02:00:00.5+01:00")))
    assert.is_nil(lim.parse_rfc3339("yesterday"))
  end)
end)

describe("llm.limiter", function()
  it("rejects unknown or bad budgets and foreign objects as a client option", function()
    local ok, err = pcall(llm_mod.limiter, { rpn = 10 })
    assert.is_false(ok)
    assert.matches("unknown option rpn %(did you mean 'rpm'%?%)", err)
    assert.matches("rpm must be a positive number", select(2, pcall(llm_mod.limiter, { rpm = -1 })))
    assert.matches("concurrency must be an integer", select(2, pcall(llm_mod.limiter, { concurrency = 1.5 })))
    ok, err = pcall(mock.client, mock, "openai", { limiter = { rpm = 5 } })
    assert.is_false(ok)
    assert.matches("limiter must be made by llm.limiter", err)
    local other = llm_mod.new{ clock = clockmod.fake(0) }
    ok = pcall(mock.client, mock, "openai", { limiter = other.limiter{ rpm = 5 } })
    assert.is_false(ok)
  end)

  it("accepts priority on a request, checks its type, and keeps it off the wire", function()
    local L = instance()
    local c = mock:client("openai", { llm = L, limiter = L.limiter{ concurrency = 2 } })
    assert(c:chat{ messages = { { role = "user", content = "hi" } }, priority = 3 })
    assert.is_nil(mock:requests()[1].json.priority)
    local ok, err = pcall(c.chat, c, { messages = { { role = "user", content = "hi" } }, priority = "high" })
    assert.is_false(ok)
    assert.matches("priority must be a number", err)
  end)

  it("spreads queued requests to the rpm budget: rpm / 60 a second, not a burst", function()
    local L, clock, sent = instance()
    local lim = L.limiter{ rpm = 60 }
    local c = mock:client("openai", { llm = L, limiter = lim, max_retries = 0 })
    L.run(function()
      local tasks = {}
      for i = 1, 10 do tasks[i] = L.spawn(function() return assert(c:chat("q" .. i)) end) end
      L.gather(tasks)
    end)
    assert.equal(10, #sent)
    assert.equal(10, #mock:requests())
    for i = 1, 10 do assert.is_true(near(i - 1, sent[i].t), "request " .. i .. " at " .. sent[i].t) end
    assert.is_true(near(9, clock:now()))
    local st = lim:stats()
    assert.equal(0, st.queued)
    assert.equal(0, st.in_flight)
    assert.is_true(near(45, st.waited))      -- 0 + 1 + ... + 9 seconds
  end)

  it("waits outside a task too (blocking on the clock)", function()
    local L, clock, sent = instance()
    local c = mock:client("anthropic", { llm = L, limiter = L.limiter{ rpm = 600 } })
    for i = 1, 4 do assert(c:chat("q" .. i)) end
    assert.equal(4, #sent)
    for i = 1, 4 do assert.is_true(near((i - 1) * 0.1, sent[i].t)) end
    assert.is_true(near(0.3, clock:now()))
  end)

  it("paces to the tpm budget with body size / 4 + max_tokens, corrected by the usage reported", function()
    local L, _, sent = instance()
    local lim = L.limiter{ tpm = 6000 }          -- 100 tokens a second, at most 10 in the bucket
    local c = mock:client("openai", { llm = L, limiter = lim, max_retries = 0 })
    for _ = 1, 3 do mock:push{ text = "ok", usage = { input_tokens = 10, output_tokens = 10 } } end
    L.run(function()
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = L.spawn(function() return assert(c:chat{ messages = { { role = "user", content = "q" } },
                                                            max_tokens = 200 }) end)
      end
      L.gather(tasks)
    end)
    local est = math.floor(#sent[1].body / 4) + 200
    assert.is_true(est > 200)
    -- each request waits for a full bucket (10 tokens) after the debt of the one before: the
    -- second pays for the first's estimate, the third only for the first's and second's usage
    -- (20 each) once they reported it: the clock stands still while transfers run, so the
    -- first's usage is known before the second leaves.
    assert.is_true(near(0, sent[1].t))
    assert.is_true(near(20 / 100, sent[2].t), "second at " .. sent[2].t)
    assert.is_true(near(40 / 100, sent[3].t), "third at " .. sent[3].t)
  end)

  it("without usage reported, the estimate stands", function()
    local L, _, sent = instance()
    local c = mock:client("openai", { llm = L, limiter = L.limiter{ tpm = 6000 }, max_retries = 0 })
    for _ = 1, 3 do mock:push{ status = 500 } end
    L.run(function()
      local tasks = {}
      for i = 1, 3 do tasks[i] = L.spawn(function() return c:chat("q") end) end
      L.gather(tasks)
    end)
    local est = math.floor(#sent[1].body / 4)
    assert.is_true(near(0, sent[1].t))
    assert.is_true(near(est / 100, sent[2].t), "second at " .. sent[2].t)
    assert.is_true(near(2 * est / 100, sent[3].t))
  end)

  -- Steps the loop from outside any task until cond() holds.
  local function step_until(L, cond)
    for _ = 1, 1000 do
      if cond() then return end
      L.step(0.01)
    end
    error("condition never held")
  end

  -- Opens a stream that stalls after its first content, so it holds its limiter slot until
  -- closed: a slot held for as long as the spec wants, whatever the machine's speed.
  local function held_stream(c)
    mock:push{ text = { "x", "y", "z" }, stall_after = 2 }
    return assert(c:stream("held"))
  end

  it("holds calls at the concurrency budget", function()
    local L = instance()
    local lim = L.limiter{ concurrency = 2 }
    local c = mock:client("openai", { llm = L, limiter = lim, max_retries = 0 })
    local s1, s2 = held_stream(c), held_stream(c)
    local tasks = {}
    for i = 1, 4 do tasks[i] = L.spawn(function() return assert(c:chat("q" .. i)) end) end
    step_until(L, function() return lim:stats().queued == 4 end)
    assert.equal(2, lim:stats().in_flight)
    assert.equal(2, #mock:requests())            -- only the two streams reached the server
    s1:close()
    step_until(L, function() return #mock:requests() == 3 end)
    assert.equal(2, lim:stats().in_flight)       -- one more went, no more
    s2:close()
    local results, errs = L.run(function() return L.gather(tasks) end)
    assert.same({}, errs)
    assert.equal(4, #results)
    assert.is_true(server:stats().peak_active <= 2)
    assert.equal(6, #mock:requests())
  end)

  it("runs higher priorities first, ties in order", function()
    local L = instance()
    local lim = L.limiter{ concurrency = 1 }
    local c = mock:client("openai", { llm = L, limiter = lim, max_retries = 0 })
    local s = held_stream(c)
    local tasks = {}
    for i, p in ipairs{ 0, 5, 1, 5, 10, -2 } do
      tasks[i] = L.spawn(function() return c:chat{ messages = { { role = "user", content = "p" .. i } },
                                                   priority = p } end)
    end
    step_until(L, function() return lim:stats().queued == 6 end)
    s:close()
    L.run(function() return L.gather(tasks) end)
    local order = {}
    for _, r in ipairs(mock:requests()) do order[#order + 1] = r.json.messages[1].content end
    assert.same({ "held", "p5", "p2", "p4", "p3", "p1", "p6" }, order)
  end)

  it("a cancelled waiter leaves the queue", function()
    local L = instance()
    local lim = L.limiter{ concurrency = 1 }
    local c = mock:client("openai", { llm = L, limiter = lim, max_retries = 0 })
    local s = held_stream(c)
    local t2 = L.spawn(function() return c:chat("two") end)
    local t3 = L.spawn(function() return c:chat("three") end)
    step_until(L, function() return lim:stats().queued == 2 end)
    t2:cancel()
    assert.equal(1, lim:stats().queued)
    s:close()
    local r2, e2
    L.run(function()
      r2, e2 = L.await(t2)
      assert(L.await(t3))
    end)
    assert.is_nil(r2)
    assert.equal("cancelled", e2.kind)
    assert.same({ "held", "three" }, { mock:requests()[1].json.messages[1].content,
                                       mock:requests()[2].json.messages[1].content })
    assert.equal(2, #mock:requests())
    local st = lim:stats()
    assert.equal(0, st.queued)
    assert.equal(0, st.in_flight)
  end)

  it("leaves no timer behind once nobody waits", function()
    local L, clock = instance()
    local lim = L.limiter{ rpm = 60 }
    local c = mock:client("openai", { llm = L, max_retries = 0, limiter = lim })
    local t1 = L.spawn(function() return c:chat("one") end)
    local t2 = L.spawn(function() return c:chat("two") end)
    step_until(L, function() return lim:stats().queued == 1 end)
    assert.equal(1, clock:next_at())            -- the second waits a second for the budget
    t2:cancel()
    L.run(function() assert(L.await(t1)) end)
    assert.is_nil(clock:next_at())
    assert.equal(1, #mock:requests())
  end)

  it("learns from OpenAI headers: remaining 0 holds every call until the reset (Go duration)", function()
    local L, clock, sent = instance()
    local lim = L.limiter{}                      -- no budget of its own
    local c = mock:client("openai", { llm = L, limiter = lim })
    mock:push{ text = "a", headers = { ["x-ratelimit-remaining-requests"] = "0",
                                       ["x-ratelimit-reset-requests"] = "6m0s",
                                       ["x-ratelimit-remaining-tokens"] = "1000",
                                       ["x-ratelimit-reset-tokens"] = "1ms" } }
    assert(c:chat("one"))
    assert(c:chat("two"))
    assert.is_true(near(360, sent[2].t))
    mock:push{ text = "b", headers = { ["x-ratelimit-remaining-requests"] = "10",
                                       ["x-ratelimit-remaining-tokens"] = "0",
                                       ["x-ratelimit-reset-tokens"] = "1h2m3.5s" } }
    assert(c:chat("three"))
    assert(c:chat("four"))
    assert.is_true(near(360 + 3723.5, sent[4].t))
    assert.is_true(near(360 + 3723.5, clock:now()))
    assert.is_true(near(360 + 3723.5, lim:stats().waited))
  end)

  it("learns from Anthropic headers: remaining 0 holds calls until the RFC 3339 reset", function()
    local L, _, sent = instance()
    local lim = L.limiter{ rpm = 6000 }
    local c = mock:client("anthropic", { llm = L, limiter = lim })
    mock:push{ text = "a", headers = { ["anthropic-ratelimit-requests-remaining"] = "0",
                                       ["anthropic-ratelimit-requests-reset"] = rfc3339(EPOCH + 42) } }
    mock:push{ text = "b", headers = { ["anthropic-ratelimit-requests-remaining"] = "50",
                                       ["anthropic-ratelimit-requests-reset"] = rfc3339(EPOCH + 43),
                                       ["anthropic-ratelimit-output-tokens-remaining"] = "0",
                                       ["anthropic-ratelimit-output-tokens-reset"] = rfc3339(EPOCH + 100) } }
    L.run(function()
      assert(c:chat("one"))
      assert(c:chat("two"))
      assert(c:chat("three"))
    end)
    assert.is_true(near(42, sent[2].t))
    assert.is_true(near(100, sent[3].t))
  end)

  it("lowers its bucket to what the server says is left, keeping a bucket's worth in reserve there", function()
    local L, _, sent = instance()
    local lim = L.limiter{ rpm = 6000 }          -- 100 a second, 10 at once
    local c = mock:client("openai", { llm = L, limiter = lim })
    mock:push{ text = "a", headers = { ["x-ratelimit-remaining-requests"] = "1",
                                       ["x-ratelimit-reset-requests"] = "10s" } }
    L.run(function()
      assert(c:chat("one"))
      local tasks = {}
      for i = 1, 3 do tasks[i] = L.spawn(function() return assert(c:chat("q" .. i)) end) end
      L.gather(tasks)
    end)
    -- one left, and 10 (a bucket) kept in reserve: the bucket is at -9, so the second waits
    -- for 10 requests' worth (0.1 s), the third and fourth follow at the budget's rate
    assert.is_true(near(0.1, sent[2].t), "second at " .. sent[2].t)
    assert.is_true(near(0.11, sent[3].t))
    assert.is_true(near(0.12, sent[4].t))
  end)

  it("a 429 that slips through goes to the retry policy, and holds the queue for retry-after", function()
    local L, _, sent = instance()
    local lim = L.limiter{ rpm = 6000 }
    local c = mock:client("openai", { llm = L, limiter = lim, max_retries = 2 })
    mock:push{ status = 429, headers = { ["retry-after"] = "3" } }
    local r = assert(c:chat("one"))
    assert.equal("ok", r.finish_reason == "stop" and "ok" or r.finish_reason)
    assert.equal(2, #sent)
    assert.is_true(sent[2].t >= 3 - 1e-9)
    assert(c:chat("two"))
    assert.equal(3, #sent)
  end)

  it("a stream holds its slot until it ends, is closed, or is collected", function()
    local L = instance()
    local lim = L.limiter{ concurrency = 1 }
    local c = mock:client("openai", { llm = L, limiter = lim, max_retries = 0 })
    -- ends: read to the end, the slot is back
    local s = assert(c:stream("a"))
    assert(s:final())
    assert.equal(0, lim:stats().in_flight)
    -- closed
    mock:push{ text = { "x", "y", "z" }, stall_after = 2 }
    s = assert(c:stream("b"))
    assert.equal(1, lim:stats().in_flight)
    local t = L.spawn(function() return c:chat("c") end)
    step_until(L, function() return lim:stats().queued == 1 end)
    s:close()
    local second = L.run(function() return L.await(t) end)
    assert.equal("echo: c", second.text)
    assert.equal(0, lim:stats().in_flight)
    -- collected without being closed
    mock:push{ text = { "x", "y", "z" }, stall_after = 2 }
    local function open_and_drop()
      local dropped = assert(c:stream("d"))
      return dropped and lim:stats().in_flight
    end
    assert.equal(1, open_and_drop())
    collectgarbage()
    collectgarbage()
    assert(c:chat("e"))
    assert.equal(0, lim:stats().in_flight)
  end)

  it("is shared between clients of different providers", function()
    local L, _, sent = instance()
    local lim = L.limiter{ rpm = 120 }
    local a = mock:client("openai", { llm = L, limiter = lim })
    local b = mock:client("anthropic", { llm = L, limiter = lim })
    L.run(function()
      local tasks = {}
      for i = 1, 6 do
        local cl = i % 2 == 0 and a or b
        tasks[i] = L.spawn(function() return assert(cl:chat("q" .. i)) end)
      end
      L.gather(tasks)
    end)
    for i = 1, 6 do assert.is_true(near((i - 1) * 0.5, sent[i].t)) end
  end)
end)


describe("the mock's rate limits", function()
  local lim = require("llm.limiter")

  it("OpenAI routes: honest x-ratelimit-* headers, then a 429 with retry-after, counted", function()
    mock:limits{ rpm = 2, burst = 2 }
    local c = mock:client("openai", { max_retries = 0 })
    local r1 = assert(c:chat("one"))
    assert.equal("2", r1.headers["x-ratelimit-limit-requests"])
    assert.equal("1", r1.headers["x-ratelimit-remaining-requests"])
    local reset = lim.parse_duration(r1.headers["x-ratelimit-reset-requests"])
    assert.is_true(reset > 25 and reset <= 30, r1.headers["x-ratelimit-reset-requests"])
    local r2 = assert(c:chat("two"))
    assert.equal("0", r2.headers["x-ratelimit-remaining-requests"])
    local r3, err = c:chat("three")
    assert.is_nil(r3)
    assert.equal("rate_limit", err.kind)
    assert.equal(429, err.status)
    assert.is_true(err.retry_after > 25 and err.retry_after <= 30)
    assert.equal(1, mock:stats().rate_limited)
    assert.equal(3, #mock:requests())
    mock:reset()                                   -- limits off again
    assert(c:chat("four"))
    assert.equal(0, mock:stats().rate_limited)
  end)

  it("Anthropic route: anthropic-ratelimit-* headers with RFC 3339 resets; tokens cost body / 4 + max_tokens", function()
    mock:limits{ tpm = 1000 }
    local c = mock:client("anthropic", { max_retries = 0 })
    local r1 = assert(c:chat{ messages = { { role = "user", content = "hi" } }, max_tokens = 500 })
    local body = mock:requests()[1].body
    local left = 1000 - (math.floor(#body / 4) + 500)
    assert.equal(tostring(left), r1.headers["anthropic-ratelimit-tokens-remaining"])
    assert.equal("1000", r1.headers["anthropic-ratelimit-tokens-limit"])
    local at = lim.parse_rfc3339(r1.headers["anthropic-ratelimit-tokens-reset"])
    assert.is_true(at > os.time() and at <= os.time() + 61)
    local _, err = c:chat{ messages = { { role = "user", content = "hi" } }, max_tokens = 500 }
    assert.equal("rate_limit", err.kind)
    assert.is_true(err.retry_after > 0)
    assert.equal(1, mock:stats().rate_limited)
  end)

  it("limits per API key, or globally", function()
    mock:limits{ rpm = 1, burst = 1 }
    local a = mock:client("openai", { max_retries = 0, api_key = "sk-a" })
    local b = mock:client("openai", { max_retries = 0, api_key = "sk-b" })
    assert(a:chat("1"))
    assert(b:chat("2"))
    assert.is_nil(a:chat("3"))
    mock:reset()
    mock:limits{ rpm = 1, burst = 1, per = "global" }
    assert(a:chat("1"))
    assert.is_nil(b:chat("2"))
    assert.equal(1, mock:stats().rate_limited)
  end)

  it("a limiter with no budget of its own, on the real clock, paces to the mock's headers: no 429", function()
    mock:limits{ rpm = 240, burst = 1 }             -- one request every 0.25 s
    local L = llm_mod.new()
    local c = mock:client("openai", { llm = L, limiter = L.limiter{}, max_retries = 0 })
    for i = 1, 4 do assert(c:chat("q" .. i)) end
    assert.equal(0, mock:stats().rate_limited)
    assert.equal(4, #mock:requests())
  end)
end)
