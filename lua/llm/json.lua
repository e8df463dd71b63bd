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
-- infinities raise, as JSON cannot express them, and so do cycles and more than 1,000
-- nested tables (what the decoder reads back). Strings are written byte for byte, except
-- that '"', '\\', the control characters and DEL are escaped. The core encodes
-- (`core.json_encoder`, csrc/json.c); the Lua encoder it replaced is a test oracle.
-- @module llm.json
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT

local M = {}

local getmetatable, setmetatable, type, tostring = getmetatable, setmetatable, type, tostring
local format = string.format

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
-- @section encoder
---------------------------------------------------------------------------------------

-- The one encoder is the core's too (csrc/json.c, `core.json_encoder`): it writes what the
-- rules at the top of this file say and builds the path of a bad value only to raise. The
-- Lua encoder it replaced is the test oracle in spec/support/json_oracle.lua. The encoder
-- writes the bad value in its message with this file's `tostring`, as the Lua encoder did,
-- and on LuaJIT formats floats with its `string.format`, as the Lua encoder did.
local core_encode

--- Encodes a Lua value as JSON text. Raises on values JSON cannot express (programming
--- errors: a sparse or mixed table, NaN, a function, a cycle, more than 1,000 nested
--- tables), naming the path of the bad value.
---@param v any a string, number, boolean, `llm.json.null` or a table of these
---@return string json the JSON text
function M.encode(v)
  if core_encode == nil then
    core_encode = require("llm.core").json_encoder(ARRAY, OBJECT, null, tostring, format)
  end
  return core_encode(v)
end

return M
