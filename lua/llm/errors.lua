--- The one constructor of `llm.Error`, and the one redaction function.
-- Every failure the library returns is built here, so key redaction and the
-- retryable defaults live in one place.
-- @module llm.errors
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local M = {}

--- An operational failure, returned as the second value of `nil, err`.
---@class llm.Error
---@field kind string what went wrong: "connection", "timeout", "rate_limit", ... (docs/reference.md)
---@field status? integer the HTTP status; nil for errors carried inside a stream
---@field message? string the provider's message, else one of ours
---@field retry_after? number seconds the server asked to wait
---@field retryable boolean whether retrying can help
---@field request_id? string from `x-request-id` / `request-id`
---@field body? any the decoded error body, or the raw text
---@field which? string for timeouts: "connect", "total", "headers", "first_token" or "idle"
---@field code? any the libcurl or provider error code
---@field attempts? integer for kind "retry": how many attempts were made
---@field last? any for kind "retry": the last attempt's error
local Error = { __name = "llm.Error" }
M.Error = Error

local REDACTED = "[REDACTED]"
local MIN_RUN = 8           -- a run of this many leading characters of a key is the key
local MIN_EXACT = 4         -- shorter keys are redacted only as whole tokens and in credentials

-- Registered secrets: secret -> { forms = { encodings of it }, short = bool }.
local secrets = {}

local function plain(s)  -- escape a string for use as a literal gsub pattern
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

local function percent(s, lower)
  local fmt = lower and "%%%02x" or "%%%02X"
  return (s:gsub("[^%w%-%._~]", function(ch) return string.format(fmt, ch:byte()) end))
end

local function json_escaped(s)
  return (s:gsub('[%c"\\/]', function(ch)
    if ch == "/" then return "\\/" end
    if ch == '"' or ch == "\\" then return "\\" .. ch end
    return string.format("\\u%04x", ch:byte())
  end))
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)  -- no bitwise operators: this file parses on Lua 5.1 too
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = { math.floor(n / 262144) % 64, math.floor(n / 4096) % 64, math.floor(n / 64) % 64, n % 64 }
    for j = 1, 4 do out[#out + 1] = B64:sub(q[j] + 1, q[j] + 1) end
    if not b then out[#out - 1], out[#out] = "=", "=" elseif not c then out[#out] = "=" end
  end
  return table.concat(out)
end

--- Register a secret (an API key, a password): every later error, message and log line hides
--- it, also URL-encoded, JSON-escaped or cut short (see `redact`).
---@param s string|false|nil the secret; non-strings and "" are ignored
function M.add_secret(s)
  if type(s) ~= "string" or s == "" or secrets[s] then return end
  local forms, seen = {}, {}
  for _, f in ipairs{ s, percent(s), percent(s, true), json_escaped(s), (percent(s):gsub("%%20", "+")) } do
    if not seen[f] then seen[f] = true; forms[#forms + 1] = f end
  end
  secrets[s] = { forms = forms, short = #s < MIN_EXACT }
end

--- Register the credentials of a URL's userinfo (`https://user:pass@host`): the password,
--- the userinfo and the Basic authorization libcurl builds from it.
---@param url string|nil a URL that may carry `user:password@`
function M.add_url_secrets(url)
  if type(url) ~= "string" then return end
  local userinfo = url:match("^%a[%w+.-]*://([^/?#]*)@")
  if not userinfo then return end
  local decoded = userinfo:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  local pass = decoded:match(":(.*)$")
  if pass and pass ~= "" then M.add_secret(pass) end
  M.add_secret(userinfo)
  M.add_secret(decoded)
  M.add_secret(base64(decoded))
end

-- Positions that always hold a credential, whatever its value: header lines (libcurl's
-- verbose text, a server's echo), query parameters and URL userinfo.
local CREDENTIAL_HEADERS = { "authorization", "proxy%-authorization", "x%-api%-key",
                             "x%-goog%-api%-key", "api%-key" }
local CREDENTIAL_PARAMS = { "key", "api_key", "apikey", "api%-key", "access_token", "token" }

local function ci(name)  -- a case-insensitive pattern for a lower-case name
  return (name:gsub("%a", function(c) return "[" .. c .. c:upper() .. "]" end))
end
local HEADER_PATTERNS, PARAM_PATTERNS = {}, {}
for i, h in ipairs(CREDENTIAL_HEADERS) do
  HEADER_PATTERNS[i] = "(" .. ci(h) .. "%s*:%s*)([^\r\n]*)"
end
for i, q in ipairs(CREDENTIAL_PARAMS) do
  PARAM_PATTERNS[i] = "([?&]" .. ci(q) .. "=)[^&%s#\"']+"
end

local function credential_value(head, value)
  local scheme = value:match("^(%a+%s+)%S")  -- "Bearer xyz" keeps "Bearer "
  if scheme and #scheme < 10 then return head .. scheme .. REDACTED end
  if value == "" then return nil end
  return head .. REDACTED
end

-- Every occurrence of `form` in `s` whose neighbours are not letters or digits (a token).
local function redact_token(s, form)
  local out, pos = {}, 1
  while true do
    local i, j = s:find(form, pos, true)
    if not i then break end
    local before, after = s:sub(i - 1, i - 1), s:sub(j + 1, j + 1)
    out[#out + 1] = s:sub(pos, i - 1)
    if (i == 1 or not before:find("^[%w_]")) and not after:find("^[%w_]") then
      out[#out + 1] = REDACTED
    else
      out[#out + 1] = form
    end
    pos = j + 1
  end
  if pos == 1 then return s end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

-- Runs of at least MIN_RUN leading characters of `key` (a truncated echo), and the elided
-- form `prefix ... suffix` (`sk-abc...wxyz`, `sk-proj-****wxyz`): a prefix of 3 or more
-- characters of the key, an ellipsis ("...", "…") or a run of '*', and a suffix of 2 or more.
local function redact_partial(s, key)
  if #key >= 6 then
    local p3 = key:sub(1, 3)
    if s:find(p3, 1, true) then
      s = s:gsub(plain(p3) .. "[^%s\"'<>,;]*", function(w)
        local n = 3
        while n < #w and n < #key and w:byte(n + 1) == key:byte(n + 1) do n = n + 1 end
        local sep = w:sub(n + 1):match("^%.%.%.+") or w:sub(n + 1):match("^\226\128\166")
          or w:sub(n + 1):match("^%*+")
        if not sep then return nil end
        local rest = w:sub(n + 1 + #sep)
        local m = 0   -- longest suffix of the key that starts `rest`
        for len = math.min(#rest, #key - 1), 2, -1 do
          if rest:sub(1, len) == key:sub(-len) then m = len; break end
        end
        if m == 0 then return nil end
        return REDACTED .. rest:sub(m + 1)
      end)
    end
  end
  if #key >= MIN_RUN and s:find(key:sub(1, MIN_RUN), 1, true) then
    local head = plain(key:sub(1, MIN_RUN))
    s = s:gsub(head .. "[^%s\"'<>,;]*", function(run)
      local n = MIN_RUN
      while n < #run and n < #key and run:byte(n + 1) == key:byte(n + 1) do n = n + 1 end
      return REDACTED .. run:sub(n + 1)
    end)
  end
  return s
end

--- Replace every registered secret in `s`; non-strings pass through unchanged. Redacted:
--- each key as is, URL-encoded (either case of hex), JSON-escaped, a run of 8 or more of its
--- leading characters and the elided `prefix...suffix` form; a key shorter than 4 characters
--- only as a whole token. Whatever the value, credential headers (`Authorization`,
--- `x-api-key`, ...), credential query parameters (`key=`, `api_key=`, ...) and the
--- userinfo of URLs (`https://user:pass@host`) are redacted too.
---@param s any the text to redact
---@return any s the text with every secret replaced by `[REDACTED]`
function M.redact(s)
  if type(s) ~= "string" then return s end
  for secret, info in each(secrets) do
    for _, form in ipairs(info.forms) do
      if s:find(form, 1, true) then
        if info.short then s = redact_token(s, form)
        else s = s:gsub(plain(form), REDACTED) end
      end
    end
    if not info.short then s = redact_partial(s, secret) end
  end
  if s:find(":", 1, true) then
    for _, pat in ipairs(HEADER_PATTERNS) do s = s:gsub(pat, credential_value) end
    s = s:gsub("(%a[%w+.-]*://)([^/%s@\"'<>]+)@", function(head, info)
      if info == REDACTED then return nil end
      return head .. REDACTED .. "@"
    end)
  end
  if s:find("=", 1, true) then
    for _, pat in ipairs(PARAM_PATTERNS) do s = s:gsub(pat, "%1" .. REDACTED) end
  end
  return s
end

--- Deep copy of a decoded body with every string redacted (a server may echo a key).
---@param v any the value to copy
---@param seen? table copies made so far (for shared and cyclic tables)
---@return any copy
local function redact_value(v, seen)
  if type(v) == "string" then return M.redact(v) end
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local out = setmetatable({}, getmetatable(v))
  seen[v] = out
  for k, x in each(v) do out[redact_value(k, seen)] = redact_value(x, seen) end
  return out
end
M.redact_value = redact_value

local STATUS_KIND = {
  [400] = "bad_request", [401] = "auth", [402] = "quota", [403] = "permission",
  [404] = "not_found", [408] = "timeout", [409] = "bad_request", [413] = "bad_request",
  [422] = "bad_request", [429] = "rate_limit", [529] = "overloaded",
}

--- The error kind an HTTP status means before the body is read.
---@param status integer the HTTP status
---@return string kind
function M.kind_for_status(status)
  if STATUS_KIND[status] then return STATUS_KIND[status] end
  if status >= 500 then return "server" end
  if status >= 400 then return "bad_request" end
  return "protocol"
end

local RETRYABLE_KIND = { connection = true, timeout = true, rate_limit = true,
                         server = true, overloaded = true }

--- Whether an error is worth retrying when the server said nothing (x-should-retry).
---@param kind string the error kind
---@param status? integer the HTTP status
---@param e? table the error's fields (a TLS failure is never retryable)
---@return boolean
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
---@param fields table the fields; `kind` is required
---@return llm.Error
function M.new(fields)
  assert(type(fields) == "table" and fields.kind, "errors.new needs a kind")
  local e = {}
  for k, v in each(fields) do
    if type(v) == "string" and k ~= "kind" then v = M.redact(v) end   -- message, request_id, ... may echo a key
    e[k] = v
  end
  if e.body ~= nil then e.body = redact_value(e.body) end
  if e.retryable == nil then e.retryable = M.retryable_default(e.kind, e.status, e) end
  return setmetatable(e, Error)
end

--- True when x is an llm.Error.
---@param x any
---@return boolean
function M.is(x) return getmetatable(x) == Error end

--- Build the error of a failed transport record from the C core ({ kind, code, message, which }).
---@param rec table the core's record: kind, code, message, which, tls
---@return llm.Error
function M.from_core(rec)
  local e = { kind = rec.kind, code = rec.code, message = rec.message, which = rec.which, tls = rec.tls }
  if rec.kind == "timeout" and rec.which then
    e.message = (rec.message or "timed out") .. " (" .. rec.which .. " timeout)"
  end
  return M.new(e)
end

return M
