--- A first-in first-out queue with explicit head and tail counters (no reliance on `#`,
-- whose border is unspecified once the front of a sequence has been cleared).
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local M = {}

local Queue = { __name = "llm.Queue" }
Queue.__index = Queue

function M.new() return setmetatable({ first = 1, last = 0 }, Queue) end

function Queue:push(v)
  local l = self.last + 1
  self.last = l
  self[l] = v
end

--- The oldest item, or nil when empty.
function Queue:pop()
  local f = self.first
  if f > self.last then return nil end
  local v = self[f]
  self[f] = nil
  if f == self.last then self.first, self.last = 1, 0 else self.first = f + 1 end
  return v
end

--- The oldest item without taking it, or nil when empty.
function Queue:peek() return self[self.first] end

function Queue:len() return self.last - self.first + 1 end

return M
