--- What the specs need to run on every Lua the library supports (5.4, 5.3, LuaJIT, 5.1).
-- The library's own differences live in lua/llm/compat.lua; these are the specs'.
local compat = require("llm.compat")

local M = {}

--- The interpreter of the build under test, for child processes (run_spec.sh sets LLM_LUA).
M.lua = os.getenv("LLM_LUA") or "lua5.4"
--- 5.3+: integers are a subtype of number (math.type); LuaJIT and 5.1 have doubles only.
M.INTEGERS = math.type ~= nil
M.unpack = compat.unpack
M.math_type = compat.math_type
M.utf8 = compat.utf8

--- os.execute(cmd) as 5.2+ reports it: true or nil, "exit", code.
function M.execute(cmd)
  local a, b, c = os.execute(cmd)
  if type(a) == "number" then                 -- 5.1 / LuaJIT: the raw wait status
    local code = a >= 256 and math.floor(a / 256) or a
    if code == 0 then return true, "exit", 0 end
    return nil, "exit", code
  end
  return a, b, c
end

--- Run a shell command; returns its output (stdout and stderr) and exit code. The code is
-- echoed by the shell, since LuaJIT's and 5.1's popen close does not report it.
function M.run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"[exit $?]\""))
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.-)%[exit (%d+)%]\n$")
  return body, tonumber(code)
end

return M
