--- The one constructor of `llm.Error`, and the one redaction function.
-- Every failure the library returns is built here, so key redaction and the
-- retryable defaults live in one place.
local M = {}

local Error = { __name = "llm.Error" }
M.Error = Error

local secrets = {}          -- set of strings never to show; keys of the table
local REDACTED = "[REDACTED]"

--- Register a secret (an API key): every later error, message and log line hides it.
function M.add_secret(s)
  if type(s) == "string" and #s >= 4 then secrets[s] = true end
end

local function plain(s)  -- escape a string for use as a literal gsub pattern
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

--- Replace every registered secret in `s`; non-strings pass through unchanged.
function M.redact(s)
  if type(s) ~= "string" then return s end
  for secret in pairs(secrets) do
    if s:find(secret, 1, true) then s = s:gsub(plain(secret), REDACTED) end
  end
  return s
end

-- Deep copy of a decoded body with every string redacted (a server may echo a key).
local function redact_value(v, seen)
  if type(v) == "string" then return M.redact(v) end
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local out = setmetatable({}, getmetatable(v))
  seen[v] = out
  for k, x in pairs(v) do out[redact_value(k, seen)] = redact_value(x, seen) end
  return out
end
M.redact_value = redact_value

local STATUS_KIND = {
  [400] = "bad_request", [401] = "auth", [402] = "quota", [403] = "permission",
  [404] = "not_found", [408] = "timeout", [409] = "bad_request", [413] = "bad_request",
  [422] = "bad_request", [429] = "rate_limit", [529] = "overloaded",
}

--- The error kind an HTTP status means before the body is read.
function M.kind_for_status(status)
  if STATUS_KIND[status] then return STATUS_KIND[status] end
  if status >= 500 then return "server" end
  if status >= 400 then return "bad_request" end
  return "protocol"
end

local RETRYABLE_KIND = { connection = true, timeout = true, rate_limit = true,
                         server = true, overloaded = true }

--- Whether an error is worth retrying when the server said nothing (x-should-retry).
function M.retryable_default(kind, status, e)
  if status == 409 or status == 408 then return true end
  if kind == "connection" and e and e.tls then return false end
  return RETRYABLE_KIND[kind] == true
end

local function describe(e)
  local head = "llm error [" .. tostring(e.kind) .. "]"
  if e.status then head = head .. " HTTP " .. e.status end
  local msg = e.message and (": " .. e.message) or ""
  local rid = e.request_id and (" (request id " .. e.request_id .. ")") or ""
  return M.redact(head .. msg .. rid)
end

Error.__tostring = describe

--- Build an llm.Error from a table of fields (kind is required; other fields are kept).
-- Strings are redacted; `retryable` defaults from kind and status.
function M.new(fields)
  assert(type(fields) == "table" and fields.kind, "errors.new needs a kind")
  local e = {}
  for k, v in pairs(fields) do e[k] = v end
  e.message = M.redact(e.message)
  if e.body ~= nil then e.body = redact_value(e.body) end
  if e.retryable == nil then e.retryable = M.retryable_default(e.kind, e.status, e) end
  return setmetatable(e, Error)
end

--- True when x is an llm.Error.
function M.is(x) return getmetatable(x) == Error end

--- Build the error of a failed transport record from the C core ({ kind, code, message, which }).
function M.from_core(rec)
  local e = { kind = rec.kind, code = rec.code, message = rec.message, which = rec.which, tls = rec.tls }
  if rec.kind == "timeout" and rec.which then
    e.message = (rec.message or "timed out") .. " (" .. rec.which .. " timeout)"
  end
  return M.new(e)
end

return M
