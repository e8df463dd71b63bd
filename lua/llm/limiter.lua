--- Rate limits on the client side (API §13): `llm.limiter{ rpm, tpm, concurrency }`.
-- A limiter hands out slots. A call takes one before each attempt (waiting, by priority then
-- first come first served, until every budget allows it) and gives it back with the
-- response's status, headers and usage, from which the limiter corrects itself.
--
-- Budgets are token buckets that refill continuously: `rpm / 60` requests and `tpm / 60`
-- tokens a second. A bucket holds at most a tenth of a second's worth (at least one request;
-- a request costing more tokens than that goes once the bucket is full and leaves it in
-- debt), so queued requests are spread evenly rather than sent in bursts.
-- @module llm.limiter
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local compat = require("llm.compat")

local M = {}

local EPS = 1e-9
local POLL = 0.25   -- seconds between checks for collected streams, while blocked on them

---------------------------------------------------------------------------------------
-- Header values

local UNITS = { h = 3600, m = 60, s = 1, ms = 1e-3, us = 1e-6, ["\194\181s"] = 1e-6,
                ["\206\188s"] = 1e-6, ns = 1e-9 }

--- Seconds in a Go duration (`6m0s`, `120ms`, `1h2m3.5s`, `0s`); a bare number is seconds.
-- Returns nil for anything else.
---@param s string|nil
---@return number|nil seconds
function M.parse_duration(s)
  if type(s) ~= "string" then return nil end
  s = s:match("^%s*(.-)%s*$")
  if s:match("^%d+%.?%d*$") then return tonumber(s) end
  if s == "" then return nil end
  local total, pos = 0, 1
  while pos <= #s do
    local a, b, num, unit = s:find("^(%d*%.?%d+)([^%d%.]+)", pos)
    if not a then return nil end
    local f = UNITS[unit]
    if not f or not tonumber(num) then return nil end
    total = total + tonumber(num) * f
    pos = b + 1
  end
  return total
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Seconds since the Unix epoch of an RFC 3339 timestamp (`2026-12-06T01:02:03Z`,
-- `...T01:02:03.5+01:00`); nil for anything else.
---@param s string|nil
---@return number|nil epoch
function M.parse_rfc3339(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, tz = s:match("^%s*(%d%d%d%d)-(%d%d)-(%d%d)[Tt ](%d%d):(%d%d):(%d%d%.?%d*)(.-)%s*$")
  if not y then return nil end
  local off = 0
  if tz ~= "Z" and tz ~= "z" then
    local sign, oh, om = tz:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    off = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  end
  return days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400
    + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec) - off
end

---------------------------------------------------------------------------------------

local OPTIONS = { rpm = true, tpm = true, concurrency = true }

-- Higher priority first, then first come first served.
local function before(a, b)
  if a.priority ~= b.priority then return a.priority > b.priority end
  return a.seq < b.seq
end

local clockmod = require("llm.clock")
local function heap_push(h, x) clockmod.heap_push(h, x, before) end
local function heap_pop(h) return clockmod.heap_pop(h, before) end

local function bucket(per_minute, now)
  local rate = per_minute / 60
  local cap = math.max(1, rate / 10)
  return { rate = rate, cap = cap, level = cap, t = now }
end

local function refill(b, now)
  if now > b.t then
    b.level = math.min(b.cap, b.level + b.rate * (now - b.t))
    b.t = now
  end
end

--- The limiter factory of one `llm` instance: `require("llm.limiter").bind(async)`.
---@private
---@param async table the instance's scheduler
---@return table
function M.bind(async)
  local clock = async.clock
  local errors = require("llm.errors")
  local L = {}

  ---@class llm.Limiter
  local Limiter = { __name = "llm.Limiter" }
  Limiter.__index = Limiter
  L.Limiter = Limiter

  ---@class llm.LimiterSlot
  local Slot = { __name = "llm.LimiterSlot" }
  Slot.__index = Slot

  -- Wall-clock seconds since the epoch (Anthropic's resets are timestamps).
  local function wall()
    if clock.wall then return clock:wall() end
    return os and os.time and os.time() or 0
  end

  --- A limiter: `llm.limiter{ rpm = 500, tpm = 200000, concurrency = 32 }` (any of the three,
  -- or none: it still obeys the providers' rate-limit headers). Clients share it through
  -- their `limiter` option; a request's `priority` (default 0, higher first) orders the queue.
  ---@param opts? { rpm?: number, tpm?: number, concurrency?: integer } requests and tokens per minute, calls at once
  ---@return llm.Limiter
  function L.new(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("llm.limiter expects a table { rpm, tpm, concurrency }", 2) end
    for k, v in each(opts) do
      if not OPTIONS[k] then
        local s = require("llm.validate").suggest(k, OPTIONS)
        error(string.format("llm.limiter: unknown option %s%s", tostring(k),
          s and string.format(" (did you mean '%s'?)", s) or ""), 2)
      end
      if type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge then
        error(string.format("llm.limiter: %s must be a positive number, got %s", k, tostring(v)), 2)
      end
    end
    if opts.concurrency and opts.concurrency % 1 ~= 0 then
      error("llm.limiter: concurrency must be an integer, got " .. tostring(opts.concurrency), 2)
    end
    local now = clock:now()
    return setmetatable({
      rpm = opts.rpm, tpm = opts.tpm, concurrency = opts.concurrency,
      req = opts.rpm and bucket(opts.rpm, now), tok = opts.tpm and bucket(opts.tpm, now),
      gate = { requests = -math.huge, tokens = -math.huge },
      heap = {}, seq = 0, queued = 0, in_flight = 0, waited = 0,
      granted = 0, tokens_granted = 0, held_by_streams = 0, collected = {}, unresumed = 0,
      async = async,
    }, Limiter)
  end

  function L.is(x) return getmetatable(x) == Limiter end

  --- A short description: its budgets.
  ---@return string
  function Limiter:__tostring()
    return string.format("llm.Limiter(rpm=%s, tpm=%s, concurrency=%s)", tostring(self.rpm),
      tostring(self.tpm), tostring(self.concurrency))
  end

  --- Counters: `queued` (calls waiting), `in_flight` (slots held), `waited` (seconds all calls
  -- spent waiting, summed).
  ---@return { queued: integer, in_flight: integer, waited: number }
  function Limiter:stats()
    self:reap()
    return { queued = self.queued, in_flight = self.in_flight, waited = self.waited }
  end

  --- Seconds until queue entry `e` may go: 0 now, math.huge while only a release can free it.
  ---@private
  ---@param e table the queue entry (cost)
  ---@param now number the clock's time
  ---@return number seconds
  function Limiter:blocked_for(e, now)
    local w = 0
    if self.concurrency and self.in_flight >= self.concurrency then w = math.huge end
    -- Calls given a slot but not yet resumed (their tasks wait behind others in the
    -- scheduler) would leave together later: no more than a bucket's worth of them.
    if self.req and self.unresumed >= self.req.cap then w = math.huge end
    local g = math.max(self.gate.requests, self.gate.tokens)
    if g > now then w = math.max(w, g - now) end
    local b = self.req
    if b and b.level < 1 - EPS then w = math.max(w, (1 - b.level) / b.rate) end
    b = self.tok
    if b then
      local need = math.min(e.cost, b.cap)
      if b.level < need - EPS then w = math.max(w, (need - b.level) / b.rate) end
    end
    return w
  end

  --- Give queue entry `e` its slot and charge the budgets.
  ---@private
  ---@param e table the queue entry
  ---@param now number the clock's time
  function Limiter:grant(e, now)
    self.in_flight = self.in_flight + 1
    if self.req then self.req.level = self.req.level - 1 end
    if self.tok then self.tok.level = self.tok.level - e.cost end
    self.granted = self.granted + 1
    self.tokens_granted = self.tokens_granted + e.cost
    self.waited = self.waited + (now - e.at)
    e.slot = setmetatable({ lim = self, cost = e.cost, grant_no = self.granted,
                            tokens_no = self.tokens_granted, at = now }, Slot)
    if e.fut then
      self.unresumed = self.unresumed + 1
      e.fut:resolve(e.slot)
    end
  end

  --- Run `pump` again in `delay` seconds (one timer at a time, the earliest wanted).
  ---@private
  ---@param delay number seconds
  function Limiter:schedule(delay)
    local now = clock:now()
    local at = now + delay
    if self.timer then
      if self.timer_at <= at + EPS then return end
      clock:cancel(self.timer)
    end
    self.timer_at = at
    self.timer = clock:timer(delay, function()
      self.timer = nil
      self:pump()
    end)
  end

  --- Slots whose stream was collected without being closed go back (their guards' finalizers
  -- only record them: a finalizer may run anywhere, so it changes nothing else).
  ---@private
  function Limiter:reap()
    local c = self.collected
    if #c == 0 then return end
    self.collected = {}
    for _, slot in ipairs(c) do slot:release() end
  end

  --- Hand out slots to the queue's head while the budgets allow; otherwise set a timer for
  -- when they will.
  ---@private
  function Limiter:pump()
    self:reap()
    local now = clock:now()
    if self.req then refill(self.req, now) end
    if self.tok then refill(self.tok, now) end
    local h = self.heap
    while h[1] do
      local e = h[1]
      if e.cancelled then
        heap_pop(h)
      else
        local w = self:blocked_for(e, now)
        if w > 0 then
          if w < math.huge then self:schedule(w)
          elseif self.held_by_streams > 0 then self:schedule(POLL) end
          return
        end
        heap_pop(h)
        self.queued = self.queued - 1
        self:grant(e, now)
      end
    end
    if self.timer then   -- nobody waits: no timer left behind to wake a host for nothing
      clock:cancel(self.timer)
      self.timer = nil
    end
  end

  --- Wait for a slot for a call estimated at `cost` tokens. Yields inside a task, blocks
  -- outside one. Returns the slot, or nil, err when the waiting task is cancelled.
  ---@private
  ---@param cost number estimated tokens
  ---@param priority? number higher goes first (0)
  ---@return llm.LimiterSlot? slot
  ---@return llm.Error? err
  function Limiter:acquire(cost, priority)
    self.seq = self.seq + 1
    local e = { cost = cost or 0, priority = priority or 0, seq = self.seq, at = clock:now() }
    self.queued = self.queued + 1
    heap_push(self.heap, e)
    self:pump()
    if e.slot then return e.slot end
    e.fut = async.future()
    local slot, err = async.wait(e.fut, function()
      if e.slot then self.unresumed = self.unresumed - 1; e.resumed = true end
      if e.slot then
        e.slot:release()
      elseif not e.cancelled then
        e.cancelled = true
        self.queued = self.queued - 1
        self:pump()
      end
    end)
    if e.slot and not e.resumed then
      e.resumed = true
      self.unresumed = self.unresumed - 1
      if self.heap[1] then self:pump() end
    end
    if not slot then return nil, err or errors.new{ kind = "cancelled", message = "cancelled" } end
    return slot
  end

  --- Apply what one response said about one dimension: none left means nothing goes until
  -- the reset; some left lowers the bucket to what the server still had (minus what was sent
  -- since that response's request).
  ---@private
  ---@param dim "requests"|"tokens"
  ---@param remaining? string|number the remaining-header's value
  ---@param reset? number seconds until the reset
  ---@param slot? table the slot of the response
  ---@param now number the clock's time
  function Limiter:learn_one(dim, remaining, reset, slot, now)
    remaining = tonumber(remaining)
    if remaining == nil then return end
    if remaining <= 0 then
      if reset and reset > 0 then self.gate[dim] = math.max(self.gate[dim], now + reset) end
      return
    end
    local b = dim == "requests" and self.req or self.tok
    if b and slot then
      -- What the server had left when it answered, minus what was sent since.
      local since = dim == "requests" and (self.granted - slot.grant_no)
                                       or (self.tokens_granted - slot.tokens_no)
      -- Keep a bucket's worth in reserve at the server: calls that left late and together
      -- (a busy scheduler) must not empty it, and a bucket that ran low is given time to
      -- refill before more go.
      local avail = remaining - since - b.cap
      refill(b, now)
      if avail < b.level then b.level = avail end
    end
  end

  --- Correct the budgets from a response's rate-limit headers: OpenAI's `x-ratelimit-*`
  -- (resets as Go durations) and Anthropic's `anthropic-ratelimit-*` (resets as RFC 3339
  -- timestamps). A 429's `retry-after` holds every call back as long.
  ---@private
  ---@param status? integer
  ---@param h table<string, string> lower-case header names
  ---@param slot? llm.LimiterSlot the slot the response came back with
  ---@param retry_after? number seconds
  function Limiter:learn(status, h, slot, retry_after)
    local now = clock:now()
    for _, dim in ipairs{ "requests", "tokens" } do
      self:learn_one(dim, h["x-ratelimit-remaining-" .. dim],
        M.parse_duration(h["x-ratelimit-reset-" .. dim]), slot, now)
    end
    local w
    for _, dim in ipairs{ "requests", "tokens", "input-tokens", "output-tokens" } do
      local rem = h["anthropic-ratelimit-" .. dim .. "-remaining"]
      if rem ~= nil then
        local at = M.parse_rfc3339(h["anthropic-ratelimit-" .. dim .. "-reset"])
        w = w or wall()
        local target = dim == "requests" and "requests" or "tokens"
        -- input / output budgets are separate: only their exhaustion is used
        if target == "tokens" and dim ~= "tokens" and tonumber(rem) and tonumber(rem) > 0 then rem = nil end
        self:learn_one(target, rem, at and (at - w), slot, now)
      end
    end
    if status == 429 and retry_after and retry_after > 0 then
      self.gate.requests = math.max(self.gate.requests, now + retry_after)
    end
  end

  --- Give the slot back, with what the response said: its `status`, `headers` (rate-limit
  -- corrections) and `usage` (the real token cost replaces the estimate). Idempotent.
  ---@private
  ---@param status? integer
  ---@param headers? table<string, string>
  ---@param usage? table
  ---@param retry_after? number
  function Slot:release(status, headers, usage, retry_after)
    if self.released then return end
    self.released = true
    local lim = self.lim
    lim.in_flight = lim.in_flight - 1
    if self.stream then lim.held_by_streams = lim.held_by_streams - 1 end
    if usage and lim.tok then
      local used = usage.total_tokens
      if used == nil and (usage.input_tokens or usage.output_tokens) then
        used = (usage.input_tokens or 0) + (usage.output_tokens or 0)
      end
      if used then
        refill(lim.tok, clock:now())
        lim.tok.level = math.min(lim.tok.cap, lim.tok.level + self.cost - used)
        lim.tokens_granted = lim.tokens_granted - self.cost + used
      end
    end
    if headers then lim:learn(status, headers, self, retry_after) end
    lim:pump()
  end

  --- The slot is held by a stream until it ends, is closed, or is collected: returns a guard
  -- object to keep in the stream, whose collection gives the slot back.
  ---@private
  ---@return userdata|table guard
  function Slot:hold()
    self.held, self.stream = true, true
    local lim = self.lim
    lim.held_by_streams = lim.held_by_streams + 1
    local slot = self
    local function fin()
      if not slot.released then
        local c = lim.collected
        c[#c + 1] = slot
      end
    end
    if compat.lua == "Lua 5.1" or compat.lua == "LuaJIT" then
      local p = newproxy(true)   -- luacheck: ignore (5.1 and LuaJIT only)
      getmetatable(p).__gc = fin
      return p
    end
    return setmetatable({}, { __gc = fin })
  end

  return L
end

return M
