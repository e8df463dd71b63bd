-- Parses fault specs: "status=429;retry-after=1", "reset-after-events=3", "truncate", ...
local M = {}

function M.parse(spec)
  local f = {}
  for item in (spec or ""):gmatch("[^;]+") do
    item = item:match("^%s*(.-)%s*$")
    local k, v = item:match("^([%w%-_]+)%s*=%s*(.*)$")
    if k then f[k:lower()] = v elseif item ~= "" then f[item:lower()] = true end
  end
  return f
end

function M.int(v)
  return math.tointeger(tonumber(v))
end

return M
