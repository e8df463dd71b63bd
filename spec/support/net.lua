--- Loopback sockets for the specs that need a port in a particular state (LuaSocket), and
--- TLS servers made for a run.
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

--- Steps `loop` (0.05 s waits, one record batch a step) until `n` transfers have reported
--- `done`, or `max_steps` steps have passed (default 100,000); `on_done(rec)` sees each done
--- record. Returns how many finished.
---@param loop table an llm.core loop
---@param n integer the transfers to wait for
---@param on_done? fun(rec: table)
---@param max_steps? integer
---@return integer done
function M.run_transfers(loop, n, on_done, max_steps)
  local done, guard = 0, 0
  while done < n and guard < (max_steps or 100000) do
    for _, rec in ipairs((loop:step(0.05, 1))) do
      if rec.type == "done" then
        if on_done then on_done(rec) end
        done = done + 1
      end
    end
    guard = guard + 1
  end
  return done
end

local function sh(cmd) return os.execute(cmd) end

--- A TLS server on 127.0.0.1 with a self-signed certificate made for this run (CN and
--- subjectAltName 127.0.0.1) in a fresh folder: `files` (`{ [relative path] = content }`) are
--- written there, then `command(port)` (run in that folder, with `key.pem` and `cert.pem`
--- beside the files) is started in the background. Returns `{ dir, port, url, stop }` once
--- the server accepts connections; `stop()` kills it and removes the folder.
---@param files table<string, string> the files to write, by path relative to the folder
---@param command fun(port: integer): string the shell command that starts the server
---@return table server
function M.tls_server(files, command)
  local dir = os.tmpname(); os.remove(dir)
  assert(sh("mkdir -p " .. dir))
  assert(sh(("cd %s && env -u LD_PRELOAD openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
    .. "-addext subjectAltName=IP:127.0.0.1 -keyout key.pem -out cert.pem >/dev/null 2>&1"):format(dir)))
  for path, content in pairs(files) do
    local sub = path:match("^(.*)/[^/]*$")
    if sub then assert(sh("mkdir -p " .. dir .. "/" .. sub)) end
    local f = assert(io.open(dir .. "/" .. path, "w")); f:write(content); f:close()
  end
  local port = M.closed_port()
  assert(sh(("cd %s && env -u LD_PRELOAD %s >server.log 2>&1 & echo $! > %s/pid"):format(dir, command(port), dir)))
  local pf = assert(io.open(dir .. "/pid")); local pid = pf:read("*n"); pf:close()
  for _ = 1, 100 do           -- wait until it accepts
    local c = socket.tcp()
    c:settimeout(0.1)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    if ok then break end
    sh("sleep 0.05")
  end
  return { dir = dir, port = port, url = ("https://127.0.0.1:%d"):format(port), stop = function()
    if pid then sh("kill " .. pid .. " 2>/dev/null") end
    sh("rm -rf " .. dir)
  end }
end

return M
