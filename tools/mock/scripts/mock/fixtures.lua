-- Replays recorded transcripts from the fixtures directory.
local json = require "mock.json"

local M = {}

local DROP = { ["content-encoding"] = true, ["content-length"] = true,
               ["transfer-encoding"] = true, ["connection"] = true }

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Splits an SSE body after each blank line, keeping every byte, so delays and faults can
-- act per event while the concatenation stays equal to the file.
function M.split_events(body)
  local out, pos = {}, 1
  while pos <= #body do
    local a = body:find("\n\n", pos, true)
    local b = body:find("\r\n\r\n", pos, true)
    local e = a and a + 1
    if b and (not e or b + 3 < e) then e = b + 3 end
    if not e then out[#out + 1] = body:sub(pos); break end
    out[#out + 1] = body:sub(pos, e)
    pos = e + 1
  end
  return out
end

-- spec is "<provider>/<name>". Returns a reply table or nil, message.
function M.load(dir, spec)
  if not spec:match("^[%w_%-]+/[%w_%-%.]+$") or spec:find("..", 1, true) then
    return nil, "bad fixture name: " .. spec
  end
  local base = dir .. "/" .. spec
  local kind, body = "sse", read(base .. ".sse")
  if not body then kind, body = "json", read(base .. ".json") end
  if not body then return nil, "no fixture " .. spec .. " (.sse or .json) in " .. dir end
  local r = { stream = kind == "sse", status = 200 }
  local hj = read(base .. ".headers.json")
  local rec = hj and json.decode(hj)
  if rec then
    r.status = math.tointeger(rec.status) or 200
    if type(rec.reason) == "string" then r.reason = rec.reason end
    r.headers = {}
    for _, h in ipairs(rec.headers or {}) do
      if not DROP[h[1]:lower()] then r.headers[#r.headers + 1] = { h[1], h[2] } end
    end
  else
    local ex = json.decode(read(base .. ".expect.json") or "") or {}
    if kind == "json" and math.tointeger(ex.http_status) then r.status = math.tointeger(ex.http_status) end
    r.headers = { { "content-type", kind == "sse" and "text/event-stream" or "application/json" } }
  end
  if r.stream then
    r.events = M.split_events(body)
    r.terminal = 1
  else
    r.body = body
  end
  return r
end

return M
