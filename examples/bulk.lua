-- Label many short texts (10,000 by default) under a rate limiter, with a progress line.
--   lua5.4 examples/bulk.lua [--count N] [--rpm N]      (LLM_BULK_COUNT also sets N)
--   lua5.4 examples/bulk.lua --batch [--count N]        as one batch job (docs/batch.md)
-- Offline (no key, or LLM_MOCK_URL set) the mock server enforces a rate limit with honest
-- headers and 429s, and labels each text by its words; the limiter keeps the calls within
-- the limit, so the server answers no 429. With OPENAI_API_KEY set it labels through the
-- real API at the --rpm you give it (default 500). The ways to run the work are the table
-- MODES; `online` sends one chat call per text, `batch` (--batch) sends them all as one job
-- to the provider's batch engine, which has no rate limit to pace and answers within 24
-- hours at a lower price.
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")
local llm = common.llm

local function option(name, default)
  for i = 1, #arg - 1 do
    if arg[i] == "--" .. name then return arg[i + 1] end
  end
  return default
end

local offline = common.offline("openai")
local COUNT = tonumber(option("count", os.getenv("LLM_BULK_COUNT") or "10000"))
-- Offline, the mock allows 60,000 requests a minute (1,000 a second, one second's burst).
local RPM = tonumber(option("rpm", offline and "60000" or "500"))

-- The texts: short product reviews.
local WORDS = { "great", "bad", "fine", "love", "broken", "ok", "awful", "happy", "late", "cheap" }
local texts = {}
for i = 1, COUNT do
  texts[i] = string.format("Review %d: the delivery was %s and the box %s.", i,
    WORDS[(i * 7) % #WORDS + 1], WORDS[(i * 3) % #WORDS + 1])
end

local limiter = llm.limiter{ rpm = RPM, concurrency = 64 }
local client = common.client("openai", { limiter = limiter, max_retries = 4 },
  { ["x-mock-script"] = "label", ["x-mock-key"] = "bulk" })

-- The mock's control endpoints, through a client of its own (no limiter).
local control = offline and common.client("openai") or nil
local function mock_call(method, path, body)
  return control:request(method, common.mock_url() .. path, body)
end

local SYSTEM = "Label the sentiment of the review: positive, negative or neutral. One word."

-- A progress line, rewritten in place at most ten times a second.
local done, failed, started = 0, 0, llm.loop:now()
local last_shown = -1
local function progress(final)
  local now = llm.loop:now()
  if not final and now - last_shown < 0.1 then return end
  last_shown = now
  local st = limiter:stats()
  io.stderr:write(string.format("\r%6d/%d labelled  %5.1f%%  %6.0f/s  queued %d  in flight %d  failed %d",
    done, COUNT, 100 * done / COUNT, done / math.max(now - started, 1e-6), st.queued, st.in_flight, failed))
  if final then io.stderr:write("\n") end
end

local MODES = {}

--- One chat call per text, all queued at once; the limiter paces them.
function MODES.online(list)
  local labels = {}
  llm.run(function()
    local tasks = {}
    for i, text in ipairs(list) do
      tasks[i] = llm.spawn(function()
        local resp, err = client:chat{ system = SYSTEM, messages = { { role = "user", content = text } },
                                       max_tokens = 3 }
        if resp then labels[i] = resp.text:lower():match("%a+") or "?" else failed = failed + 1; labels[i] = err end
        done = done + 1
        progress(false)
      end)
    end
    llm.gather(tasks)
  end)
  progress(true)
  return labels
end

-- The states in which a batch job has ended.
local ENDED = { completed = true, failed = true, expired = true, cancelled = true }

--- One batch job for every text: uploaded at once, run by the provider, polled until it
-- ends (every 60 s against the real API; the mock moves one state per poll).
function MODES.batch(list)
  local requests = {}
  for i, text in ipairs(list) do
    requests[i] = { system = SYSTEM, messages = { { role = "user", content = text } }, max_tokens = 3 }
  end
  local poll = offline and 0.05 or 60
  local job = assert(client:batch(requests, { poll_interval = poll }))
  local state = job.state
  while true do
    local c = job.counts
    io.stderr:write(string.format("\rbatch %s  %-11s %6d/%d done  failed %d", job.id, state, c.completed,
      #list, c.failed))
    if ENDED[state] then break end
    llm.sleep(poll)
    state = assert(job:status())
  end
  io.stderr:write("\n")
  local results = assert(job:results())
  local labels = {}
  for i, r in ipairs(results) do   -- results[i] belongs to list[i]
    if r.response then labels[i] = r.response.text:lower():match("%a+") or "?"
    else failed = failed + 1; labels[i] = r.error end
    done = done + 1
  end
  print(string.format("batch %s %s: %d results", job.id, state, #results))
  return labels
end

local mode = "online"
for _, a in ipairs(arg) do if a == "--batch" then mode = "batch" end end
if offline then assert(mock_call("POST", "/__mock/limits", { rpm = RPM, burst = math.max(1, RPM / 60) })) end
local ok, labels = pcall(MODES[mode], texts)
local stats = offline and mock_call("GET", "/__mock/stats") or nil
if offline then mock_call("POST", "/__mock/limits", llm.json.object{}) end   -- limits off again
if not ok then error(labels, 0) end

local tally = {}
for _, l in ipairs(labels) do
  local k = type(l) == "string" and l or "error"
  tally[k] = (tally[k] or 0) + 1
end
local wall = llm.loop:now() - started
print(string.format("%d texts labelled in %.1f s (%s mode, limit %d requests/minute)", COUNT, wall, mode, RPM))
for _, k in ipairs{ "positive", "negative", "neutral", "error" } do
  if tally[k] then print(string.format("  %-9s %6d", k, tally[k])) end
end
print(string.format("limiter: waited %.0f s in total; calls failed: %d%s", limiter:stats().waited, failed,
  stats and string.format("; the server answered 429 to %d", stats.rate_limited) or ""))
