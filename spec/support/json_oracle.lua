--- The Lua JSON decoders, kept as test oracles for the core's decoder (csrc/json.c) since
-- llm.json decodes in C only (DESIGN "JSON"): `exact(s)`, a strict recursive-descent
-- decoder that walks the text with anchored patterns, and `lua(s)`, lua-cjson plus a fix-up
-- walk with the exact decoder as its fallback. Both give what core.json_decode gives:
-- arrays and objects marked (llm.json.array / object), integer literals as integers, null
-- as llm.json.null, invalid UTF-8 in strings as U+FFFD, `nil, message` on bad input.
-- Where they differ from the core (spec/json_core_spec.lua): the cjson fast path accepts a
-- leading zero and a raw control character inside a string, and the exact decoder has no
-- nesting limit (the core stops at 1,000 levels). `encode(v)` is the Lua encoder, the
-- oracle of the core's encoder.
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local json = require("llm.json")
local compat = require("llm.compat")

local byte, sub, find, format, concat = string.byte, string.sub, string.find, string.format, table.concat
local tointeger = compat.tointeger
local setmetatable, getmetatable, type, pairs, next, tostring, tonumber =
  setmetatable, getmetatable, type, pairs, next, tostring, tonumber
local utf8char = compat.utf8.char
local ARRAY, OBJECT, null = json.ARRAY_MT, json.OBJECT_MT, json.null

local M = {}

-- Failures inside the recursive descent are raised as this table and turned into
-- `nil, message` by decode(), so no error escapes to the caller.
local Fail = { __name = "llm.json.DecodeError" }
local function fail(s, i, what)
  error(setmetatable({ msg = format("JSON: %s at byte %d", what, i or #s + 1) }, Fail), 0)
end

local parse_value -- forward

local REPLACEMENT = "\239\191\189"   -- U+FFFD

-- The length of the valid UTF-8 sequence at i (a byte >= 0x80) of s, or 0: the rules of
-- csrc/json.c's utf8_seq (no overlong forms, no surrogates, nothing past U+10FFFF).
local function utf8_seq(s, i)
  local c = byte(s, i)
  local function cont(k)
    local b = byte(s, i + k)
    return b ~= nil and b >= 0x80 and b < 0xC0
  end
  if c < 0xC2 then return 0 end
  if c < 0xE0 then return cont(1) and 2 or 0 end
  local b1 = byte(s, i + 1)
  if c < 0xF0 then
    if not (cont(1) and cont(2)) then return 0 end
    if (c == 0xE0 and b1 < 0xA0) or (c == 0xED and b1 >= 0xA0) then return 0 end
    return 3
  end
  if c < 0xF5 then
    if not (cont(1) and cont(2) and cont(3)) then return 0 end
    if (c == 0xF0 and b1 < 0x90) or (c == 0xF4 and b1 >= 0x90) then return 0 end
    return 4
  end
  return 0
end

-- Raw string text from a server with each byte that is not part of valid UTF-8 replaced by
-- U+FFFD (DESIGN "JSON": a reply never poisons the next request).
local function valid_text(t)
  if not find(t, "[\128-\255]") then return t end
  local out, n, i, from = {}, 0, 1, 1
  local len = #t
  while i <= len do
    if byte(t, i) < 0x80 then
      i = i + 1
    else
      local k = utf8_seq(t, i)
      if k > 0 then
        i = i + k
      else
        n = n + 1; out[n] = sub(t, from, i - 1)
        n = n + 1; out[n] = REPLACEMENT
        i = i + 1
        from = i
      end
    end
  end
  if n == 0 then return t end
  out[n + 1] = sub(t, from)
  return concat(out)
end

local ESC = { [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n",
              [114] = "\r", [116] = "\t" }

-- i is just after the opening quote; returns the string and the index after the closing quote.
local function parse_string(s, i)
  local k = find(s, '["\\%z\1-\31]', i)
  if not k then fail(s, i, "unterminated string") end
  if byte(s, k) == 34 then return valid_text(sub(s, i, k - 1)), k + 1 end
  -- slow path: escapes
  local buf, n = {}, 0
  while true do
    local c = byte(s, k)
    if c == 34 then
      n = n + 1; buf[n] = valid_text(sub(s, i, k - 1))
      return concat(buf), k + 1
    elseif c == 92 then
      n = n + 1; buf[n] = valid_text(sub(s, i, k - 1))
      local e = byte(s, k + 1)
      if e == 117 then -- \uXXXX
        local hex = sub(s, k + 2, k + 5)
        local cp = #hex == 4 and find(hex, "^%x%x%x%x$") and tonumber(hex, 16)
        if not cp then fail(s, k, "bad \\u escape") end
        k = k + 6
        if cp >= 0xD800 and cp <= 0xDBFF and byte(s, k) == 92 and byte(s, k + 1) == 117 then
          local lo = tonumber(sub(s, k + 2, k + 5), 16)
          if lo and lo >= 0xDC00 and lo <= 0xDFFF then
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
            k = k + 6
          end
        end
        n = n + 1; buf[n] = (cp >= 0xD800 and cp <= 0xDFFF) and REPLACEMENT or utf8char(cp)
      else
        local r = ESC[e]
        if not r then fail(s, k, "bad escape") end
        n = n + 1; buf[n] = r
        k = k + 2
      end
      i = k
    else
      fail(s, k, "control character in string")
    end
    k = find(s, '["\\%z\1-\31]', i)
    if not k then fail(s, i, "unterminated string") end
  end
end

local function parse_number(s, i)
  local _, e = find(s, "^-?%d+", i)
  if not e then fail(s, i, "unexpected character") end
  local isint = true
  local _, e2 = find(s, "^%.%d+", e + 1)
  if e2 then e, isint = e2, false end
  _, e2 = find(s, "^[eE][-+]?%d+", e + 1)
  if e2 then e, isint = e2, false end
  local lit = sub(s, i, e)
  if find(lit, "^-?0%d") then fail(s, i, "leading zero in number") end
  local v = tonumber(lit)
  if not isint then v = v + 0.0 -- tonumber("1e2") is already a float; keep it so
  elseif v == 0 then v = 0 end   -- LuaJIT's tonumber("-0") is -0.0; 5.3+ make it the integer 0
  return v, e + 1
end

local WS = "[^ \t\r\n]"

local function parse_array(s, i)
  local t, n = {}, 0
  i = find(s, WS, i)
  if not i then fail(s, nil, "unterminated array") end
  if byte(s, i) == 93 then return setmetatable(t, ARRAY), i + 1 end
  while true do
    local v
    v, i = parse_value(s, i)
    n = n + 1; t[n] = v
    i = find(s, WS, i)
    local c = i and byte(s, i)
    if c == 93 then return setmetatable(t, ARRAY), i + 1 end
    if c ~= 44 then fail(s, i, "expected ',' or ']'") end
    i = i + 1
  end
end

local function parse_object(s, i)
  local t = {}
  i = find(s, WS, i)
  if not i then fail(s, nil, "unterminated object") end
  if byte(s, i) == 125 then return setmetatable(t, OBJECT), i + 1 end
  while true do
    if byte(s, i) ~= 34 then fail(s, i, "expected a string key") end
    local key
    key, i = parse_string(s, i + 1)
    i = find(s, WS, i)
    if not i or byte(s, i) ~= 58 then fail(s, i, "expected ':'") end
    local v
    v, i = parse_value(s, i + 1)
    t[key] = v
    i = find(s, WS, i)
    local c = i and byte(s, i)
    if c == 125 then return setmetatable(t, OBJECT), i + 1 end
    if c ~= 44 then fail(s, i, "expected ',' or '}'") end
    i = find(s, WS, i + 1)
    if not i then fail(s, nil, "unterminated object") end
  end
end

local function literal(word, value)
  local len = #word
  return function(s, i)
    if sub(s, i, i + len - 1) ~= word then fail(s, i, "unexpected character") end
    return value, i + len
  end
end

local DISPATCH = {
  [34] = function(s, i) return parse_string(s, i + 1) end,
  [123] = function(s, i) return parse_object(s, i + 1) end,
  [91] = function(s, i) return parse_array(s, i + 1) end,
  [116] = literal("true", true),
  [102] = literal("false", false),
  [110] = literal("null", null),
}
for c = 48, 57 do DISPATCH[c] = parse_number end
DISPATCH[45] = parse_number

parse_value = function(s, i)
  i = find(s, WS, i)
  if not i then fail(s, nil, "unexpected end of input") end
  local f = DISPATCH[byte(s, i)]
  if not f then fail(s, i, "unexpected character") end
  return f(s, i)
end

local function decode_all(s)
  local v, i = parse_value(s, 1)
  if find(s, WS, i) then fail(s, find(s, WS, i), "trailing characters") end
  return v
end

-- Fast path: lua-cjson parses (C, several times faster), then one walk sets the array /
-- object markers, turns cjson's floats into integers and its null into M.null. The walk
-- gives up, and the exact decoder above runs instead, whenever cjson may have lost
-- something: an empty container (cjson cannot tell `[]` from `{}`), a number at or above
-- 2^53 (a double is no longer exact there), or an integral value while the text holds a
-- digit followed by '.', 'e' or 'E' (the literal might have been a float such as `2.0`).
-- The last check scans the text, strings included, so a false alarm only costs speed.
-- Known leniency of the fast path (cjson's): a leading zero in a number and a raw control
-- character inside a string are accepted; the exact decoder rejects both.
local cjson
do
  local ok, mod = pcall(require, "cjson")
  if ok and type(mod) == "table" and mod.new then
    cjson = mod.new()
    if cjson.decode_invalid_numbers then cjson.decode_invalid_numbers(false) end
  end
end
local cnull = cjson and cjson.null
local TWO53 = 2 ^ 53

-- Returns t, or nil when the fast path must give up. `flags[1]` is set when an integral
-- number was converted.
local function fix(t, flags)
  if t[1] ~= nil then
    for i = 1, #t do
      local v = t[i]
      local tv = type(v)
      if tv == "number" then
        if v >= TWO53 or v <= -TWO53 then return nil end
        local iv = tointeger(v)
        if iv then t[i] = iv; flags[1] = true end
      elseif tv == "table" then
        if not fix(v, flags) then return nil end
      elseif v == cnull then t[i] = null end
    end
    return setmetatable(t, ARRAY)
  end
  if next(t) == nil then return nil end
  for k, v in pairs(t) do
    local tv = type(v)
    if tv == "number" then
      if v >= TWO53 or v <= -TWO53 then return nil end
      local iv = tointeger(v)
      if iv then t[k] = iv; flags[1] = true end
    elseif tv == "table" then
      if not fix(v, flags) then return nil end
    elseif v == cnull then t[k] = null end
  end
  return setmetatable(t, OBJECT)
end

local function fast_decode(s)
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil end
  local tv = type(v)
  if tv == "string" or tv == "boolean" then return true, v end
  if v == cnull then return true, null end
  local flags = {}
  if tv == "table" then
    v = fix(v, flags)
    if v == nil then return nil end
  elseif tv == "number" then
    if v >= TWO53 or v <= -TWO53 then return nil end
    local iv = tointeger(v)
    if iv then v = iv; flags[1] = true end
  end
  if flags[1] and find(s, "%d[.eE]") then return nil end
  return true, v
end

-- The exact Lua decoder alone: value, or nil and a message.
local function exact_decode(s)
  local ok, v = pcall(decode_all, s)
  if ok then return v end
  if getmetatable(v) == Fail then return nil, v.msg end
  return nil, "JSON: " .. tostring(v) -- e.g. a stack overflow on absurd nesting
end


local function lua_decode(s)
  if cjson and valid_text(s) == s then   -- cjson keeps invalid UTF-8 as it came
    local ok, v = fast_decode(s)
    if ok then return v end
  end
  return exact_decode(s)
end

---------------------------------------------------------------------------------------
-- The Lua encoder, the oracle of the core's (csrc/json.c, core.json_encoder), exactly as
-- llm.json.encode was before it encoded in C. Where they differ (spec/json_encode_spec.lua):
-- the core stops at 1,000 nested tables, where this one recurses until Lua's stack
-- overflows, and the core sorts object keys by their bytes where this one sorts them with
-- `<` (the same unless a program sets LC_COLLATE).
---------------------------------------------------------------------------------------

local char = string.char
local mtype = compat.math_type
local each = pairs

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

-- encode(v): the JSON text, or a raise naming the path of the bad value.
function M.encode(v)
  local buf = {}
  local n = encode_value(v, buf, 0, {}, {}, 0)
  return concat(buf, "", 1, n)
end

--- The strict Lua decoder: value, or nil and a message.
M.exact = exact_decode
--- lua-cjson with the fix-up walk (when lua-cjson is installed), else the exact decoder.
M.lua = lua_decode

return M
