--- Starts and stops the mock server for a spec, and reads its control endpoints.
-- The server and curl run without LD_PRELOAD (an ASan preload makes the curl CLI hang).
local cjson = require("cjson")

local M = {}
local Server = { __name = "spec.MockServer" }
Server.__index = Server

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end

--- Start a server on a free port (through llm.mock, so it never outlives the spec run);
-- returns an object with url, port and control helpers.
function M.start(opts)
  local m = assert(require("llm.mock").start(opts))
  return setmetatable({ port = m.port, url = m.url, server = m }, Server)
end

--- Client options `a` with the fields of `b` laid over them (a new table).
function M.merge(a, b)
  local out = {}
  for k, v in pairs(a) do out[k] = v end
  for k, v in pairs(b or {}) do out[k] = v end
  return out
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
  self.server:stop()
end

return M
