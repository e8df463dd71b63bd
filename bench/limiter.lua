--- The limiter against a rate-limited server: the mock enforces 60 requests a second (a
-- token bucket of 3,600 requests per minute holding one second's worth) with honest
-- x-ratelimit-* headers and 429s; 2,000 calls are queued at once on one client whose
-- limiter has the same budget. Reports the throughput (against the limit) and how many
-- requests the server answered 429 (each went to the retry policy and was retried).
--   lua5.4 bench/limiter.lua [--requests 2000] [--rps 60]
-- Needs llm/core.so and llm-mock (LUA_CPATH / LLM_MOCK_BIN as bench/run.sh sets them).
local common = require("bench.common")
local llm = require("llm")
local mockmod = require("llm.mock")

local a = common.args(arg)
local N = tonumber(a.requests) or 2000
local RPS = tonumber(a.rps) or 60

local m = assert(mockmod.start())
m:limits{ rpm = RPS * 60, burst = RPS }
local lim = llm.limiter{ rpm = RPS * 60 }
local c = m:client("openai", { limiter = lim, max_retries = 3 })

local failed = 0
local t0 = llm.loop:now()
llm.run(function()
  local tasks = {}
  for i = 1, N do
    tasks[i] = llm.spawn(function()
      local r, err = c:chat{ messages = { { role = "user", content = "label " .. i } }, max_tokens = 16 }
      if not r then failed = failed + 1; io.stderr:write("bench limiter: ", tostring(err), "\n") end
      return r
    end)
  end
  llm.gather(tasks)
end)
local wall = llm.loop:now() - t0
local st = m:stats()
-- The server's own clock: when the first and the last request arrived.
local log = assert(llm.json.decode(assert(c:request("GET", m.url .. "/__mock/requests", nil, { raw = true }))))
local sent = #log
m:stop()

-- Throughput as the server saw it: the requests it admitted per second between the first
-- arrival and the last (the whole run, task set-up included, is printed too).
local span = log[#log].t - log[1].t
local rps = (N - 1) / span
local ratio = rps / RPS
local ok = st.rate_limited <= 5 and math.abs(ratio - 1) <= 0.10 and failed == 0
print(string.format("limiter: %d queued calls, server limit %d requests/s (rpm %d, burst %d)", N, RPS, RPS * 60, RPS))
print(string.format("  at the server: %d requests in %.2f s, %.1f requests/s = %.1f %% of the limit"
  .. " (target: within 10 %%)", sent, span, rps, ratio * 100))
print(string.format("  whole run (%d tasks set up, then paced): %.2f s, %.1f calls/s", N, wall, N / wall))
print(string.format("  answered 429: %d (target: <= 5); requests sent %d; calls failed %d; waited %.0f s in total",
  st.rate_limited, sent, failed, lim:stats().waited))
print(string.format("  %s", ok and "PASS" or "FAIL"))
common.report{ name = "limiter", events = N, wall = wall, errors = failed,
               extra = { rate_limited = st.rate_limited, rps = string.format("%.2f", rps) } }
