-- A JSON encoder with ordered objects and explicit arrays.
-- lua-cjson 2.1.0 encodes an empty table as {} and orders keys by hash; provider replies
-- need `"content":[]` and read better with the keys in the order the real servers use.
-- Strings are escaped by cjson, which is the expensive part and is done in C.
local cjson = require "cjson"

local M = {}
M.null = cjson.null

local OBJ = { __name = "mock.json.object" }
local ARR = { __name = "mock.json.array" }

-- O("k1", v1, "k2", v2, ...): an ordered object; pairs whose value is nil are left out.
function M.O(...)
  local n = select("#", ...)
  local t = setmetatable({ n = 0 }, OBJ)
  local args = { ... }
  for i = 1, n, 2 do
    if args[i + 1] ~= nil then
      t.n = t.n + 2
      t[t.n - 1], t[t.n] = args[i], args[i + 1]
    end
  end
  return t
end

-- A(...) or A(list): an array, empty or not.
function M.A(...)
  local first = ...
  if select("#", ...) == 1 and type(first) == "table" and getmetatable(first) == nil then
    return setmetatable(first, ARR)
  end
  return setmetatable({ ... }, ARR)
end

local encode

-- cjson 2.1.0 escapes "/" as "\/"; real APIs do not. Every "\/" in cjson output is an
-- escaped slash (a literal backslash comes out as "\\"), so undoing it is safe.
local function estr(s)
  local e = cjson.encode(s)
  if e:find("\\/", 1, true) then e = e:gsub("\\/", "/") end
  return e
end
M.estr = estr

local function encode_plain(t, out)
  -- Plain tables come from callers (tool arguments): an array if t[1] exists, else an
  -- object with sorted keys, so the output is deterministic.
  if t[1] ~= nil then
    out[#out + 1] = "["
    for i = 1, #t do
      if i > 1 then out[#out + 1] = "," end
      encode(t[i], out)
    end
    out[#out + 1] = "]"
    return
  end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = estr(k)
    out[#out + 1] = ":"
    local v = t[k]
    if v == nil then v = t[tonumber(k)] end
    encode(v, out)
  end
  out[#out + 1] = "}"
end

function encode(v, out)
  local ty = type(v)
  if ty == "table" then
    local mt = getmetatable(v)
    if mt == OBJ then
      out[#out + 1] = "{"
      for i = 1, v.n, 2 do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = estr(v[i])
        out[#out + 1] = ":"
        encode(v[i + 1], out)
      end
      out[#out + 1] = "}"
    elseif mt == ARR then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out)
      end
      out[#out + 1] = "]"
    else
      encode_plain(v, out)
    end
  elseif ty == "number" and math.type(v) == "integer" then
    out[#out + 1] = string.format("%d", v)
  elseif v == nil then
    out[#out + 1] = "null"
  elseif ty == "string" then
    out[#out + 1] = estr(v)
  else
    out[#out + 1] = cjson.encode(v) -- floats, booleans, cjson.null
  end
end

function M.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

-- Decodes, returning nil instead of raising on bad input.
function M.decode(s)
  local ok, v = pcall(cjson.decode, s)
  if ok then return v end
  return nil
end

-- A JSON string literal (cached: echo streams repeat the same few tokens many times).
local cache = {}
local cache_n = 0
function M.str(s)
  local e = cache[s]
  if e then return e end
  e = estr(s)
  if cache_n < 4096 then cache[s] = e; cache_n = cache_n + 1 end
  return e
end

return M
