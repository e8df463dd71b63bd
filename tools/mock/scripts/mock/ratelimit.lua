-- Rate limits, enforced as the providers do: token buckets of requests and tokens per
-- minute, refilled continuously, per API key or global. Admitted replies carry honest
-- headers (OpenAI's x-ratelimit-* with Go-duration resets on the OpenAI routes, Anthropic's
-- anthropic-ratelimit-* with RFC 3339 resets on /v1/messages); a request over a budget gets
-- the provider's 429 with retry-after (and retry-after-ms), counted in /__mock/stats.
--
-- Configured with POST /__mock/limits:
--   { rpm, tpm, burst = <requests>, burst_tokens = <tokens>, per = "key" | "global" }
-- A bucket holds `burst` requests (default rpm: a full minute, as the providers' own) and
-- refills rpm / 60 a second; likewise tokens. A request costs one request and its estimate of
-- tokens: body size / 4 plus its max_tokens (max_completion_tokens, max_output_tokens,
-- generationConfig.maxOutputTokens). {} (or /__mock/reset) turns limits off.
local json = require "mock.json"

local M = {}
local cfg = nil
local buckets = {}
local counters = { limited = 0, admitted = 0 }
local wall0, t0 = nil, nil   -- wall-clock seconds at monotonic time t0

local function num(v) return type(v) == "number" and v == v and v > 0 and v or nil end

--- Set the limits from a decoded JSON object; returns nil or an error message.
function M.configure(c)
  if type(c) ~= "table" then return "limits: expected a JSON object" end
  for k in pairs(c) do
    if not ({ rpm = true, tpm = true, burst = true, burst_tokens = true, per = true })[k] then
      return "limits: unknown field " .. tostring(k)
    end
  end
  if c.per ~= nil and c.per ~= "key" and c.per ~= "global" then return "limits: per must be \"key\" or \"global\"" end
  buckets = {}
  if not num(c.rpm) and not num(c.tpm) then cfg = nil; return nil end
  cfg = { rpm = num(c.rpm), tpm = num(c.tpm), per = c.per or "key" }
  cfg.burst = num(c.burst) or cfg.rpm
  cfg.burst_tokens = num(c.burst_tokens) or cfg.tpm
  return nil
end

function M.reset()
  cfg, buckets = nil, {}
  counters.limited, counters.admitted = 0, 0
end

function M.counters() return counters end

local function key_of(h)
  local k = (h["authorization"] or ""):match("^%a+%s+(.*)$") or h["x-api-key"] or h["x-goog-api-key"] or ""
  return k
end

local function max_tokens(body)
  if type(body) ~= "table" then return 0 end
  local v = body.max_tokens or body.max_completion_tokens or body.max_output_tokens
  if v == nil and type(body.generationConfig) == "table" then v = body.generationConfig.maxOutputTokens end
  if v == nil and type(body.options) == "table" then v = body.options.num_predict end
  return type(v) == "number" and v or 0
end

local function refill(b, rate, cap, now)
  if now > b.t then
    b.level = math.min(cap, b.level + rate * (now - b.t))
    b.t = now
  end
end

-- Go's time.Duration.String form: "6m0s", "1.5s", "120ms".
local function go_duration(s)
  if s <= 0 then return "0s" end
  if s < 1 then
    local ms = math.ceil(s * 1000)
    return string.format("%dms", ms)
  end
  local h = math.floor(s / 3600)
  local m = math.floor((s - h * 3600) / 60)
  local sec = s - h * 3600 - m * 60
  local secs = string.format("%.3f", sec):gsub("0+$", ""):gsub("%.$", "")
  if h > 0 then return string.format("%dh%dm%ss", h, m, secs) end
  if m > 0 then return string.format("%dm%ss", m, secs) end
  return secs .. "s"
end
M.go_duration = go_duration

local function rfc3339(now, after)
  wall0, t0 = wall0 or os.time(), t0 or now
  -- whole seconds, rounded up: a client never goes before the bucket is back
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.ceil(wall0 + (now - t0) + after))
end

-- The headers that describe the buckets, in the route's style.
local function describe(style, b, now)
  local out = {}
  local dims = {}
  if cfg.rpm then dims[#dims + 1] = { "requests", b.req, cfg.rpm, cfg.rpm / 60, cfg.burst } end
  if cfg.tpm then dims[#dims + 1] = { "tokens", b.tok, cfg.tpm, cfg.tpm / 60, cfg.burst_tokens } end
  for _, d in ipairs(dims) do
    local name, bk, limit, rate, cap = d[1], d[2], d[3], d[4], d[5]
    local remaining = math.max(0, math.floor(bk.level))
    local full = math.max(0, (cap - bk.level) / rate)
    if style == "anthropic" then
      out[#out + 1] = { "anthropic-ratelimit-" .. name .. "-limit", tostring(math.floor(limit)) }
      out[#out + 1] = { "anthropic-ratelimit-" .. name .. "-remaining", tostring(remaining) }
      out[#out + 1] = { "anthropic-ratelimit-" .. name .. "-reset", rfc3339(now, full) }
    elseif style == "openai" then
      out[#out + 1] = { "x-ratelimit-limit-" .. name, tostring(math.floor(limit)) }
      out[#out + 1] = { "x-ratelimit-remaining-" .. name, tostring(remaining) }
      out[#out + 1] = { "x-ratelimit-reset-" .. name, go_duration(full) }
    end
  end
  return out
end

local STYLE = { openai_chat = "openai", openai_responses = "openai", anthropic = "anthropic" }

--- Admit or refuse a request to a provider route. Returns nil when no limits are set;
--- otherwise `{ headers = {...} }` for an admitted request, or `{ limited = true, wait = s,
--- headers = {...} }` for one over a budget.
function M.admit(req, provider_name, body)
  if not cfg then return nil end
  local now = req.t
  local key = cfg.per == "global" and "*" or key_of(req.headers)
  local b = buckets[key]
  if not b then
    b = { req = { level = cfg.burst or 0, t = now }, tok = { level = cfg.burst_tokens or 0, t = now } }
    buckets[key] = b
  end
  local cost = math.floor(#(req.body or "") / 4) + max_tokens(body)
  local wait = 0
  if cfg.rpm then
    refill(b.req, cfg.rpm / 60, cfg.burst, now)
    if b.req.level < 1 then wait = math.max(wait, (1 - b.req.level) / (cfg.rpm / 60)) end
  end
  if cfg.tpm then
    refill(b.tok, cfg.tpm / 60, cfg.burst_tokens, now)
    local need = math.min(cost, cfg.burst_tokens)
    if b.tok.level < need then wait = math.max(wait, (need - b.tok.level) / (cfg.tpm / 60)) end
  end
  local style = STYLE[provider_name]
  if wait > 0 then
    counters.limited = counters.limited + 1
    local h = describe(style, b, now)
    h[#h + 1] = { "retry-after", tostring(math.ceil(wait)) }
    h[#h + 1] = { "retry-after-ms", tostring(math.ceil(wait * 1000)) }
    return { limited = true, wait = wait, headers = h }
  end
  if cfg.rpm then b.req.level = b.req.level - 1 end
  if cfg.tpm then b.tok.level = b.tok.level - cost end
  counters.admitted = counters.admitted + 1
  return { headers = describe(style, b, now) }
end

function M.config_json()
  if not cfg then return "{}" end
  return json.encode(json.O("rpm", cfg.rpm, "tpm", cfg.tpm, "burst", cfg.burst, "burst_tokens", cfg.burst_tokens,
    "per", cfg.per))
end

return M
