--- Time to first token: N short streams one after another; for each, the time from the
-- call to the first text delta in the caller's hands.
--   lua5.4 bench/ttft.lua --layer client|http --url BASE --requests N --events E [--body JSON]
-- `client`: llm.client("openai"):stream("hi") and events() until the first text event (the
-- stream is then read to its end, outside the timing); `http`: llm.http.stream(spec) and
-- next_event() until the first event holding a text delta. Reports p50 and p99 in µs.
-- Prints one RESULT line (bench/common.lua).
local common = require("bench.common")
local llm = require("llm")

local a = common.args(arg)
local layer = a.layer or "client"
local base = assert(a.url, "--url BASE")
local n = assert(tonumber(a.requests), "--requests N")
local nev = tostring(assert(tonumber(a.events), "--events E"))
local body = a.body or
  '{"messages":[{"content":"hi","role":"user"}],"model":"m","stream":true,"stream_options":{"include_usage":true}}'

local c = llm.client("openai", { base_url = base, api_key = "bench", model = "m",
                                 headers = { ["x-mock-events"] = nev }, max_retries = 0 })
local spec = {
  method = "POST", url = base .. "/chat/completions", body = body, framing = "sse",
  headers = { ["content-type"] = "application/json", ["accept"] = "text/event-stream",
              ["authorization"] = "Bearer bench", ["x-mock-events"] = nev },
  timeout = 60, connect_timeout = 10, idle_timeout = 60,
}
local now = function() return llm.loop:now() end

-- One stream: seconds to the first text delta (nil if none), events read.
local function one_client()
  local t0 = now()
  local s, err = c:stream("hi")
  if not s then return nil, 0, err end
  local first, count = nil, 0
  for ev in s:events() do
    if not first and ev.type == "text" then first = now() - t0 end
    if ev.type == "error" then return nil, count, ev.error end
    count = count + 1
  end
  return first, count
end

local function one_http()
  local t0 = now()
  local s = llm.http.stream(spec)
  local ok, err = s:wait_headers()
  if not ok or s.status ~= 200 then s:close(); return nil, 0, err end
  local first, count = nil, 0
  while true do
    local ev, e = s:next_event()
    if not ev then s:close(); if e then return nil, count, e end break end
    if not first and ev.data:find('"delta":{"content":"', 1, true) then first = now() - t0 end
    count = count + 1
  end
  return first, count
end

local one = layer == "http" and one_http or one_client
local lat, total, errs, first_err = {}, 0, 0, nil
local t0 = now()
for _ = 1, n do
  local first, count, err = one()
  total = total + count
  if first then lat[#lat + 1] = first * 1e6 else errs = errs + 1; first_err = first_err or err end
end
local t1 = now()
table.sort(lat)
local extra = { requests = n }
if #lat > 0 then
  extra.p50_us = string.format("%.1f", lat[math.floor((#lat - 1) / 2) + 1])
  extra.p99_us = string.format("%.1f", lat[math.floor((#lat - 1) * 0.99) + 1])
end
if first_err then io.stderr:write("first error: ", tostring(first_err), "\n") end
common.report{ name = "ttft-" .. layer, events = total, streams = n - errs, errors = errs,
               wall = t1 - t0, extra = extra }
