--- Generic HTTP for the providers: request / response and request / event stream, both
-- awaitable inside tasks and blocking outside them. Built on `llm.core` transfers.
local errors = require("llm.errors")
local queue = require("llm.queue")

local HIGH_WATER = 4096   -- queued events before the transfer is paused (back-pressure)

return function(async)
  local M = {}
  local loop = async.loop

  ---------------------------------------------------------------------------------------
  -- One-shot requests.
  local Pending = { __name = "llm.http.Pending" }
  Pending.__index = Pending
  function Pending:on_record(rec)
    if rec.type == "done" then
      async.unwatch(self.t)
      self.fut:resolve(rec)
    elseif rec.type == "debug" and self.on_debug then
      self.on_debug(rec.text)
    end
  end

  --- Perform one request. spec: the fields of `loop:transfer` (url, method, headers, body,
  -- timeout, connect_timeout, ca_file, proxy, insecure, verbose). Returns
  -- `{ status, headers, body, retry_after, should_retry }`, or nil, err for a transport failure
  -- (an HTTP error status is a response, judged by the caller).
  function M.request(spec, on_debug)
    async.check_blocking("an llm request", 2)
    async.checkpoint()            -- setting up many requests in one frame spreads over steps
    local t = loop:transfer(spec)
    local p = setmetatable({ t = t, fut = async.future(), on_debug = on_debug }, Pending)
    async.watch(t, p)
    local rec, err = async.wait(p.fut, function() t:cancel() end)
    async.unwatch(t)
    t:close()
    if not rec then return nil, err end
    if rec.error then return nil, errors.from_core(rec.error) end
    return { status = rec.status, headers = rec.headers or {}, body = rec.body or "",
             retry_after = rec.retry_after, should_retry = rec.should_retry }
  end

  ---------------------------------------------------------------------------------------
  -- Event streams.
  local Stream = { __name = "llm.http.Stream" }
  Stream.__index = Stream

  function Stream:on_record(rec)
    local kind = rec.type
    if kind == "events" then
      local q = self.queue
      for _, ev in ipairs(rec.events) do q:push(ev) end
      if q:len() >= HIGH_WATER and not self.paused then
        self.paused = true
        self.t:pause(true)
      end
    elseif kind == "headers" then
      self.status, self.headers = rec.status, rec.headers
      self.retry_after, self.should_retry = rec.retry_after, rec.should_retry
    elseif kind == "done" then
      async.unwatch(self.t)
      self.done = rec
      if not self.status then
        self.status, self.headers = rec.status, rec.headers
        self.retry_after, self.should_retry = rec.retry_after, rec.should_retry
      end
    elseif kind == "debug" and self.on_debug then
      self.on_debug(rec.text)
    end
    local fut = self.fut
    if fut then
      self.fut = nil
      fut:resolve(true)
    end
  end

  local function closed_error()
    return errors.new{ kind = "cancelled", message = "stream closed", retryable = false }
  end

  -- Wait for the next record of the stream. A stream has one reader at a time (API §11):
  -- a second one while the first waits is a mistake in the caller's code.
  local function wait_change(self)
    if self.fut then error("stream already has a reader", 4) end
    local fut = async.future()
    self.fut = fut
    local ok, err = async.wait(fut, function() self.t:cancel() end)
    if self.fut == fut then self.fut = nil end
    if self.closed then return nil, closed_error() end
    if not ok then
      self.cancelled = err
      return nil, err
    end
    return true
  end

  --- Open a stream (spec as for request, plus framing, keepalive, idle_timeout,
  -- first_token_timeout, max_event_size). Returns at once; use `wait_headers`.
  function M.stream(spec, on_debug)
    async.check_blocking("an llm stream", 2)
    async.checkpoint()
    local t = loop:transfer(spec)
    local s = setmetatable({ t = t, queue = queue.new(), on_debug = on_debug }, Stream)
    async.watch(t, s)
    return s
  end

  --- Wait for the response status. Returns true, or nil, err on a transport failure.
  -- An HTTP error status is returned as `self.status` with the whole body in `self.body`.
  function Stream:wait_headers()
    while not self.status and not self.done do
      if self.closed then return nil, closed_error() end
      local ok, err = wait_change(self)
      if not ok then return nil, err end
    end
    if self.done and self.done.error and not self.status then
      return nil, errors.from_core(self.done.error)
    end
    if self.status and self.status >= 300 then
      while not self.done do     -- an error reply is read whole
        if self.closed then return nil, closed_error() end
        local ok, err = wait_change(self)
        if not ok then return nil, err end
      end
      if self.done.error then return nil, errors.from_core(self.done.error) end
      self.body = self.done.body or ""
    end
    return true
  end

  --- The next raw event { name, data, id }, or nil, done-info at the end:
  -- nil, nil when the stream ended cleanly; nil, err on a transport failure.
  function Stream:next_event()
    while true do
      if self.closed then return nil, closed_error() end
      if self.queue:len() > 0 then async.checkpoint() end   -- one event handed out
      local ev = self.queue:pop()
      if ev then
        if self.paused and self.queue:len() < HIGH_WATER // 2 then
          self.paused = false
          self.t:pause(false)
        end
        return ev
      end
      if self.done then
        if self.done.error then return nil, errors.from_core(self.done.error) end
        return nil, nil
      end
      if self.cancelled then return nil, self.cancelled end
      local ok, err = wait_change(self)
      if not ok then return nil, err end
    end
  end

  --- Cancel the transfer and free its connection now; a reader waiting on the stream (in
  -- another task) wakes and sees the end. Idempotent.
  function Stream:close()
    async.unwatch(self.t)
    self.t:close()
    self.closed = true
    local fut = self.fut
    if fut then
      self.fut = nil
      fut:resolve(true)
    end
  end
  Stream.__close = Stream.close

  M.Stream = Stream
  return M
end
