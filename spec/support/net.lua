--- Loopback sockets for the specs that need a port in a particular state (LuaSocket).
local socket = require("socket")

local M = {}

--- A loopback port that nothing listens on (free when probed).
function M.closed_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

--- A listener whose accept queue is full, so further connects hang in SYN: returns its port
--- and a function that closes it and the sockets filling its queue.
function M.full_listener()
  local srv = assert(socket.tcp())
  assert(srv:bind("127.0.0.1", 0))
  assert(srv:listen(0))
  local _, port = srv:getsockname()
  local fillers = {}
  for i = 1, 8 do     -- fill the backlog so further SYNs are dropped
    local c = socket.tcp()
    c:settimeout(0)
    c:connect("127.0.0.1", port)
    fillers[i] = c
  end
  return port, function()
    for _, c in ipairs(fillers) do c:close() end
    srv:close()
  end
end

return M
