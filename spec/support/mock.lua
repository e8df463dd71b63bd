--- Starts and stops the mock server for a spec, and reads its control endpoints.
-- The server and curl run without LD_PRELOAD (an ASan preload makes the curl CLI hang).
local cjson = require("cjson")

local M = {}
local Server = { __name = "spec.MockServer" }
Server.__index = Server

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

local function bin_path()
  local b = os.getenv("LLM_MOCK_BIN")
  if b then return b end
  local build = os.getenv("LLM_BUILD") or ((os.getenv("LLM_ROOT") or ".") .. "/build")
  return build .. "/llm-mock"
end

--- Start a server on a free port; returns an object with url, port and control helpers.
function M.start(opts)
  opts = opts or {}
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local portfile, pidfile = dir .. "/port", dir .. "/pid"
  local extra = opts.args or ""
  assert(os.execute(string.format(
    "env -u LD_PRELOAD %s --port 0 --port-file %s --quiet %s >%s/log 2>&1 & echo $! > %s",
    bin_path(), portfile, extra, dir, pidfile)))
  local port
  for _ = 1, 200 do
    local f = io.open(portfile, "r")
    if f then port = tonumber(f:read("a")); f:close() end
    if port then break end
    os.execute("sleep 0.02")
  end
  local f = assert(io.open(pidfile, "r"))
  local pid = tonumber(f:read("a"))
  f:close()
  assert(port, "mock server did not start (see " .. dir .. "/log)")
  return setmetatable({ port = port, pid = pid, dir = dir,
                        url = "http://127.0.0.1:" .. port }, Server)
end

function Server:curl(method, path)
  return sh(string.format("env -u LD_PRELOAD curl -s --max-time 10 -X %s %s%s", method, self.url, path))
end

--- The requests received since the last reset (decoded JSON list).
function Server:requests() return cjson.decode(self:curl("GET", "/__mock/requests")) end
--- Counters: connections, open_connections, requests, active, peak_active.
function Server:stats() return cjson.decode(self:curl("GET", "/__mock/stats")) end
function Server:reset() self:curl("POST", "/__mock/reset") end

function Server:stop()
  if self.pid then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    os.execute("rm -rf " .. self.dir)
    self.pid = nil
  end
end
Server.__gc = Server.stop

return M
