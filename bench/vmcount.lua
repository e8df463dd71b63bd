--- Lua VM instructions per stream event through the client's public API, counted with a
-- count hook (every instruction of every coroutine): a figure that does not move with the
-- machine's load, for before/after comparisons of Lua changes (bench/NOTES.md).
--   lua5.4 bench/vmcount.lua --url BASE --streams K --events N --delay-ms D
-- K streams of N deltas, D ms apart, each read by its own task; the second of two runs is
-- counted (the first loads modules and opens connections). With the delay, each event
-- arrives in a step of its own (K = 1) or with the others due at the same time (K large):
-- the two shapes of cases (b) and (d). Against the mock server only (x-mock-* headers).
local common = require("bench.common")
local llm = require("llm")

local a = common.args(arg)
local base = assert(a.url, "--url BASE")
local k = assert(tonumber(a.streams), "--streams K")
local nev = assert(tonumber(a.events), "--events N")
local delay = tonumber(a["delay-ms"]) or 0

local c = llm.client("openai", { base_url = base, api_key = "bench", model = "m", max_retries = 0,
  headers = { ["x-mock-events"] = tostring(nev), ["x-mock-delay-ms"] = tostring(delay) } })

local count, counting = 0, false
local function hook() count = count + 1 end
local create = coroutine.create
coroutine.create = function(f)   -- luacheck: ignore 122 (tasks are coroutines: each gets the hook too)
  local co = create(f)
  if counting then debug.sethook(co, hook, "", 1) end
  return co
end

local function run()
  local events = 0
  llm.run(function()
    local tasks = {}
    for i = 1, k do
      tasks[i] = llm.spawn(function()
        local s = assert(c:stream("hi"))
        local n = 0
        for _ in s:events() do n = n + 1 end
        return n
      end)
    end
    for _, n in ipairs((llm.gather(tasks))) do events = events + n end
  end)
  return events
end

run()
counting = true
debug.sethook(hook, "", 1)
local events = run()
debug.sethook()
counting = false
print(string.format("RESULT name=vmcount streams=%d events=%d vm_instructions=%d per_event=%.0f",
  k, events, count, count / events))
