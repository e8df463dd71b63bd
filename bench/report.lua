--- The table bench/run.sh prints: the median of each figure over the runs, every client's
-- row next to the references measured in the same run (the C client without and with JSON
-- decoding, the pure-Lua peer), with ratios, and which of the targets are met.
--   lua5.4 bench/report.lua RESULTS
-- RESULTS holds `RESULT key=value ...` lines (bench/common.lua, bench_ref_client, llm-host)
-- with a label `case/client`. The environment carries the run's shape: BENCH_EXPECT
-- ("case=count ..."), BENCH_SHAPE ("knob=value ..."); BENCH_CHART_DATA names a file for the
-- chart's data (bench/chart.gp). A case with no results (BENCH_CASES left it out) is not
-- shown. Exits 1 (listing PROBLEMS) when a client failed, counted wrong, or the fan-out did
-- not reach full concurrency; targets not met are reported, not failed.
local path = assert(arg[1], "results file")

local function kv(s)
  local t = {}
  for k, v in (s or ""):gmatch("([%w_]+)=(%S+)") do t[k] = tonumber(v) or v end
  return t
end
local expect = kv(os.getenv("BENCH_EXPECT"))
local shape = kv(os.getenv("BENCH_SHAPE"))
local frame_streams, frame_events, frame_delay = shape.frame_streams, shape.frame_events, shape.frame_delay

local runs = {}    -- label -> list of records
for line in io.lines(path) do
  local body = line:match("^RESULT (.*)$")
  if body then
    local r = kv(body)
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

local problems = {}

local function summary(label)
  local list = runs[label]
  if not list then return nil end
  local s = { n = #list, errors = 0, bad_counts = 0 }
  local kind = label:match("^(%w+)/")
  for _, r in ipairs(list) do
    r.rate = (r.wall or 0) > 0 and r.events / r.wall or 0
    s.errors = s.errors + (r.errors or 0)
    if expect[kind] and r.events ~= expect[kind] then s.bad_counts = s.bad_counts + 1 end
  end
  for _, k in ipairs{ "events", "wall", "rate", "cpu", "user", "sys", "p50_us", "p99_us", "connections" } do
    s[k] = median(list, k)
  end
  s.rss = median(list, "maxrss_kb") / 1024
  s.peak = list[1].peak_active and median(list, "peak_active")
  for _, r in ipairs(list) do
    if r.peak_active and (not s.peak_min or r.peak_active < s.peak_min) then s.peak_min = r.peak_active end
  end
  if s.errors > 0 then problems[#problems + 1] = string.format("%s: %d failed request(s)", label, s.errors) end
  if s.bad_counts > 0 then
    problems[#problems + 1] = string.format("%s: %d run(s) counted other than %d", label, s.bad_counts, expect[kind])
  end
  if s.peak_min and shape.streams and s.peak_min < shape.streams then
    problems[#problems + 1] = string.format("%s: peak_active %d < %d streams", label, s.peak_min, shape.streams)
  end
  return s
end

local function thousands(x)
  local s = string.format("%d", math.floor(x + 0.5))
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

local function ratio(a, b)
  if not a or not b or b == 0 or a == 0 then return "-" end
  return string.format("%.2fx", a / b)
end

local CLIENTS = {
  { key = "client", name = "llm client (public API)", chart = "llm client", color = "0x1f77b4" },
  { key = "base", name = "llm client, BENCH_BASELINE", chart = "baseline", color = "0x9467bd" },
  { key = "http", name = "llm.http (framing only)", chart = "llm.http", color = "0x6baed6" },
  { key = "ref", name = "C ref (libcurl)", chart = "C ref", color = "0xd62728" },
  { key = "refjson", name = "C ref + cJSON", chart = "C ref + cJSON", color = "0xff7f0e" },
  { key = "lua", name = "pure Lua (LuaSocket+cjson)", chart = "pure Lua", color = "0x2ca02c" },
}

-- Each case: its title, the figures it shows (key, heading, format) and the figure its
-- ratios compare (with `higher` true when more is better).
local CASES = {
  { key = "stream",
    title = ("(a) one stream of %s text deltas (%s SSE events), no delay"):format(shape.events, expect.stream),
    cols = { { "rate", "events/s", "k" }, { "wall", "wall s", "%.3f" }, { "cpu", "CPU s", "%.3f" },
             { "rss", "RSS MiB", "%.1f" } },
    ratio = { "rate", "events/s" } },
  { key = "fanout",
    title = ("(b) %s concurrent streams x %s deltas, %s ms apart (%s SSE events)"):format(
      shape.streams, shape.fevents, shape.fdelay, expect.fanout),
    cols = { { "wall", "wall s", "%.3f" }, { "cpu", "CPU s", "%.3f" }, { "rss", "RSS MiB", "%.1f" },
             { "peak", "peak", "%d" } },
    ratio = { "wall", "wall" }, ratio2 = { "cpu", "CPU" }, ratio3 = { "rss", "RSS" } },
  { key = "small",
    title = ("(c) %s small non-streaming requests, %s at once"):format(shape.small, shape.small_conc),
    cols = { { "rate", "req/s", "k" }, { "wall", "wall s", "%.3f" }, { "cpu", "CPU s", "%.3f" },
             { "rss", "RSS MiB", "%.1f" } },
    ratio = { "rate", "req/s" } },
  { key = "ttft",
    title = ("(d) time to first token: %s streams of %s deltas, one after another"):format(
      shape.ttft, shape.ttft_events),
    cols = { { "p50_us", "p50 us", "%.0f" }, { "p99_us", "p99 us", "%.0f" }, { "cpu", "CPU s", "%.3f" },
             { "rss", "RSS MiB", "%.1f" } },
    ratio = { "p50_us", "p50" } },
  { key = "h2",
    title = ("(b') HTTP/2 over TLS (nghttpd, a static SSE file): %s concurrent streams x %s deltas, no delay"):format(
      shape.h2_streams, shape.fevents),
    cols = { { "wall", "wall s", "%.3f" }, { "cpu", "CPU s", "%.3f" }, { "rss", "RSS MiB", "%.1f" },
             { "connections", "conns", "%d" } },
    ratio = { "wall", "wall" }, ratio2 = { "cpu", "CPU" } },
}

local S = {}      -- case -> client -> summary
local function fmtval(f, v)
  if f == "k" then return thousands(v) end
  return string.format(f, v)
end

io.write("\n")
for _, case in ipairs(CASES) do
  local have = false
  S[case.key] = {}
  for _, cl in ipairs(CLIENTS) do
    S[case.key][cl.key] = summary(case.key .. "/" .. cl.key)
    have = have or S[case.key][cl.key] ~= nil
  end
  if have then
    io.write(case.title, "\n")
    local head = { string.format("  %-27s", "client") }
    for _, c in ipairs(case.cols) do head[#head + 1] = string.format("%10s", c[2]) end
    local rk = { case.ratio, case.ratio2, case.ratio3 }
    for _, r in ipairs(rk) do
      head[#head + 1] = string.format(" | %-5s %6s %6s %6s", r[2], "/C", "/C+J", "/Lua")
    end
    io.write(table.concat(head), "\n")
    local refs = S[case.key]
    for _, cl in ipairs(CLIENTS) do
      local s = S[case.key][cl.key]
      if s then
        local row = { string.format("  %-27s", cl.name) }
        for _, c in ipairs(case.cols) do
          local v = s[c[1]]
          row[#row + 1] = string.format("%10s", v and fmtval(c[3], v) or "-")
        end
        for _, r in ipairs(rk) do
          local k = r[1]
          local function rt(ref) return ref and ratio(s[k], ref[k]) or "-" end
          row[#row + 1] = string.format(" | %-5s %6s %6s %6s", "", rt(refs.ref), rt(refs.refjson), rt(refs.lua))
        end
        io.write(table.concat(row), "\n")
      end
    end
    io.write("\n")
  end
end
do   -- where the run's time went (the whole process of each measurement, all runs)
  local per, total = {}, 0
  for label, list in pairs(runs) do
    local case = label:match("^(%w+)/")
    for _, r in ipairs(list) do
      per[case] = (per[case] or 0) + (tonumber(r.elapsed) or 0)
      total = total + (tonumber(r.elapsed) or 0)
    end
  end
  local parts = {}
  for _, c in ipairs{ "stream", "fanout", "small", "ttft", "h2", "frame" } do
    if per[c] then parts[#parts + 1] = string.format("%s %.0f s", c, per[c]) end
  end
  if total > 0 then io.write("time spent measuring: ", table.concat(parts, ", "), string.format("; %.0f s in all\n", total)) end
end
io.write("ratios: the client's figure / the reference's, same run (/C: C ref, /C+J: C ref + cJSON,\n"
  .. "/Lua: pure-Lua peer). events/s and req/s above 1 are faster; wall, CPU, RSS and latency\n"
  .. "above 1 cost more. wall covers the transfers; CPU and peak RSS the whole process.\n")

-- The targets: the llm client (public API) against the references of the same run.
local verdicts = {}
local function target(name, ok, detail)
  if ok == nil then return end
  verdicts[#verdicts + 1] = string.format("  %-3s %-52s %s", ok and "met" or "NOT", name, detail)
end
local function get(case, cl, k) local s = S[case] and S[case][cl]; return s and s[k] end
do
  local c, cj, l = get("stream", "client", "rate"), get("stream", "refjson", "rate"), get("stream", "lua", "rate")
  if c and l then target("(a) events/s >= pure Lua", c >= l, ("%.2fx"):format(c / l)) end
  if c and cj then target("(a) events/s >= 0.66x C ref + JSON", c >= 0.66 * cj, ("%.2fx"):format(c / cj)) end
  local w, wj, wl = get("fanout", "client", "wall"), get("fanout", "refjson", "wall"), get("fanout", "lua", "wall")
  local u, uj = get("fanout", "client", "cpu"), get("fanout", "refjson", "cpu")
  local m, ml = get("fanout", "client", "rss"), get("fanout", "lua", "rss")
  if w and wl then target("(b) wall <= pure Lua", w <= wl, ("%.2fx"):format(w / wl)) end
  if m and ml then target("(b) peak RSS <= pure Lua", m <= ml, ("%.2fx"):format(m / ml)) end
  if w and wj then target("(b) wall <= 1.1x C ref + JSON", w <= 1.1 * wj, ("%.2fx"):format(w / wj)) end
  if u and uj then target("(b) CPU <= 2x C ref + JSON", u <= 2 * uj, ("%.2fx"):format(u / uj)) end
  if m then target("(b) peak RSS < 64 MiB", m < 64, ("%.1f MiB"):format(m)) end
  local q, qj = get("small", "client", "rate"), get("small", "refjson", "rate")
  if q and qj then target("(c) req/s >= 0.7x C ref + JSON", q >= 0.7 * qj, ("%.2fx"):format(q / qj)) end
  local p, pj = get("ttft", "client", "p50_us"), get("ttft", "refjson", "p50_us")
  if p and pj then target("(d) TTFT p50 <= C ref + JSON + 50 us", p <= pj + 50, ("%+.0f us"):format(p - pj)) end
end
if #verdicts > 0 then
  io.write("\ntargets (llm client against the references of this run):\n", table.concat(verdicts, "\n"), "\n")
end

-- The chart's data: one block per panel (gnuplot `index`), rows "client" value color; the
-- baseline only when it was measured.
local chart = os.getenv("BENCH_CHART_DATA")
if chart then
  local PANELS = {
    { "stream", "rate", "(a) one stream: events/s (higher is better)", 1 },
    { "fanout", "wall", ("(b) %s streams: wall s"):format(shape.streams), 1 },
    { "fanout", "cpu", ("(b) %s streams: CPU s"):format(shape.streams), 1 },
    { "fanout", "rss", ("(b) %s streams: peak RSS MiB"):format(shape.streams), 1 },
    { "small", "rate", "(c) small requests: req/s (higher is better)", 1 },
    { "ttft", "p50_us", "(d) time to first token p50: us", 1 },
    { "ttft", "p99_us", "(d) time to first token p99: us", 1 },
    { "h2", "wall", ("(b') %s streams, HTTP/2 + TLS: wall s"):format(shape.h2_streams), 1 },
  }
  local f = assert(io.open(chart, "w"))
  for _, p in ipairs(PANELS) do
    f:write(string.format("# %s\n", p[3]))
    for _, cl in ipairs(CLIENTS) do
      local s = S[p[1]] and S[p[1]][cl.key]
      if cl.key ~= "base" or s then
        f:write(string.format('"%s" %.6g %s\n', cl.chart, s and s[p[2]] or 0, cl.color))
      end
    end
    f:write("\n\n")
  end
  f:close()
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
