--- Shared by the Lua benchmark scripts: argument parsing, process resource usage and the
-- one-line result format that bench/run.sh reads (the same format bench_ref_client prints).
local M = {}

--- Parse `--name value` pairs into a table (values stay strings).
function M.args(argv)
  local out = {}
  local i = 1
  while i <= #argv do
    local k = argv[i]:match("^%-%-(.+)$")
    if not k or argv[i + 1] == nil then error("usage: --name value ... (at '" .. argv[i] .. "')", 0) end
    out[k] = argv[i + 1]
    i = i + 2
  end
  return out
end

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- CPU seconds of this process so far: user, sys (from /proc/self/stat, in clock ticks)
-- and their sum at the precision of clock(3), which reads CLOCK_PROCESS_CPUTIME_ID.
function M.cpu()
  local tck = tonumber(os.getenv("BENCH_CLK_TCK")) or 100
  local stat = read_file("/proc/self/stat") or ""
  -- fields after the parenthesised command name; utime and stime are fields 14 and 15
  local rest = stat:match("^%d+ %b() (.*)$") or ""
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  local user = (tonumber(f[12]) or 0) / tck
  local sys = (tonumber(f[13]) or 0) / tck
  return user, sys, os.clock()
end

--- Peak resident set size in KiB (VmHWM, what getrusage reports as ru_maxrss).
function M.maxrss_kb()
  local s = read_file("/proc/self/status") or ""
  return tonumber(s:match("VmHWM:%s*(%d+)")) or 0
end

--- Print the result line: `RESULT key=value ...` with the process's CPU and peak RSS added.
-- `r` holds name, events, wall, streams, errors and any extra fields.
function M.report(r)
  local user, sys, total = M.cpu()
  local fields = {
    string.format("name=%s", r.name),
    string.format("events=%d", r.events),
    string.format("streams=%d", r.streams or 1),
    string.format("errors=%d", r.errors or 0),
    string.format("wall=%.6f", r.wall),
    string.format("cpu=%.6f", total),
    string.format("user=%.3f", user),
    string.format("sys=%.3f", sys),
    string.format("maxrss_kb=%d", M.maxrss_kb()),
  }
  for k, v in pairs(r.extra or {}) do fields[#fields + 1] = k .. "=" .. tostring(v) end
  io.stdout:write("RESULT ", table.concat(fields, " "), "\n")
  io.stdout:flush()
end

return M
