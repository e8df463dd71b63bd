--- Coroutine tasks on the core's event loop.
-- Waiting is a Lua yield of a private sentinel plus a future; C never yields.
-- A wait inside a task yields the task; outside any task it drives the loop itself, so
-- the same call blocks in a script and yields in a game loop that calls `step(0)`.
--
-- A step is bounded by one budget (`step_budget` seconds): it hands out the loop's
-- records and resumes ready tasks, checking the budget between records, between resumptions
-- and between events a task takes from a stream (M.checkpoint), and leaves the rest, in
-- order, for the next step. Whatever is left, or made ready between steps, signals the
-- loop's descriptor (loop:wake), so a host that steps only when it is readable never stalls.
-- @module llm.async
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local errors = require("llm.errors")
local queue = require("llm.queue")
local compat = require("llm.compat")

local pack = compat.pack
local unpack = compat.unpack

local SLICE = 0.1    -- a blocking wait returns to Lua this often, so Ctrl-C is honoured

return function(loop, clock)
  local M = {}
  local WAIT = setmetatable({}, { __name = "llm.async.WAIT" })

  local ready = queue.new() -- tasks to resume, in order ...
  local ready_values = queue.new()   -- ... and the packed values each resumes with
  local NOTHING = pack()    -- shared, never modified: a resumption with no values
  local TRUE = pack(true)   -- shared, never modified: a future resolved with `true`
  local inbox = queue.new() -- the loop's records not yet handed out (a step ran out of budget)
  local budget = 0.001      -- seconds of work per step; 0: one unit of progress per step
  local blocking = true     -- false: a wait outside any task raises
  local step_start, units = 0, 0   -- the current step's start and progress so far
  local stats = { steps = 0, deferred_steps = 0, resumes = 0, records = 0, handed_out = 0,
                  max_units = 0 }
  local CHECKPOINT = setmetatable({}, { __name = "llm.async.CHECKPOINT" })
  local live = {}           -- every task not yet finished (strong: waiting tasks stay alive)
  local nlive = 0
  local current = nil       -- the task being resumed
  local stepping = false
  -- Objects with pending transfers, keyed by transfer id. Weak: a stream the user drops is
  -- collected and its transfer's __gc detaches it (DESIGN "Lifetimes").
  local watchers = setmetatable({}, { __mode = "v" })
  local nwatch = 0
  M.clock = clock
  M.loop = loop

  -- Queue a task to resume; outside a step the loop's descriptor must show the new work.
  local function make_ready(task, values)
    ready:push(task)
    ready_values:push(values)
    if not stepping then loop:wake() end
  end

  -- The step's budget is spent, or would be by another unit of work as long as the last
  -- one (so a step stops before it overshoots, not after); a step always makes some progress.
  -- The clock is read again only after the units that fit in a quarter of what is left (at
  -- most CHECK_SKIP): a stream event costs a few microseconds, and a clock read per unit was
  -- a fifth of the scheduler's instructions with 1,000 streams.
  -- The hot loops below test `units < check_at` themselves before calling, and a queue's
  -- first and last instead of len(): per record, calls cost as much as the work.
  local now = loop.now   -- looked up once: the scheduler reads the clock in every step
  local CHECK_SKIP = 4
  local last_check, last_units, unit_cost = 0, 0, 0   -- at the previous check: elapsed, units
  local check_at = 0                                  -- units done before the next clock read
  local function over()
    if units < check_at or units == 0 then return false end
    if budget <= 0 then return true end
    local elapsed = now(loop) - step_start
    if units ~= last_units then   -- the cost of the units done since then, each
      unit_cost = (elapsed - last_check) / (units - last_units)
      last_check, last_units = elapsed, units
    end
    local left = budget - elapsed - unit_cost
    if left <= 0 then return true end
    if unit_cost > 0 then
      local n = left * 0.25 / unit_cost
      check_at = units + (n < CHECK_SKIP and n or CHECK_SKIP)
    end
    return false
  end

  ---------------------------------------------------------------------------------------
  -- Futures: one-shot values that tasks (or a blocking caller) wait for.
  local Future = { __name = "llm.Future" }
  Future.__index = Future

  function M.future()
    -- waiter: the first task waiting; waiters: a list of the others, made by the second
    return setmetatable({ done = false }, Future)
  end

  --- Settle the future with values and wake its waiters. A second resolve is ignored.
  ---@private
  ---@param ... any the values
  function Future:resolve(...)
    if self.done then return end
    self.done = true
    if select("#", ...) == 1 and ... == true then self.values = TRUE else self.values = pack(...) end
    local first, waiters = self.waiter, self.waiters
    if first == nil then return end
    self.waiter, self.waiters = nil, nil
    if first.waiting == self then
      first.waiting, first.on_cancel = nil, nil
      make_ready(first, self.values)
    end
    if waiters == nil then return end
    for _, task in ipairs(waiters) do
      if task.waiting == self then
        task.waiting, task.on_cancel = nil, nil
        make_ready(task, self.values)
      end
    end
  end

  --- Make a settled future pending again, for its owner's next wait (a stream waits once
  -- per batch of events: one future for all of them). Only once nobody waits on it.
  ---@private
  function Future:rearm()
    self.done, self.values = false, nil
  end

  local function cancelled_error()
    return errors.new{ kind = "cancelled", message = "cancelled", retryable = false }
  end

  ---------------------------------------------------------------------------------------
  -- Tasks.
  -- @section tasks

  -- A coroutine task (`llm.spawn`).
  ---@class llm.Task
  ---@field status "ready"|"running"|"waiting"|"done"
  local Task = { __name = "llm.Task" }
  Task.__index = Task

  local function report_unobserved(task)
    if task.failed and not task.observed and not task.reported then
      task.reported = true
      compat.warn("llm: error in a task nobody awaited: ", task.traceback or tostring(task.err), "\n")
    end
  end
  Task.__gc = report_unobserved

  local function finish(task, ok, values)
    task.status = "done"
    if live[task] then live[task] = nil; nlive = nlive - 1 end
    if ok then task.values = values
    else task.failed = true; task.err = values end
    task.done_future:resolve()
  end

  local after_resume   -- below
  local function resume(task, values)
    if task.status == "done" then return end
    if task.cancelled and not task.started then   -- cancelled before it ever ran
      finish(task, true, pack())
      return
    end
    task.started = true
    local prev = current
    current = task
    task.status = "running"
    task.step_units = 0
    after_resume(task, prev, coroutine.resume(task.co, unpack(values, 1, values.n)))
  end

  -- What a resumption came back with: an error, the task's end, or a wait (no table is
  -- built for the common case, a wait).
  after_resume = function(task, prev, ok, ...)
    current = prev
    local what, fut, on_cancel = ...
    if not ok then
      task.traceback = compat.traceback(task.co, tostring(what))
      finish(task, false, what)
      if task.done_future.waiter == nil and not task.observed then report_unobserved(task) end
    elseif coroutine.status(task.co) == "dead" then
      finish(task, true, pack(...))
    elseif what == WAIT and fut == CHECKPOINT then   -- out of budget: next step
      task.status = "ready"
      ready:push(task)
      ready_values:push(NOTHING)
    elseif what == WAIT then
      task.status = "waiting"
      task.waiting = fut
      task.on_cancel = on_cancel
      if fut.waiter == nil then fut.waiter = task
      else
        local w = fut.waiters
        if w == nil then fut.waiters = { task } else w[#w + 1] = task end
      end
    else
      task.traceback = "a task yielded a value that is not an llm wait (use llm.spawn for nested coroutines)"
      finish(task, false, task.traceback)
    end
  end

  -- Resume ready tasks, oldest first, until the budget is spent.
  local function run_ready()
    while ready.first <= ready.last and (units < check_at or not over()) do
      local task, values = ready:pop(), ready_values:pop()
      units = units + 1
      stats.resumes = stats.resumes + 1
      resume(task, values)
    end
  end

  --- Inside a task: one unit of work (an event handed out, a request set up). When the
  -- step's budget is spent and this resumption has already done a unit, the task yields
  -- to the next step, so a task reading a fast stream cannot hold a frame.
  ---@private
  function M.checkpoint()
    local task = current
    if task == nil then return end
    if task.step_units > 0 and units >= check_at and over() then
      coroutine.yield(WAIT, CHECKPOINT)
    end
    task.step_units = task.step_units + 1
    units = units + 1
    stats.handed_out = stats.handed_out + 1
  end

  --- Start fn(...) as a task at the next step.
  ---@param fn function the task's body
  ---@param ... any its arguments
  ---@return llm.Task
  function M.spawn(fn, ...)
    if type(fn) ~= "function" then error("llm.spawn expects a function", 2) end
    if not compat.tasks then error(compat.NO_TASKS, 2) end
    local task = setmetatable({ co = coroutine.create(fn), status = "ready",
                                done_future = M.future(), parent = current }, Task)
    live[task] = true
    nlive = nlive + 1
    make_ready(task, pack(...))
    return task
  end

  --- Whether the task has finished.
  ---@return boolean
  function Task:done() return self.status == "done" end

  --- Cancel the task: its pending wait returns nil, err (kind "cancelled") and aborts its
  -- in-flight transfer; later waits fail at once so it unwinds. Awaiting it gives that error.
  function Task:cancel()
    if self.status == "done" or self.cancelled then return end
    self.cancelled = true
    local fut, on_cancel = self.waiting, self.on_cancel
    if fut then
      self.waiting, self.on_cancel = nil, nil
      if on_cancel then on_cancel() end
      make_ready(self, pack(nil, cancelled_error()))
    end
  end

  local function outcome(task)
    task.observed = true
    if task.cancelled then return nil, cancelled_error() end
    if task.failed then error(task.err, 0) end
    return unpack(task.values, 1, task.values.n)
  end

  ---------------------------------------------------------------------------------------
  -- Waiting.
  -- @section waiting

  --- Wait for a future. Inside a task: yields. Outside: drives the loop until it settles.
  -- `on_cancel` runs if the waiting task is cancelled meanwhile (abort the operation).
  ---@private
  ---@param fut table the future
  ---@param on_cancel? function aborts the operation
  ---@return any ... the future's values, or nil and an llm.Error
  function M.wait(fut, on_cancel)
    local co = coroutine.running()
    if current ~= nil then
      if co ~= current.co then
        error("an llm call in a plain coroutine inside a task cannot wait: wrap it in llm.spawn", 3)
      end
      if current.cancelled then
        if on_cancel then on_cancel() end
        return nil, cancelled_error()
      end
      if fut.done then return unpack(fut.values, 1, fut.values.n) end
      return coroutine.yield(WAIT, fut, on_cancel)
    end
    if fut.done then return unpack(fut.values, 1, fut.values.n) end
    M.check_blocking("this call", 3)
    while not fut.done do M.step(SLICE) end
    return unpack(fut.values, 1, fut.values.n)
  end

  --- Raise when a call outside any task would wait and `blocking = false` (a frame must
  -- never block). `what` names the call.
  ---@private
  function M.check_blocking(what, level)
    if not blocking and current == nil then
      error(what .. " would block outside a task (llm.configure{ blocking = false }): " ..
            "run it inside llm.spawn", (level or 2) + 1)
    end
  end

  --- True when running inside a task (a wait yields rather than blocks).
  ---@private
  ---@return boolean
  function M.in_task() return current ~= nil end
  function M.current() return current end

  --- The values of a task (a raised error re-raises; a cancelled task gives nil, err).
  ---@param task llm.Task
  ---@return any ... the task's values, or nil and an llm.Error (kind "cancelled")
  function M.await(task)
    if getmetatable(task) ~= Task then error("llm.await expects a task", 2) end
    if task.status ~= "done" then
      task.observed = true
      local _, err = M.wait(task.done_future)
      if err and task.status ~= "done" then return nil, err end   -- the awaiting task was cancelled
    end
    return outcome(task)
  end

  local function as_task(x)
    if getmetatable(x) == Task then return x end
    if type(x) == "function" then return M.spawn(x) end
    error("expected a task or a function", 3)
  end

  local function settle(task)
    -- results[i] = first value, errors[i] = raised error or the err of a nil, err return
    task.observed = true
    if task.cancelled then return nil, cancelled_error() end
    if task.failed then return nil, task.err end
    local v = task.values
    if v[1] == nil and v.n >= 2 and v[2] ~= nil then return nil, v[2] end
    return v[1], nil
  end

  --- Wait for every task; returns results, errors (both tables indexed like the arguments).
  ---@param ... llm.Task|function tasks or functions, or one list of them
  ---@return any[] results results[i] is task i's first value
  ---@return table errors errors[i] is task i's error (raised, or the err of nil, err)
  function M.gather(...)
    local tasks = pack(...)
    if tasks.n == 1 and type(tasks[1]) == "table" and getmetatable(tasks[1]) ~= Task then
      tasks = tasks[1]
      tasks.n = tasks.n or #tasks
    end
    for i = 1, tasks.n do
      tasks[i] = as_task(tasks[i])
      tasks[i].observed = true
    end
    local results, errs = {}, {}
    for i = 1, tasks.n do
      local task = tasks[i]
      task.observed = true
      if task.status ~= "done" then
        local _, err = M.wait(task.done_future)
        if err and task.status ~= "done" then   -- the gathering task itself was cancelled
          for j = i, tasks.n do tasks[j]:cancel() end
          return results, errs, err
        end
      end
      results[i], errs[i] = settle(task)
    end
    return results, errs
  end

  --- fn(item, i) for each item with at most `concurrency` tasks at once; results in order.
  ---@param items any[]
  ---@param fn fun(item: any, i: integer): any, any?
  ---@param opts? { concurrency?: integer } at most this many tasks at once (8)
  ---@return any[] results
  ---@return table errors
  function M.map(items, fn, opts)
    local limit = (opts and opts.concurrency) or 8
    if type(limit) ~= "number" or limit < 1 or limit % 1 ~= 0 then
      error("llm.map: concurrency must be a positive integer, got " .. tostring(limit), 2)
    end
    if type(items) ~= "table" then error("llm.map: items must be a list, got " .. type(items), 2) end
    if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
      error("llm.map: fn must be a function, got " .. type(fn), 2)
    end
    local n = #items
    local results, errs = {}, {}
    local next_i = 0
    local function worker()
      while next_i < n do
        next_i = next_i + 1
        local i = next_i
        local t = M.spawn(fn, items[i], i)
        local r, e = M.gather(t)
        results[i], errs[i] = r[1], e[1]
      end
    end
    local workers = {}
    for w = 1, math.min(limit, n) do workers[w] = M.spawn(worker) end
    M.gather(unpack(workers))
    return results, errs
  end

  --- Sleep s seconds on the clock: yields inside a task, blocks (running other tasks) outside.
  ---@param s number seconds
  ---@return true|nil ok
  ---@return llm.Error? err kind "cancelled"
  function M.sleep(s)
    M.check_blocking("llm.sleep", 2)
    local fut = M.future()
    local id = clock:timer(s, function() fut:resolve(true) end)
    return M.wait(fut, function() clock:cancel(id) end)
  end

  --- Run fn(...) with a time limit; returns its values, or nil, err (kind "timeout").
  ---@param s number seconds
  ---@param fn function the work
  ---@param ... any its arguments
  ---@return any ... fn's values, or nil and an llm.Error (kind "timeout")
  function M.timeout(s, fn, ...)
    local child = M.spawn(fn, ...)
    local fut = M.future()
    local timed_out = false
    local id = clock:timer(s, function() timed_out = true; fut:resolve() end)
    local watcher = M.spawn(function()
      M.wait(child.done_future)
      fut:resolve()
    end)
    local _, err = M.wait(fut, function() child:cancel(); watcher:cancel(); clock:cancel(id) end)
    if err then return nil, err end
    clock:cancel(id)
    if timed_out and child.status ~= "done" then
      child:cancel()
      watcher:cancel()
      return nil, errors.new{ kind = "timeout", which = "total",
                              message = string.format("timed out after %g s", s) }
    end
    watcher:cancel()
    return outcome(child)
  end

  ---------------------------------------------------------------------------------------
  -- Transfers: objects that want the loop's records for one transfer id.
  -- @section transfers

  --- Route the records of transfer `t` to `obj:on_record(rec)` until unwatch.
  ---@private
  ---@param t table the transfer
  ---@param obj table receives `obj:on_record(rec)`
  function M.watch(t, obj)
    watchers[t.id] = obj
    nwatch = nwatch + 1
  end

  function M.unwatch(t)
    if watchers[t.id] ~= nil then
      watchers[t.id] = nil
      nwatch = nwatch - 1
    end
  end

  local function inflight()
    -- the weak table may have lost entries to collection; recount when it matters
    local n = 0
    for _ in each(watchers) do n = n + 1 end
    nwatch = n
    return n
  end

  -- Hand out the records waiting in the inbox, oldest first, until the budget is spent.
  local function dispatch()
    while inbox.first <= inbox.last and (units < check_at or not over()) do
      local rec = inbox:pop()
      units = units + 1
      stats.records = stats.records + 1
      if rec.type == "timer" then
        if not clock.fake then clock:fire(rec.id) end
      else
        local obj = watchers[rec.id]
        if obj then obj:on_record(rec) end
      end
    end
  end

  local loop_more = false   -- the loop left reports for the next step
  -- Stream events taken from the loop at a time: the core hands them out in pieces, so a
  -- step that runs out of budget stops between pieces and the rest stays queued in C.
  local FETCH_EVENTS = 256

  -- Take the loop's records (waiting at most `wait` seconds when there are none) into the
  -- inbox; returns how many came.
  local recs = {}   -- the loop's list of records, emptied into the inbox after every step
  local function fetch(wait)
    local remaining = budget - (now(loop) - step_start)
    if recs[1] ~= nil then recs = {} end   -- left over by a step that raised (out of memory)
    local got, more = loop:step(wait, remaining > 0 and remaining or 0, FETCH_EVENTS, recs)
    loop_more = more
    local n = #got
    for i = 1, n do
      inbox:push(got[i])
      got[i] = nil
    end
    return n
  end

  local function has_work()
    return ready.first <= ready.last or inbox.first <= inbox.last or loop_more
  end

  local function step_once(wait)
    -- Leftovers from the last step first, in order.
    dispatch()
    run_ready()
    if over() then return end
    if has_work() then wait = 0 end
    if clock.fake then
      clock:fire_due()
      if ready:len() > 0 then wait = 0 end
      local nrec = fetch(nwatch > 0 and math.min(wait, 0.01) or 0)
      dispatch()
      run_ready()
      -- Nothing can move without time passing: jump the virtual clock.
      if wait > 0 and nrec == 0 and ready:len() == 0 and (nwatch == 0 or inflight() == 0) then
        clock:jump()
        run_ready()
      end
    else
      -- A long wait is cut in slices, so Ctrl-C in a script is honoured.
      local deadline = now(loop) + wait
      while true do
        local slice = math.min(wait, SLICE)
        local n = fetch(slice)
        if slice > 0 then step_start, last_check = now(loop), 0 end   -- waiting is not work
        if n > 0 or has_work() then break end
        wait = deadline - now(loop)
        if wait <= 0 then break end
      end
      dispatch()
      run_ready()
    end
    -- More queued in the core and budget left: the next pieces.
    while loop_more and units > 0 and not over() and inbox:len() == 0 do
      units = units + 1                 -- fetching (the core's I/O, starts, reports) is work
      fetch(0)
      dispatch()
      run_ready()
    end
  end

  local step_wait = 0   -- M.step's timeout, for step_body (no closure made per step)
  local function step_body() return step_once(step_wait) end

  --- Do the ready I/O, fire due timers, resume tasks, within the step budget; wait at most
  -- `timeout` seconds when nothing is ready (0: never blocks). Returns the number of live tasks.
  ---@param timeout? number seconds to wait at most (0: never blocks)
  ---@return integer live the number of live tasks
  function M.step(timeout)
    if current ~= nil then error("llm.step cannot be called from inside a task", 2) end
    if stepping then error("llm.step called inside a step", 2) end
    stepping = true
    step_start, units = now(loop), 0
    last_check, last_units, unit_cost, check_at = 0, 0, 0, 0
    step_wait = timeout or 0
    local ok, err = xpcall(step_body, compat.handler)   -- 5.1: no xpcall args
    stepping = false
    stats.steps = stats.steps + 1
    if units > stats.max_units then stats.max_units = units end
    if has_work() then
      stats.deferred_steps = stats.deferred_steps + 1
      loop:wake()
    end
    if not ok then error(err, 0) end
    return nlive
  end

  --- Seconds until a step has timed work: 0 when it has work now, nil when nothing is pending.
  ---@return number? seconds
  function M.next_timeout()
    if has_work() then return 0 end
    local t = loop:next_timeout()
    if clock.fake then
      local at = clock:next_at()
      if at then
        local f = math.max(0, at - clock:now())
        if t == nil or f < t then t = f end
      end
    end
    return t
  end

  --- Scheduler settings: `step_budget` (seconds, >= 0) and `blocking`.
  ---@private
  function M.configure(cfg)
    if cfg.step_budget ~= nil then
      if type(cfg.step_budget) ~= "number" or cfg.step_budget < 0 then
        error("step_budget must be a number of seconds >= 0", 3)
      end
      budget = cfg.step_budget
    end
    if cfg.blocking ~= nil then blocking = cfg.blocking and true or false end
  end

  --- The scheduler's counters merged with the loop's (loop:stats()): steps, deferred_steps
  -- (steps that left work for the next), resumes, records, handed_out, max_units.
  ---@return table counters
  function M.stats()
    local st = loop:stats()
    for k, v in each(stats) do st[k] = v end
    st.ready = ready:len()
    st.inbox = inbox:len()
    return st
  end

  --- Run fn(...) as a task and drive the loop until it finishes; returns its values or
  -- re-raises its error. Tasks it spawned that are still alive are cancelled.
  ---@param fn function the main task
  ---@param ... any its arguments
  ---@return any ... fn's values
  function M.run(fn, ...)
    if current ~= nil then error("llm.run cannot be called inside a task", 2) end
    if type(fn) ~= "function" then error("llm.run expects a function", 2) end
    if not compat.tasks then error(compat.NO_TASKS, 2) end
    local before = {}
    for t in each(live) do before[t] = true end
    local main = M.spawn(fn, ...)
    main.observed = true   -- llm.run waits even with blocking = false: the host asked for it
    while main.status ~= "done" do M.step(SLICE) end
    local leftovers = {}
    for t in each(live) do
      if not before[t] then leftovers[#leftovers + 1] = t end
    end
    for _, t in ipairs(leftovers) do t:cancel() end
    local guard = 0
    while #leftovers > 0 and guard < 100 do   -- let them unwind
      guard = guard + 1
      local alive = false
      for _, t in ipairs(leftovers) do if t.status ~= "done" then alive = true end end
      if not alive then break end
      M.step(0)
    end
    for _, t in ipairs(leftovers) do report_unobserved(t) end
    return outcome(main)
  end

  function M.live_tasks() return nlive end
  M.Task = Task
  return M
end
