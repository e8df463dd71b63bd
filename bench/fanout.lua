--- Fan-out: many concurrent streams in one llm.run, one llm.spawn task per stream.
--   lua5.4 bench/fanout.lua --layer client|http --url BASE --streams K --events N --delay-ms D
--                           [--ca-file PEM]   (an https BASE: HTTP/2 against nghttpd)
-- Every task is spawned before the first one runs, so all K requests start together.
-- Retries are off (max_retries = 0): a failed stream counts as an error, never as a retry.
-- Prints one RESULT line (bench/common.lua).
local common = require("bench.common")
local llm = require("llm")

local a = common.args(arg)
local layer = a.layer or "client"
local base = assert(a.url, "--url BASE")
local k = assert(tonumber(a.streams), "--streams K")
local nev = assert(tonumber(a.events), "--events N")
local delay = tonumber(a["delay-ms"]) or 0
local body = a.body or
  '{"messages":[{"content":"hi","role":"user"}],"model":"m","stream":true,"stream_options":{"include_usage":true}}'
local ca_file = a["ca-file"]
local mock_headers = { ["x-mock-events"] = tostring(nev), ["x-mock-delay-ms"] = tostring(delay) }

local c = llm.client("openai", { base_url = base, api_key = "bench", model = "m", ca_file = ca_file,
                                 headers = mock_headers, max_retries = 0 })

local function one_client()
  local s, err = c:stream("hi")
  if not s then return nil, err end
  local n = 0
  for ev in s:events() do
    if ev.type == "error" then return nil, ev.error end
    n = n + 1
  end
  return n
end

local function one_http()
  local s = llm.http.stream{
    method = "POST", url = base .. "/chat/completions", body = body, framing = "sse",
    headers = { ["content-type"] = "application/json", ["accept"] = "text/event-stream",
                ["authorization"] = "Bearer bench", ["x-mock-events"] = mock_headers["x-mock-events"],
                ["x-mock-delay-ms"] = mock_headers["x-mock-delay-ms"] },
    timeout = 600, connect_timeout = 30, idle_timeout = 120, ca_file = ca_file,
  }
  local ok, err = s:wait_headers()
  if not ok or s.status ~= 200 then s:close(); return nil, err or ("status " .. tostring(s.status)) end
  local n = 0
  while true do
    local ev, e = s:next_event()
    if not ev then
      s:close()
      if e then return nil, e end
      return n
    end
    n = n + 1
  end
end

local one = layer == "http" and one_http or one_client
local total, errs, first_err = 0, 0, nil
local t0 = llm.loop:now()
llm.run(function()
  local tasks = {}
  for i = 1, k do tasks[i] = llm.spawn(one) end
  local results, errors = llm.gather(tasks)
  for i = 1, k do
    if results[i] then total = total + results[i]
    else errs = errs + 1; first_err = first_err or errors[i] end
  end
end)
local t1 = llm.loop:now()
if first_err then io.stderr:write("first error: ", tostring(first_err), "\n") end
common.report{ name = "fanout-" .. layer, events = total, streams = k - errs, errors = errs,
               wall = t1 - t0, extra = { connections = llm.loop:stats().new_connections } }
