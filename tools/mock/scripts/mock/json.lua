-- JSON for the mock: an encoder with ordered objects and explicit arrays, and a decoder.
-- Provider replies need `"content":[]` and read better with the keys in the order the real
-- servers use. Pure Lua, so the mock needs nothing beyond Lua 5.4 itself (it runs from an
-- installed rock on a system without lua-cjson).
local M = {}
M.null = setmetatable({}, { __name = "mock.json.null", __tostring = function() return "null" end })

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

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
              ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function esc(c) return ESC[c] or string.format("\\u%04x", c:byte()) end

-- A JSON string literal; "/" stays unescaped, as the real APIs send it.
local function estr(s)
  if not s:find('[%c"\\]') then return '"' .. s .. '"' end
  return '"' .. s:gsub('[%c"\\]', esc) .. '"'
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
  if ty == "table" and v ~= M.null then
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
  elseif ty == "number" then
    if v ~= v or v == math.huge or v == -math.huge then error("cannot encode " .. tostring(v) .. " in JSON", 0) end
    out[#out + 1] = string.format("%.14g", v)
  elseif ty == "boolean" or v == M.null then
    out[#out + 1] = tostring(v)
  else
    error("cannot encode a " .. ty .. " in JSON", 0)
  end
end

function M.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

---------------------------------------------------------------- decoding
-- Objects and arrays become plain tables, null becomes M.null. Request bodies are small, so
-- a plain recursive descent is fast enough.

local decode_value

local function fail(pos, what) error({ json_error = ("%s at byte %d"):format(what, pos) }, 0) end

local function skip(s, pos) return s:find("[^ \t\r\n]", pos) or #s + 1 end

local UNESC = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function decode_string(s, pos)   -- pos is just after the opening quote
  local out, i = {}, pos
  while true do
    local j = s:find('["\\%c]', i)
    if not j then fail(pos, "unterminated string") end
    local c = s:sub(j, j)
    if j > i then out[#out + 1] = s:sub(i, j - 1) end
    if c == '"' then return table.concat(out), j + 1 end
    if c ~= "\\" then fail(j, "control character in string") end
    local e = s:sub(j + 1, j + 1)
    if e == "u" then
      local hex = s:match("^%x%x%x%x", j + 2)
      if not hex then fail(j, "bad \\u escape") end
      local cp, nexti = tonumber(hex, 16), j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = s:match("^\\u(%x%x%x%x)", nexti)
        lo = lo and tonumber(lo, 16)
        if lo and lo >= 0xDC00 and lo <= 0xDFFF then
          cp, nexti = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00), nexti + 6
        else
          cp = 0xFFFD
        end
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        cp = 0xFFFD
      end
      out[#out + 1] = utf8.char(cp)
      i = nexti
    else
      local u = UNESC[e]
      if not u then fail(j, "bad escape") end
      out[#out + 1] = u
      i = j + 2
    end
  end
end

function decode_value(s, pos, depth)
  if depth > 200 then fail(pos, "too deeply nested") end
  pos = skip(s, pos)
  local c = s:sub(pos, pos)
  if c == "{" then
    local t = {}
    pos = skip(s, pos + 1)
    if s:sub(pos, pos) == "}" then return t, pos + 1 end
    while true do
      if s:sub(pos, pos) ~= '"' then fail(pos, "object key expected") end
      local k
      k, pos = decode_string(s, pos + 1)
      pos = skip(s, pos)
      if s:sub(pos, pos) ~= ":" then fail(pos, "':' expected") end
      t[k], pos = decode_value(s, pos + 1, depth + 1)
      pos = skip(s, pos)
      c = s:sub(pos, pos)
      if c == "}" then return t, pos + 1 end
      if c ~= "," then fail(pos, "',' or '}' expected") end
      pos = skip(s, pos + 1)
    end
  elseif c == "[" then
    local t, n = {}, 0
    pos = skip(s, pos + 1)
    if s:sub(pos, pos) == "]" then return t, pos + 1 end
    while true do
      n = n + 1
      t[n], pos = decode_value(s, pos, depth + 1)
      pos = skip(s, pos)
      c = s:sub(pos, pos)
      if c == "]" then return t, pos + 1 end
      if c ~= "," then fail(pos, "',' or ']' expected") end
      pos = pos + 1
    end
  elseif c == '"' then
    return decode_string(s, pos + 1)
  elseif s:find("^true", pos) then return true, pos + 4
  elseif s:find("^false", pos) then return false, pos + 5
  elseif s:find("^null", pos) then return M.null, pos + 4
  end
  local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if not num or num == "" or num == "-" then fail(pos, "unexpected character") end
  local v = math.tointeger(tonumber(num)) or tonumber(num)
  if not v then fail(pos, "bad number") end
  return v, pos + #num
end

-- Decodes, returning nil (and a message) instead of raising on bad input.
function M.decode(s)
  if type(s) ~= "string" then return nil, "not a string" end
  local ok, v, pos = pcall(decode_value, s, 1, 0)
  if not ok then
    if type(v) == "table" and v.json_error then return nil, v.json_error end
    error(v, 0)
  end
  if skip(s, pos) <= #s then return nil, "trailing data at byte " .. pos end
  return v
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
