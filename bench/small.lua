--- Request rate: N small non-streaming requests, C at a time, in one llm.run.
--   lua5.4 bench/small.lua --layer client|http --url BASE --requests N [--concurrency C]
--                          [--body JSON]
-- `client`: llm.client("openai"):chat("hi") (request building, JSON encode and decode,
-- normalization); `http`: llm.http.request(spec) with the same request, body not decoded.
-- C tasks (llm.spawn) each take requests until none is left. Retries are off: a failed
-- request counts as an error. Prints one RESULT line (bench/common.lua).
local common = require("bench.common")
local llm = require("llm")

local a = common.args(arg)
local layer = a.layer or "client"
local base = assert(a.url, "--url BASE")
local n = assert(tonumber(a.requests), "--requests N")
local conc = math.min(tonumber(a.concurrency) or 64, n)
local body = a.body or '{"messages":[{"content":"hi","role":"user"}],"model":"m"}'

local c = llm.client("openai", { base_url = base, api_key = "bench", model = "m", max_retries = 0 })
local spec = {
  method = "POST", url = base .. "/chat/completions", body = body,
  headers = { ["content-type"] = "application/json", ["accept"] = "application/json",
              ["authorization"] = "Bearer bench" },
  timeout = 60, connect_timeout = 30,
}

local function one_client()
  local r, err = c:chat("hi")
  if not r then return nil, err end
  if type(r.text) ~= "string" then return nil, "no text" end
  return true
end

local function one_http()
  local r, err = llm.http.request(spec)
  if not r then return nil, err end
  if r.status ~= 200 then return nil, "status " .. tostring(r.status) end
  return true
end

local one = layer == "http" and one_http or one_client
local left, done, errs, first_err = n, 0, 0, nil
local function worker()
  while left > 0 do
    left = left - 1
    local ok, err = one()
    if ok then done = done + 1 else errs = errs + 1; first_err = first_err or err end
  end
end

local t0 = llm.loop:now()
llm.run(function()
  local tasks = {}
  for i = 1, conc do tasks[i] = llm.spawn(worker) end
  llm.gather(tasks)
end)
local t1 = llm.loop:now()
if first_err then io.stderr:write("first error: ", tostring(first_err), "\n") end
common.report{ name = "small-" .. layer, events = done, streams = n - errs, errors = errs,
               wall = t1 - t0, extra = { requests = n } }
