--- The frame scenario: many live streams driven by a game's 60 Hz frame loop. This is a
-- game script for the C host (examples/host/host.c), which owns the frame loop, calls
-- llm.step(0) once per frame and times it:
--   build/llm-host --quiet bench/frame.lua BASE_URL STREAMS EVENTS DELAY_MS
-- In frame 0 it spawns STREAMS tasks; each streams EVENTS text deltas DELAY_MS apart from
-- the mock server through the full client (JSON decoding, normalization) and counts them.
-- The game ends when every task has finished; the result fails unless every stream
-- delivered all its text deltas and a final response.
local llm = require("llm")

local game = {}
local base, nstreams, nevents, delay
local texts, finished, failures, first_err = {}, 0, 0, nil

local function one(i)
  return function(client)
    local s, err = client:stream("hi")
    if not s then return nil, err end
    for ev in s:events() do
      if ev.type == "text" then texts[i] = texts[i] + 1
      elseif ev.type == "error" then return nil, ev.error end
    end
    return s:final()
  end
end

function game.start(args)
  base = assert(args[1], "BASE_URL")
  nstreams = tonumber(args[2]) or 100
  nevents = tonumber(args[3]) or 300
  delay = tonumber(args[4]) or 20
  local client = llm.client("openai", {
    base_url = base, api_key = "bench", model = "m", max_retries = 0,
    headers = { ["x-mock-events"] = tostring(nevents), ["x-mock-delay-ms"] = tostring(delay) },
  })
  for i = 1, nstreams do
    texts[i] = 0
    local run = one(i)
    llm.spawn(function()
      local resp, err = run(client)
      finished = finished + 1
      if not resp then
        failures = failures + 1
        first_err = first_err or err
      end
    end)
  end
end

function game.update()
  return finished == nstreams
end

function game.result()
  local short = 0
  for i = 1, nstreams do if texts[i] ~= nevents then short = short + 1 end end
  if failures > 0 then
    return false, string.format("%d of %d streams failed; first: %s", failures, nstreams, tostring(first_err))
  end
  if short > 0 then
    return false, string.format("%d of %d streams did not deliver %d text deltas", short, nstreams, nevents)
  end
  -- The loop's own counters, where the library has them: how often a step stopped at its
  -- budget and left work for the next one, and the most units of work one step did.
  local extra
  local stats = llm.loop_stats and llm.loop_stats()
  if stats then
    extra = string.format("llm_steps=%d deferred_steps=%d max_units=%d",
      stats.steps or 0, stats.deferred_steps or 0, stats.max_units or 0)
  end
  return true, string.format("frame: %d streams x %d text deltas, all delivered", nstreams, nevents), extra
end

return game
