--- Generic HTTP for the providers: request / response and request / event stream, both
-- awaitable inside tasks and blocking outside them. Built on `llm.core` transfers.
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local errors = require("llm.errors")
local queue = require("llm.queue")

local HIGH_WATER = 4096   -- queued events before the transfer is paused (back-pressure)
local LOW_WATER = 2048    -- ... and resumed

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
  -- Event streams. Raw events are queued here, or handed as each batch arrives to a sink
  -- (`set_sink`), which decodes them at once: what is content is known only after decoding,
  -- and the transfer's clocks must hear of it when it arrives, not when a consumer reads it.
  local Stream = { __name = "llm.http.Stream" }
  Stream.__index = Stream

  function Stream:on_record(rec)
    local kind = rec.type
    if kind == "events" then
      if self.sink then
        self.sink:on_events(rec)
      else
        local n = rec.n
        if n > 0 then
          self.queue:push(rec)   -- the core's batch as it is: an event's table is made when read
          n = self.nqueued + n
          self.nqueued = n
          if n >= HIGH_WATER then self:pause(true) end
        end
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
      if self.sink then self.sink:on_end(rec) end
    elseif kind == "debug" and self.on_debug then
      self.on_debug(rec.text)
    end
    self:wake()
  end

  --- Wake the reader waiting on this stream (a record arrived, or the stream was closed).
  ---@private
  function Stream:wake()
    local fut = self.fut
    if fut then
      self.fut = nil
      fut:resolve(true)
    end
  end

  local function closed_error()
    return errors.new{ kind = "cancelled", message = "stream closed", retryable = false }
  end

  --- Wait for the next record of the stream: true, or nil, err when the stream was closed
  -- or the waiting task cancelled (which cancels the transfer). A stream has one reader at
  -- a time (API §11): a second one while the first waits is a mistake in the caller's code.
  ---@private
  function Stream:wait()
    if self.closed then return nil, closed_error() end
    if self.fut then error("stream already has a reader", 4) end
    local fut = self.settled_fut   -- one future for every wait that ended settled
    if fut then
      self.settled_fut = nil
      fut:rearm()
    else
      fut = async.future()
    end
    self.fut = fut
    local cancel = self.cancel_transfer
    if not cancel then
      cancel = function() self.t:cancel() end   -- one per stream, not one per wait
      self.cancel_transfer = cancel
    end
    local ok, err = async.wait(fut, cancel)
    if self.fut == fut then self.fut = nil end
    if fut.done then self.settled_fut = fut end
    if self.closed then return nil, closed_error() end
    if not ok then
      self.cancelled = err
      return nil, err
    end
    return true
  end

  --- Stop (true) or resume (false) reading; the idle clock stops while paused.
  ---@private
  function Stream:pause(on)
    on = on and true or false
    if self.paused ~= on and not self.closed then
      self.paused = on
      self.t:pause(on)
    end
  end

  --- From now on hand each batch of raw events to `sink:on_events(batch)` and the end of
  -- the transfer to `sink:on_end(done_record)`; events queued so far go to it first, in the
  -- batches they came in. A batch is `{ n = count, data1, ..., datan, names = { [i] = name }?,
  -- ids = { [i] = id }? }`, as the core reports it (no table per event).
  ---@private
  function Stream:set_sink(sink)
    self.sink = sink
    local q = self.queue
    if self.pos > 0 then           -- the oldest batch was partly read: the rest of it
      local rec, batch, n = q:pop(), {}, 0
      local names, ids = rec.names, rec.ids
      for i = self.pos + 1, rec.n do
        n = n + 1
        batch[n] = rec[i]
        if names and names[i] then batch.names = batch.names or {}; batch.names[n] = names[i] end
        if ids and ids[i] then batch.ids = batch.ids or {}; batch.ids[n] = ids[i] end
      end
      batch.n = n
      self.pos = 0
      sink:on_events(batch)
    end
    while q:len() > 0 do sink:on_events(q:pop()) end
    self.nqueued = 0
    if self.done and not self.closed then sink:on_end(self.done) end
  end

  --- Open a stream (spec as for request, plus framing, idle_timeout, first_token_timeout,
  -- max_event_size). Returns at once; use `wait_headers`. Nothing counts as content for
  -- the transfer's clocks until its owner says so with `t:content()`.
  function M.stream(spec, on_debug)
    async.check_blocking("an llm stream", 2)
    async.checkpoint()
    local t = loop:transfer(spec)
    local s = setmetatable({ t = t, queue = queue.new(), nqueued = 0, pos = 0, on_debug = on_debug }, Stream)
    async.watch(t, s)
    return s
  end

  --- Wait for the response status. Returns true, or nil, err on a transport failure.
  -- An HTTP error status is returned as `self.status` with the whole body in `self.body`.
  function Stream:wait_headers()
    while not self.status and not self.done do
      if self.closed then return nil, closed_error() end
      local ok, err = self:wait()
      if not ok then return nil, err end
    end
    if self.done and self.done.error and not self.status then
      return nil, errors.from_core(self.done.error)
    end
    if self.status and self.status >= 300 then
      while not self.done do     -- an error reply is read whole
        if self.closed then return nil, closed_error() end
        local ok, err = self:wait()
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
      if self.nqueued > 0 then async.checkpoint() end   -- one event handed out
      if self.nqueued > 0 then
        -- The queue holds the core's batches; `pos` events of the oldest are already out.
        local q = self.queue
        local rec, i = q:peek(), self.pos + 1
        local names, ids = rec.names, rec.ids
        local ev = { name = names and names[i], data = rec[i], id = ids and ids[i] }
        if i >= rec.n then q:pop(); self.pos = 0 else self.pos = i end
        local n = self.nqueued - 1
        self.nqueued = n
        if self.paused and n < LOW_WATER then self:pause(false) end
        return ev
      end
      if self.done then
        if self.done.error then return nil, errors.from_core(self.done.error) end
        return nil, nil
      end
      if self.cancelled then return nil, self.cancelled end
      local ok, err = self:wait()
      if not ok then return nil, err end
    end
  end

  --- Cancel the transfer and free its connection now (libcurl closes a connection whose
  -- response was not read to its end, so it is never reused half-read); a reader waiting on
  -- the stream (in another task) wakes and sees the end. Idempotent.
  function Stream:close()
    if self.closed then return end
    self.closed = true
    async.unwatch(self.t)
    self.t:close()
    self:wake()
  end
  Stream.__close = Stream.close

  M.Stream = Stream
  return M
end
