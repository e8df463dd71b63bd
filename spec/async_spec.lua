-- The task scheduler (API §6) on a fake clock: no wall-clock assertions anywhere.
local llm_mod = require("llm")
local clockmod = require("llm.clock")
local V = require("support.version")

local function fresh()
  local clock = clockmod.fake(1000)
  return llm_mod.new{ clock = clock }, clock
end

describe("tasks", function()
  it("run returns the function's values and re-raises its error", function()
    local llm = fresh()
    assert.same({ 1, 2, 3 }, { llm.run(function(a, b) return a, b, 3 end, 1, 2) })
    local ok, err = pcall(llm.run, function() error({ code = 7 }) end)
    assert.is_false(ok)
    assert.equal(7, err.code)
  end)

  it("spawn starts the task at the next step, not at once", function()
    local llm = fresh()
    local started = false
    local t = llm.spawn(function() started = true end)
    assert.is_false(started)
    llm.step(0)
    assert.is_true(started)
    assert.is_true(t:done())
  end)

  it("sleeping tasks overlap: virtual time is the longest sleep, not the sum", function()
    local llm, clock = fresh()
    local order = {}
    llm.run(function()
      local ts = {}
      for i, d in ipairs({ 3, 1, 2 }) do
        ts[i] = llm.spawn(function() llm.sleep(d); order[#order + 1] = d; return d * 10 end)
      end
      local res, errs = llm.gather(V.unpack(ts))
      assert.same({ 30, 10, 20 }, res)
      assert.same({}, errs)
    end)
    assert.same({ 1, 2, 3 }, order)
    assert.equal(1003, clock:now())
  end)

  it("await returns values, re-raises errors and can be repeated", function()
    local llm = fresh()
    llm.run(function()
      local a = llm.spawn(function() llm.sleep(1); return "x", "y" end)
      assert.same({ "x", "y" }, { llm.await(a) })
      assert.same({ "x", "y" }, { llm.await(a) })
      local b = llm.spawn(function() error("boom", 0) end)
      local ok, err = pcall(llm.await, b)
      assert.is_false(ok)
      assert.equal("boom", err)
    end)
  end)

  it("gather reports raised errors and nil, err returns per task; one failure stops no other", function()
    local llm = fresh()
    llm.run(function()
      local res, errs = llm.gather(
        llm.spawn(function() llm.sleep(1); return 1 end),
        llm.spawn(function() error("raised", 0) end),
        llm.spawn(function() return nil, "returned" end),
        llm.spawn(function() llm.sleep(2); return 4 end))
      assert.equal(1, res[1]); assert.equal(4, res[4])
      assert.equal("raised", errs[2]); assert.equal("returned", errs[3])
      assert.is_nil(errs[1]); assert.is_nil(errs[4])
    end)
  end)

  it("map keeps order and never runs more than `concurrency` at once", function()
    local llm, clock = fresh()
    local running, peak = 0, 0
    local items = {}
    for i = 1, 20 do items[i] = i end
    local res, errs = llm.run(function()
      return llm.map(items, function(x)
        running = running + 1
        peak = math.max(peak, running)
        llm.sleep(1)
        running = running - 1
        return x * x
      end, { concurrency = 4 })
    end)
    for i = 1, 20 do assert.equal(i * i, res[i]) end
    assert.same({}, errs)
    assert.equal(4, peak)
    assert.equal(1005, clock:now())   -- 20 items, 4 at a time, 1 s each
  end)

  it("timeout gives kind timeout and cancels the work; a fast function's values pass through", function()
    local llm, clock = fresh()
    llm.run(function()
      local finished = false
      local v, e = llm.timeout(2, function()
        if llm.sleep(10) then finished = true end   -- a cancelled wait returns nil, err
        return 1
      end)
      assert.is_nil(v)
      assert.equal("timeout", e.kind)
      assert.is_true(llm.is_error(e))
      assert.equal(1002, clock:now())
      llm.sleep(20)
      assert.is_false(finished)
      assert.same({ 5, 6 }, { llm.timeout(2, function() llm.sleep(1); return 5, 6 end) })
    end)
  end)

  it("timeout works outside any task too (blocking)", function()
    local llm = fresh()
    local v, e = llm.timeout(1, function() llm.sleep(5) end)
    assert.is_nil(v)
    assert.equal("timeout", e.kind)
  end)

  it("a cancelled task's pending wait returns nil, cancelled and awaiting it gives that error", function()
    local llm = fresh()
    llm.run(function()
      local seen
      local t = llm.spawn(function()
        local ok, err = llm.sleep(100)
        seen = { ok, err }
        local _, err2 = llm.sleep(1)   -- later waits fail at once so the task unwinds
        seen[3] = err2
        return "unwound"
      end)
      llm.sleep(1)
      t:cancel()
      local v, err = llm.await(t)
      assert.is_nil(v)
      assert.equal("cancelled", err.kind)
      assert.is_nil(seen[1])
      assert.equal("cancelled", seen[2].kind)
      assert.equal("cancelled", seen[3].kind)
    end)
  end)

  it("a task cancelled before it starts never runs", function()
    local llm = fresh()
    local ran = false
    local t = llm.spawn(function() ran = true end)
    t:cancel()
    llm.step(0)
    assert.is_false(ran)
    assert.equal("cancelled", select(2, llm.await(t)).kind)
  end)

  it("run cancels the tasks it spawned that are still alive", function()
    local llm = fresh()
    local leftover
    llm.run(function()
      leftover = llm.spawn(function() llm.sleep(1000) end)
      llm.sleep(1)
    end)
    assert.is_true(leftover:done())
    assert.equal("cancelled", select(2, llm.await(leftover)).kind)
  end)

  it("run inside a task raises; step inside a task raises", function()
    local llm = fresh()
    llm.run(function()
      assert.has_error(function() llm.run(function() end) end, "llm.run cannot be called inside a task")
      assert.has_error(function() llm.step(0) end, "llm.step cannot be called from inside a task")
    end)
  end)

  it("a call from a plain coroutine nested in a task says to wrap it in llm.spawn", function()
    local llm = fresh()
    llm.run(function()
      local co = coroutine.wrap(function() return pcall(llm.sleep, 1) end)
      local ok, err = co()
      assert.is_false(ok)
      assert.matches("wrap it in llm.spawn", err)
    end)
  end)

  it("the same call blocks outside a task and yields inside one", function()
    local llm, clock = fresh()
    assert.is_true(llm.sleep(3))            -- blocking: drives the loop itself
    assert.equal(1003, clock:now())
    local t = llm.spawn(function() return llm.sleep(2) end)
    assert.is_true(llm.await(t))            -- awaiting from outside blocks too
    assert.equal(1005, clock:now())
  end)

  it("step returns the number of live tasks", function()
    local llm = fresh()
    llm.spawn(function() llm.sleep(1) end)
    llm.spawn(function() llm.sleep(2) end)
    assert.equal(2, llm.step(0))
    while llm.step(0.1) > 0 do end
    assert.equal(0, llm.step(0))
  end)

  it("an error in a task nobody awaits is printed once with its traceback", function()
    local llm = fresh()
    local written = {}
    local real = io.stderr
    io.stderr = { write = function(_, ...) for _, s in ipairs({ ... }) do written[#written + 1] = s end end }
    local ok = pcall(function()
      llm.spawn(function() error("nobody listens") end)
      for _ = 1, 3 do llm.step(0) end
      collectgarbage(); collectgarbage()
    end)
    io.stderr = real
    assert.is_true(ok)
    local text = table.concat(written)
    assert.matches("nobody listens", text)
    assert.matches("stack traceback", text)
    local _, count = text:gsub("nobody listens", "")
    assert.equal(1, count)
  end)
end)
