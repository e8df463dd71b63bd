--- Clocks for the scheduler: the real one runs on the loop's timers; a fake one keeps
-- virtual time, so specs can check pacing and backoff without waiting.
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local M = {}

local Real = { __name = "llm.clock.Real" }
Real.__index = Real

--- A clock on a `llm.core` loop: monotonic time, timers fired by `loop:step`.
function M.real(loop)
  return setmetatable({ loop = loop, callbacks = {}, fake = false }, Real)
end

function Real:now() return self.loop:now() end

function Real:timer(delay, fn)
  local id = self.loop:timer(delay)
  self.callbacks[id] = fn
  return id
end

function Real:cancel(id)
  if self.callbacks[id] then
    self.callbacks[id] = nil
    self.loop:cancel_timer(id)
  end
end

--- Called by the scheduler for each `timer` record of the loop.
function Real:fire(id)
  local fn = self.callbacks[id]
  if fn then
    self.callbacks[id] = nil
    fn()
  end
end

function Real:pending() return next(self.callbacks) ~= nil end

local Fake = { __name = "llm.clock.Fake" }
Fake.__index = Fake

--- A virtual clock starting at `start` (default 0). Time moves only by `advance`, or when the
-- scheduler finds every task asleep and jumps to the next timer. Its wall-clock time (what
-- `os.time()` would say) is `epoch + now()` (epoch default 0).
function M.fake(start, epoch)
  return setmetatable({ t = start or 0, heap = {}, seq = 0, live = {}, fake = true, jumps = 0,
                        epoch = epoch or 0 }, Fake)
end

function Fake:now() return self.t end
function Fake:wall() return self.epoch + self.t end

local function by_time(a, b) return a.at < b.at or (a.at == b.at and a.seq < b.seq) end

--- Push `item` on the binary min-heap `heap` ordered by `less` (shared with llm.limiter).
---@private
---@param heap table the heap's array
---@param item any the value to add
---@param less function less(a, b): a comes out first
function M.heap_push(heap, item, less)
  heap[#heap + 1] = item
  local i = #heap
  while i > 1 do
    local p = math.floor(i / 2)
    if not less(heap[i], heap[p]) then break end
    heap[i], heap[p] = heap[p], heap[i]
    i = p
  end
end

--- Remove and return the first item of the heap ordered by `less`.
---@private
---@param heap table the heap's array
---@param less function the order the heap was built with
---@return any item the first item, or nil when empty
function M.heap_pop(heap, less)
  local top, n = heap[1], #heap
  heap[1] = heap[n]
  heap[n] = nil
  n = n - 1
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and less(heap[l], heap[m]) then m = l end
    if r <= n and less(heap[r], heap[m]) then m = r end
    if m == i then break end
    heap[i], heap[m] = heap[m], heap[i]
    i = m
  end
  return top
end

local function push(heap, item) M.heap_push(heap, item, by_time) end
local function pop(heap) return M.heap_pop(heap, by_time) end

function Fake:timer(delay, fn)
  self.seq = self.seq + 1
  local item = { at = self.t + math.max(0, delay), seq = self.seq, fn = fn }
  self.live[self.seq] = item
  push(self.heap, item)
  return self.seq
end

function Fake:cancel(id)
  local item = self.live[id]
  if item then
    item.fn = nil
    self.live[id] = nil
  end
end

--- Fire every timer due at the current virtual time; returns how many fired.
function Fake:fire_due()
  local n = 0
  while self.heap[1] and self.heap[1].at <= self.t do
    local item = pop(self.heap)
    if item.fn then
      self.live[item.seq] = nil
      n = n + 1
      item.fn()
    end
  end
  return n
end

--- The next live timer's deadline, or nil.
function Fake:next_at()
  while self.heap[1] and not self.heap[1].fn do pop(self.heap) end
  return self.heap[1] and self.heap[1].at
end

function Fake:pending() return self:next_at() ~= nil end

--- Move virtual time forward by dt and fire what became due.
function Fake:advance(dt)
  self.t = self.t + dt
  return self:fire_due()
end

--- Jump to the next timer and fire it; false when there is none.
function Fake:jump()
  local at = self:next_at()
  if not at then return false end
  if at > self.t then self.t = at end
  self.jumps = self.jumps + 1
  self:fire_due()
  return true
end

return M
