--- The pure-Lua peer: what a Lua program gets without the C core. A minimal but honest
-- HTTP/1.1 client on LuaSocket (non-blocking sockets, one coroutine per request,
-- socket.select as the loop; keep-alive connections reused; chunked and Content-Length
-- bodies), an SSE splitter, and lua-cjson decoding every event's data. Plain HTTP only
-- (LuaSocket has no TLS or HTTP/2).
--   lua5.4 bench/luapeer.lua --mode stream|small|ttft --url URL [--events N] [--delay-ms D]
--                            [--streams K] [--requests N] [--concurrency C] [--body JSON]
-- stream: K concurrent streams (fan-out with K > 1); small: N non-streaming requests, C at a
-- time; ttft: N streams one after another, time to the first text delta (p50, p99).
-- socket.select is select(2): descriptors must stay below FD_SETSIZE (1024), so K <= ~1000.
-- Prints one RESULT line (bench/common.lua).
local common = require("bench.common")
local socket = require("socket")
local cjson = require("cjson")

local a = common.args(arg)
local mode = a.mode or "stream"
local url = assert(a.url, "--url URL")
local host, port, path = url:match("^http://([^:/]+):(%d+)(/.*)$")
assert(host, "--url must be http://HOST:PORT/PATH")
port = tonumber(port)
local nev = a.events or "20"
local delay = a["delay-ms"]
local body = a.body or
  '{"messages":[{"content":"hi","role":"user"}],"model":"m","stream":true,"stream_options":{"include_usage":true}}'

local function request_bytes(streaming)
  local h = {
    "POST " .. path .. " HTTP/1.1",
    "Host: " .. host .. ":" .. port,
    "content-type: application/json",
    streaming and "accept: text/event-stream" or "accept: application/json",
    "authorization: Bearer bench",
    "content-length: " .. #body,
  }
  if streaming then
    h[#h + 1] = "x-mock-events: " .. nev
    if delay then h[#h + 1] = "x-mock-delay-ms: " .. delay end
  end
  return table.concat(h, "\r\n") .. "\r\n\r\n" .. body
end

---------------------------------------------------------------------------------------------
-- The loop: coroutines waiting on sockets, woken by socket.select.
local waiting = {}      -- socket -> coroutine
local nwaiting = 0
local recvt = {}        -- the array socket.select reads (kept in step with `waiting`)
local slot = {}         -- socket -> its index in recvt
local sendt = {}
local sendwait = {}

local function wait_readable(sock)
  waiting[sock] = coroutine.running()
  nwaiting = nwaiting + 1
  recvt[#recvt + 1] = sock
  slot[sock] = #recvt
  coroutine.yield()
end

local function unwait(sock)
  local i = slot[sock]
  local last = recvt[#recvt]
  recvt[i] = last
  slot[last] = i
  recvt[#recvt] = nil
  slot[sock] = nil
  waiting[sock] = nil
  nwaiting = nwaiting - 1
end

local function wait_writable(sock)
  sendwait[sock] = coroutine.running()
  sendt[#sendt + 1] = sock
  coroutine.yield()
end

local function run()
  while nwaiting > 0 or #sendt > 0 do
    local r, w = socket.select(recvt, sendt, 5)
    for _, sock in ipairs(w) do
      local co = sendwait[sock]
      sendwait[sock] = nil
      for i = #sendt, 1, -1 do if sendt[i] == sock then table.remove(sendt, i) end end
      assert(coroutine.resume(co))
    end
    for _, sock in ipairs(r) do
      local co = waiting[sock]
      if co then
        unwait(sock)
        local ok, err = coroutine.resume(co)
        if not ok then error(err, 0) end
      end
    end
  end
end

---------------------------------------------------------------------------------------------
-- Connections: a pool of idle keep-alive sockets.
local pool = {}
local function connect()
  local sock = table.remove(pool)
  if sock then return sock end
  sock = socket.tcp()
  sock:settimeout(0)
  sock:setoption("tcp-nodelay", true)
  local ok, err = sock:connect(host, port)
  if not ok and err ~= "timeout" and err ~= "Operation already in progress" then
    error("connect: " .. tostring(err))
  end
  if not ok then wait_writable(sock) end
  return sock
end

-- A buffered reader over a non-blocking socket.
local Conn = {}
Conn.__index = Conn
local function conn(sock) return setmetatable({ sock = sock, buf = "", pos = 1 }, Conn) end

function Conn:fill()
  while true do
    local data, err, partial = self.sock:receive(65536)
    data = data or partial
    if data and #data > 0 then
      if self.pos > #self.buf then self.buf = data
      else self.buf = self.buf:sub(self.pos) .. data end
      self.pos = 1
      return true
    end
    if err == "closed" then return false end
    wait_readable(self.sock)
  end
end

-- Bytes up to (not including) `sep`, consuming the separator.
function Conn:until_sep(sep)
  while true do
    local i = self.buf:find(sep, self.pos, true)
    if i then
      local s = self.buf:sub(self.pos, i - 1)
      self.pos = i + #sep
      return s
    end
    if not self:fill() then return nil end
  end
end

function Conn:take(n)
  while #self.buf - self.pos + 1 < n do
    if not self:fill() then return nil end
  end
  local s = self.buf:sub(self.pos, self.pos + n - 1)
  self.pos = self.pos + n
  return s
end

-- Send the request; read the status line and headers. Returns status, headers.
function Conn:exchange(bytes)
  local i = 1
  while i <= #bytes do
    local last, err, partial = self.sock:send(bytes, i)
    if last then i = last + 1
    elseif err == "timeout" then i = partial + 1; wait_writable(self.sock)
    else error("send: " .. tostring(err)) end
  end
  local head = assert(self:until_sep("\r\n\r\n"), "connection closed before the headers")
  local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  local headers = {}
  for k, v in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
  return status, headers
end

-- Read the body, calling on_data(piece) for each piece of it; false if the connection
-- cannot be reused.
function Conn:body(headers, on_data)
  if (headers["transfer-encoding"] or ""):lower():find("chunked", 1, true) then
    while true do
      local line = assert(self:until_sep("\r\n"), "closed inside a chunked body")
      local size = tonumber(line:match("^%x+"), 16)
      if size == 0 then
        repeat line = assert(self:until_sep("\r\n")) until line == ""   -- trailers
        break
      end
      on_data(assert(self:take(size), "closed inside a chunk"))
      assert(self:take(2))
    end
  else
    local len = tonumber(headers["content-length"])
    if len then on_data(assert(self:take(len), "closed inside the body")) end
  end
  return (headers["connection"] or ""):lower() ~= "close"
end

function Conn:release(reuse)
  if reuse then pool[#pool + 1] = self.sock; self.sock = nil
  else self.sock:close() end
end

---------------------------------------------------------------------------------------------
-- SSE: split on blank lines (LF), join data lines, decode each with cjson.
local decode = cjson.decode

-- One streaming request. on_text(): called at each text delta. Returns the event count.
local REQ_STREAM
local function one_stream(on_text)
  local c = conn(connect())
  local status, headers = c:exchange(REQ_STREAM)
  if status ~= 200 then error("status " .. tostring(status)) end
  local events, pending = 0, ""
  local reuse = c:body(headers, function(piece)
    local buf = pending .. piece
    local pos = 1
    while true do
      local e = buf:find("\n\n", pos, true)
      if not e then break end
      local block = buf:sub(pos, e - 1)
      pos = e + 2
      events = events + 1
      local data
      for line in block:gmatch("[^\n]+") do
        local v = line:match("^data: ?(.*)$")
        if v then data = data and (data .. "\n" .. v) or v end
      end
      if data and data ~= "[DONE]" then
        local doc = decode(data)
        local ch = doc.choices and doc.choices[1]
        local d = ch and ch.delta
        if d and type(d.content) == "string" and d.content ~= "" and on_text then on_text(d.content) end
      end
    end
    pending = buf:sub(pos)
  end)
  c:release(reuse)
  return events
end

local REQ_SMALL
local function one_small()
  local c = conn(connect())
  local status, headers = c:exchange(REQ_SMALL)
  if status ~= 200 then error("status " .. tostring(status)) end
  local text
  local reuse = c:body(headers, function(piece)
    local doc = decode(piece)
    text = doc.choices[1].message.content
  end)
  c:release(reuse)
  assert(type(text) == "string", "no text in the reply")
  return 1
end

---------------------------------------------------------------------------------------------
local count, errs, first_err = 0, 0, nil
local extra = {}
local function spawn(fn, ...)
  local co = coroutine.create(function(...)
    local ok, n = pcall(fn, ...)
    if ok then count = count + n
    else errs = errs + 1; first_err = first_err or n end
  end)
  local ok, err = coroutine.resume(co, ...)
  if not ok then error(err, 0) end
end

local t0, t1
local nstreams
if mode == "stream" then
  REQ_STREAM = request_bytes(true)
  nstreams = tonumber(a.streams) or 1
  t0 = socket.gettime()
  for _ = 1, nstreams do spawn(one_stream) end
  run()
  t1 = socket.gettime()
elseif mode == "small" then
  REQ_SMALL = request_bytes(false)
  local n = assert(tonumber(a.requests), "--requests N")
  local conc = math.min(tonumber(a.concurrency) or 64, n)
  nstreams = n
  local left = n
  local function worker()
    local done = 0
    while left > 0 do
      left = left - 1
      done = done + one_small()
    end
    return done
  end
  t0 = socket.gettime()
  for _ = 1, conc do spawn(worker) end
  run()
  t1 = socket.gettime()
  extra.requests = n
elseif mode == "ttft" then
  REQ_STREAM = request_bytes(true)
  local n = assert(tonumber(a.requests), "--requests N")
  nstreams = n
  local lat = {}
  t0 = socket.gettime()
  spawn(function()
    local total = 0
    for _ = 1, n do
      local start, first = socket.gettime(), nil
      total = total + one_stream(function() first = first or socket.gettime() end)
      if first then lat[#lat + 1] = (first - start) * 1e6 end
    end
    return total
  end)
  run()
  t1 = socket.gettime()
  table.sort(lat)
  if #lat > 0 then
    extra.p50_us = string.format("%.1f", lat[math.floor((#lat - 1) / 2) + 1])
    extra.p99_us = string.format("%.1f", lat[math.floor((#lat - 1) * 0.99) + 1])
  end
  if #lat < n then errs = errs + (n - #lat) end
  extra.requests = n
else
  error("--mode stream|small|ttft", 0)
end
if first_err then io.stderr:write("first error: ", tostring(first_err), "\n") end
common.report{ name = "luapeer-" .. mode, events = count, streams = nstreams - errs, errors = errs,
               wall = t1 - t0, extra = extra }
