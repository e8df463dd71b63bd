--- Streaming throughput: one long SSE stream from the mock server, read to the end.
--   lua5.4 bench/stream.lua --layer client|http --url BASE --events N [--body JSON]
-- `client`: llm.client("openai"):stream(...) and events() (framing + JSON decode +
-- normalization). `http`: llm.http.stream(spec) and next_event() (framing only), sending the
-- same request the client sends. Prints one RESULT line (bench/common.lua).
local common = require("bench.common")
local llm = require("llm")

local a = common.args(arg)
local layer = a.layer or "client"
local base = assert(a.url, "--url BASE (e.g. http://127.0.0.1:PORT/v1)")
local nev = assert(tonumber(a.events), "--events N")
local body = a.body or
  '{"messages":[{"content":"hi","role":"user"}],"model":"m","stream":true,"stream_options":{"include_usage":true}}'

local count, texts, errs = 0, 0, 0
local t0, t1

if layer == "client" then
  local c = llm.client("openai", { base_url = base, api_key = "bench", model = "m",
                                   headers = { ["x-mock-events"] = tostring(nev) }, max_retries = 0 })
  t0 = llm.loop:now()
  local s, err = c:stream("hi")
  if not s then
    io.stderr:write("stream failed: ", tostring(err), "\n")
    errs = 1
  else
    for ev in s:events() do
      count = count + 1
      if ev.type == "text" then texts = texts + 1
      elseif ev.type == "error" then errs = errs + 1; io.stderr:write(tostring(ev.error), "\n") end
    end
  end
  t1 = llm.loop:now()
elseif layer == "http" then
  local spec = {
    method = "POST", url = base .. "/chat/completions", body = body, framing = "sse",
    headers = { ["content-type"] = "application/json", ["accept"] = "text/event-stream",
                ["authorization"] = "Bearer bench", ["x-mock-events"] = tostring(nev) },
    timeout = 600, connect_timeout = 10, idle_timeout = 120,
  }
  t0 = llm.loop:now()
  local s = llm.http.stream(spec)
  local ok, err = s:wait_headers()
  if not ok or s.status ~= 200 then
    io.stderr:write("stream failed: ", tostring(err or s.status), "\n")
    errs = 1
  else
    while true do
      local ev, e = s:next_event()
      if not ev then
        if e then errs = errs + 1; io.stderr:write(tostring(e), "\n") end
        break
      end
      count = count + 1
      if ev.data:find('"content":"', 1, true) and not ev.data:find('"role"', 1, true) then
        texts = texts + 1
      end
    end
  end
  s:close()
  t1 = llm.loop:now()
else
  error("--layer client|http", 0)
end

common.report{ name = "stream-" .. layer, events = count, wall = t1 - t0, errors = errs,
               extra = { text_events = texts } }
