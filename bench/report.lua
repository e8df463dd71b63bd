--- The table bench/run.sh prints: the median of each measurement over the runs, the
-- library's rows next to the reference's, with the ratio library / reference.
--   lua5.4 bench/report.lua RESULTS EXPECT_STREAM EXPECT_FANOUT STREAMS EVENTS FEVENTS FDELAY
--                           [FRAME_STREAMS FRAME_EVENTS FRAME_DELAY]
-- RESULTS holds `RESULT key=value ...` lines (bench/common.lua, bench_ref_client, llm-host).
-- A case with no results (BENCH_CASES left it out) is not shown.
local path = assert(arg[1], "results file")
local expect = { stream = tonumber(arg[2]), fanout = tonumber(arg[3]) }
local streams, events, fevents, fdelay = arg[4], arg[5], arg[6], arg[7]
local frame_streams, frame_events, frame_delay = arg[8], arg[9], arg[10]

local runs = {}    -- label -> list of records
for line in io.lines(path) do
  local body = line:match("^RESULT (.*)$")
  if body then
    local r = {}
    for k, v in body:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) or v end
    local list = runs[r.label]
    if not list then list = {}; runs[r.label] = list end
    list[#list + 1] = r
  end
end

local function median(list, key)
  local xs = {}
  for _, r in ipairs(list) do xs[#xs + 1] = tonumber(r[key]) or 0 end
  table.sort(xs)
  local n = #xs
  if n == 0 then return 0 end
  if n % 2 == 1 then return xs[(n + 1) // 2] end
  return (xs[n // 2] + xs[n // 2 + 1]) / 2
end

local function summary(label)
  local list = runs[label]
  if not list then return nil end
  local s = { n = #list, errors = 0, bad_counts = 0 }
  local kind = label:match("^(%w+)/")
  for _, r in ipairs(list) do
    r.rate = (r.wall or 0) > 0 and r.events / r.wall or 0
    s.errors = s.errors + (r.errors or 0)
    if r.events ~= expect[kind] then s.bad_counts = s.bad_counts + 1 end
  end
  s.events = median(list, "events")
  s.wall = median(list, "wall")
  s.rate = median(list, "rate")
  s.cpu = median(list, "cpu")
  s.user = median(list, "user")
  s.sys = median(list, "sys")
  s.rss = median(list, "maxrss_kb") / 1024
  s.peak = list[1].peak_active and median(list, "peak_active")
  s.peak_min = nil
  for _, r in ipairs(list) do
    if r.peak_active and (not s.peak_min or r.peak_active < s.peak_min) then s.peak_min = r.peak_active end
  end
  return s
end

local function thousands(x)
  local s = string.format("%d", math.floor(x + 0.5))
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

local function ratio(a, b)
  if not a or not b or b == 0 then return "-" end
  return string.format("%.2fx", a / b)
end

local CASES = {
  { key = "stream", title = string.format("1. streaming throughput: one stream, %s text deltas (%d SSE events)",
                                            events, expect.stream) },
  { key = "fanout", title = string.format("2. fan-out: %s concurrent streams x %s deltas, %s ms apart (%d SSE events)",
                                            streams, fevents, fdelay, expect.fanout) },
}
local CLIENTS = {
  { key = "ref", name = "reference (C, libcurl)" },
  { key = "http", name = "llm.http (framing)" },
  { key = "client", name = "llm client (normalized)" },
}

local problems = {}
local fmt = "  %-24s %9s %8s %11s %7s %6s %6s %8s %9s | %7s %7s %7s\n"
io.write("\n")
for _, case in ipairs(CASES) do
  if runs[case.key .. "/ref"] or runs[case.key .. "/http"] or runs[case.key .. "/client"] then
  io.write(case.title, "\n")
  io.write(string.format(fmt, "client", "events", "wall s", "events/s", "CPU s", "user", "sys",
                         "us/event", "RSS MiB", "ev/s", "CPU", "RSS"))
  local ref = summary(case.key .. "/ref")
  for _, cl in ipairs(CLIENTS) do
    local label = case.key .. "/" .. cl.key
    local s = summary(label)
    if s then
      local is_ref = cl.key == "ref"
      io.write(string.format(fmt, cl.name, thousands(s.events), string.format("%.3f", s.wall),
        thousands(s.rate), string.format("%.3f", s.cpu), string.format("%.2f", s.user),
        string.format("%.2f", s.sys), string.format("%.2f", s.events > 0 and s.cpu / s.events * 1e6 or 0),
        string.format("%.1f", s.rss),
        is_ref and "1.00x" or ratio(s.rate, ref and ref.rate),
        is_ref and "1.00x" or ratio(s.cpu, ref and ref.cpu),
        is_ref and "1.00x" or ratio(s.rss, ref and ref.rss)))
      if s.peak then
        io.write(string.format("  %-24s peak_active on the mock server: %d (lowest run: %d)\n", "",
                               s.peak, s.peak_min or 0))
        if s.peak_min and tonumber(streams) and s.peak_min < tonumber(streams) then
          problems[#problems + 1] = string.format("%s: peak_active %d < %s streams", label, s.peak_min, streams)
        end
      end
      if s.errors > 0 then problems[#problems + 1] = string.format("%s: %d failed stream(s)", label, s.errors) end
      if s.bad_counts > 0 then
        problems[#problems + 1] = string.format("%s: %d run(s) counted other than %d events", label,
                                                s.bad_counts, expect[case.key])
      end
    end
  end
  io.write("\n")
  end
end
if runs["stream/ref"] or runs["fanout/ref"] then
  io.write("ratios are library / reference: events/s below 1 is slower; CPU and RSS above 1 cost more.\n")
  io.write("wall covers the transfers; CPU and peak RSS cover the whole process (interpreter start included).\n")
end

-- 3. The frame loop: llm-host steps the library once per 60 Hz frame (bench/frame.lua).
local frames = runs["frame/host"]
if frames then
  io.write(string.format("\n3. frame loop: %s live streams x %s deltas, %s ms apart, all started in frame 0;\n"
    .. "   llm-host calls llm.step(0) once per 60 Hz frame and times it\n", frame_streams, frame_events, frame_delay))
  local ffmt = "  %-22s %9s  %s\n"
  io.write(string.format(ffmt, "figure", "median", "runs"))
  local TARGET = { longest_ms = 1.0, p99_ms = 0.3, missed = 0 }
  local rows = {
    { "longest_ms", "longest step (ms)", "%.3f" }, { "longest_frame", "  in frame", "%d" },
    { "p99_ms", "p99 step (ms)", "%.3f" }, { "median_ms", "median step (ms)", "%.3f" },
    { "missed", "missed frames", "%d" },
    { "late", "late wake-ups", "%d" }, { "frames", "frames", "%d" },
  }
  if frames[1].deferred_steps then   -- the loop's counters (llm.loop_stats), where it has them
    rows[#rows + 1] = { "deferred_steps", "steps that hit budget", "%d" }
    rows[#rows + 1] = { "max_units", "most units in a step", "%d" }
  end
  local verdicts = {}
  for _, row in ipairs(rows) do
    local key, name, f = row[1], row[2], row[3]
    local each = {}
    for _, r in ipairs(frames) do each[#each + 1] = string.format(f, tonumber(r[key]) or 0) end
    local m = median(frames, key)
    io.write(string.format(ffmt, name, string.format(f, m), table.concat(each, " ")))
    if TARGET[key] then
      local met = (key == "missed") and m <= TARGET[key] or m < TARGET[key]
      verdicts[#verdicts + 1] = string.format("%s %s (target %s)", name, met and "met" or "NOT met",
        key == "missed" and "0" or "< " .. TARGET[key])
    end
  end
  io.write("  targets: ", table.concat(verdicts, "; "), "\n")
  io.write("  a frame is missed when, started on time, its step and game update ran past the next\n"
    .. "  frame's start;\n"
    .. "  a late wake-up is the OS waking the loop more than half a frame late (not the library's time)\n")
  local bad = 0
  for _, r in ipairs(frames) do if tonumber(r.ok) ~= 1 then bad = bad + 1 end end
  if bad > 0 then
    problems[#problems + 1] = string.format("frame/host: %d run(s) failed (a stream short or an error)", bad)
  end
end
if #problems > 0 then
  io.write("\nPROBLEMS:\n")
  for _, p in ipairs(problems) do io.write("  ", p, "\n") end
  os.exit(1)
end
