--- llm.json: the JSON codec used for request bodies, responses and stream events.
--
-- Why not lua-cjson alone: Debian's cjson 2.1.0 decodes `17` as the float 17.0, decodes
-- both `[]` and `{}` to the same unmarked empty table and writes at most 14 significant
-- digits. Normalized fields must be integers, and whatever is replayed to a provider
-- (thinking signatures, tool inputs, reasoning items) must keep `[]` as `[]` and `{}` as
-- `{}`. A pass over cjson's output cannot recover either fact, so decoding is done here:
--
-- * every decoded array gets the metatable `ARRAY`, every decoded object `OBJECT`, so an
--   empty one re-encodes as what it was (`is_array` tells them apart);
-- * a number literal without '.', 'e' or 'E' becomes a Lua integer (when it fits in 64
--   bits), any other literal a float;
-- * JSON null becomes `M.null`, a unique sentinel whose tostring is "null";
-- * bytes that are not valid UTF-8 inside a string become U+FFFD (one per byte);
-- * bad input returns `nil, message` and never raises.
--
-- Decoding is done by the core (`core.json_decode`, csrc/json.c), which builds the values
-- directly with these markers and this null, strictly per RFC 8259 (about 1 µs for a
-- typical 200-byte stream event): one decoder (DESIGN "JSON"). The Lua decoders that
-- stood in for it are test oracles now (spec/support/json_oracle.lua).
--
-- Encoding (request bodies): marked tables are encoded as marked; an unmarked empty table
-- is `{}`; a table whose keys are exactly 1..n is an array; a table whose keys are all
-- strings is an object; anything else raises an error naming the path (`$.messages[2]`).
-- Object keys are sorted so bodies are deterministic. Integers are written as integers;
-- floats with the shortest of 15/16/17 significant digits that reads back exactly, and an
-- integral float keeps a ".0" (2.0 -> "2.0") so it reads back as a float. NaN and the
-- infinities raise, as JSON cannot express them.
-- @module llm.json
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT

local M = {}

local char, find, format, concat = string.char, string.find, string.format, table.concat
local compat = require("llm.compat")
local mtype = compat.math_type
local getmetatable, setmetatable, type, tostring, tonumber =
  getmetatable, setmetatable, type, tostring, tonumber

local ARRAY = { __name = "llm.json.array" }
local OBJECT = { __name = "llm.json.object" }
M.ARRAY_MT, M.OBJECT_MT = ARRAY, OBJECT

-- The null sentinel: a table (not a light userdata) so it can carry a metatable of its own.
M.null = setmetatable({}, {
  __name = "llm.json.null",
  __tostring = function() return "null" end,
  __newindex = function() error("llm.json.null is read-only", 2) end,
})
local null = M.null

--- Marks t (default: a new table) as a JSON array and returns it.
---@param t? table the table to mark; default a new one
---@return table t the same table, encoded as `[]` even when empty
function M.array(t) return setmetatable(t or {}, ARRAY) end

--- Marks t (default: a new table) as a JSON object and returns it.
---@param t? table the table to mark; default a new one
---@return table t the same table, encoded as `{}` even when empty
function M.object(t) return setmetatable(t or {}, OBJECT) end

--- True when t is marked as an array, or is an unmarked non-empty sequence.
---@param t any the value to test
---@return boolean
function M.is_array(t)
  if type(t) ~= "table" then return false end
  local mt = getmetatable(t)
  if mt == ARRAY then return true end
  if mt == OBJECT or t == null then return false end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in each(t) do count = count + 1 end
  return count == n
end

---------------------------------------------------------------------------------------
-- Decoder
-- @section decoder
---------------------------------------------------------------------------------------

-- The one decoder is the core's (csrc/json.c, DESIGN "JSON"); the Lua decoders that used to
-- stand in for it are test oracles now (spec/support/json_oracle.lua). The core is loaded at
-- the first decode, not with this module: `require("llm")` checks first that the core was
-- built for the running Lua and says so plainly when it was not.
local core_decode

--- Decodes a JSON text. Returns the value, or nil and a message (never raises).
-- Integers stay integers, `null` is `llm.json.null`, and arrays and objects are marked
-- (`llm.json.array` / `llm.json.object`) so that `[]` and `{}` encode back as they came.
---@param s string the JSON text
---@return any value the decoded value, or nil when the text is not JSON
---@return string? err why the text is not JSON
function M.decode(s)
  if type(s) ~= "string" then return nil, "JSON: expected a string, got " .. type(s) end
  if core_decode == nil then core_decode = require("llm.core").json_decode end
  return core_decode(s, ARRAY, OBJECT, null)
end

---------------------------------------------------------------------------------------
-- Encoder
---------------------------------------------------------------------------------------

local ESCAPE_OUT = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                     ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
for c = 0, 31 do
  local ch = char(c)
  if not ESCAPE_OUT[ch] then ESCAPE_OUT[ch] = format("\\u%04x", c) end
end
ESCAPE_OUT["\127"] = "\\u007f"

local function encode_string(s)
  if find(s, '[%z\1-\31"\\\127]') then   -- %z: NUL (LuaJIT and 5.1 cannot put "\0" in a class)
    s = s:gsub('[%z\1-\31"\\\127]', ESCAPE_OUT)
  end
  return '"' .. s .. '"'
end

-- Where a value sits, for error messages only: the keys from the root down to it are kept
-- in a stack while encoding (an integer index or a string key per level) and turned into a
-- path such as `$.messages[2]` only when something cannot be encoded, so a body that
-- encodes builds no path strings.
local function path_of(stack, depth)
  local out = { "$" }
  for i = 1, depth do
    local k = stack[i]
    out[i + 1] = type(k) == "number" and ("[" .. k .. "]") or ("." .. tostring(k))
  end
  return concat(out)
end

local function encode_number(v, stack, depth)
  if mtype(v) == "integer" then return format("%d", v) end   -- LuaJIT's tostring: 14 digits
  if v ~= v or v == math.huge or v == -math.huge then
    error(format("llm.json.encode: %s is not a finite number (%s)", path_of(stack, depth), tostring(v)), 0)
  end
  local s = format("%.15g", v)
  if tonumber(s) ~= v then
    s = format("%.16g", v)
    if tonumber(s) ~= v then s = format("%.17g", v) end
  end
  if not find(s, "[.eEn]") then s = s .. ".0" end
  return s
end

local encode_value -- forward

local function key_less(a, b) return a < b end

local function encode_table(t, buf, n, seen, stack, depth)
  if seen[t] then error(format("llm.json.encode: %s is a cycle", path_of(stack, depth)), 0) end
  seen[t] = true
  local mt = getmetatable(t)
  local as_array
  if mt == ARRAY then
    as_array = true
  elseif mt == OBJECT then
    as_array = false
  else
    -- classify an unmarked table by its keys
    local count, nstr, maxn = 0, 0, 0
    for k in each(t) do
      count = count + 1
      local tk = type(k)
      if tk == "string" then
        nstr = nstr + 1
      elseif mtype(k) == "integer" and k > 0 then
        if k > maxn then maxn = k end
      else
        error(format("llm.json.encode: %s has a key of type %s (%s)", path_of(stack, depth), tk, tostring(k)), 0)
      end
    end
    if count == 0 then
      as_array = false
    elseif nstr == count then
      as_array = false
    elseif nstr == 0 and maxn == count then
      as_array = true
    else
      error(format("llm.json.encode: %s mixes array and object keys or is a sparse array",
        path_of(stack, depth)), 0)
    end
  end
  local d1 = depth + 1
  if as_array then
    local len = #t
    n = n + 1; buf[n] = "["
    for i = 1, len do
      if i > 1 then n = n + 1; buf[n] = "," end
      stack[d1] = i
      n = encode_value(t[i], buf, n, seen, stack, d1)
    end
    n = n + 1; buf[n] = "]"
  else
    local keys, nk = {}, 0
    for k in each(t) do
      if type(k) ~= "string" then
        error(format("llm.json.encode: %s is an object with a non-string key (%s)", path_of(stack, depth),
          tostring(k)), 0)
      end
      nk = nk + 1; keys[nk] = k
    end
    table.sort(keys, key_less)
    n = n + 1; buf[n] = "{"
    for i = 1, nk do
      local k = keys[i]
      if i > 1 then n = n + 1; buf[n] = "," end
      n = n + 1; buf[n] = encode_string(k)
      n = n + 1; buf[n] = ":"
      stack[d1] = k
      n = encode_value(t[k], buf, n, seen, stack, d1)
    end
    n = n + 1; buf[n] = "}"
  end
  seen[t] = nil
  return n
end

encode_value = function(v, buf, n, seen, stack, depth)
  local tv = type(v)
  if tv == "string" then
    n = n + 1; buf[n] = encode_string(v)
  elseif tv == "number" then
    n = n + 1; buf[n] = encode_number(v, stack, depth)
  elseif tv == "boolean" then
    n = n + 1; buf[n] = v and "true" or "false"
  elseif v == null or v == nil then
    n = n + 1; buf[n] = "null"
  elseif tv == "table" then
    n = encode_table(v, buf, n, seen, stack, depth)
  else
    error(format("llm.json.encode: %s cannot encode a %s", path_of(stack, depth), tv), 0)
  end
  return n
end

--- Encodes a Lua value as JSON text. Raises on values JSON cannot express (programming
--- errors: a sparse or mixed table, NaN, a function), naming the path of the bad value.
---@param v any a string, number, boolean, `llm.json.null` or a table of these
---@return string json the JSON text
function M.encode(v)
  local buf = {}
  local n = encode_value(v, buf, 0, {}, {}, 0)
  return concat(buf, "", 1, n)
end

return M
