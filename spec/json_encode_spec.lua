-- lua5.1: yes
-- llm.json.encode (the core's encoder, csrc/json.c) against the Lua encoder it replaced,
-- kept as its oracle (spec/support/json_oracle.lua): the same text for every value that
-- encodes, and the same message for every value that raises. Documented differences, each
-- checked below: the core raises past 1,000 nested tables (the decoder's limit), where the
-- Lua encoder recurses until Lua's stack overflows.
local json = require("llm.json")
local oracle = require("support.json_oracle")
local V = require("support.version")

local A, O, null = json.ARRAY_MT, json.OBJECT_MT, json.null
local char, concat, floor = string.char, table.concat, math.floor

-- Lua 5.1's string.format writes a %s argument only up to its first NUL: the Lua
-- encoder's message there cuts the path at a NUL byte of a key; the core writes it whole.
local WHAT = { " is a cycle", " has a key of type ", " mixes array and object keys",
               " is an object with a non-string key", " is not a finite number", " cannot encode a " }
local function as_51_writes(msg)
  local z = msg:find("\0", 1, true)
  if not z then return msg end
  for _, w in ipairs(WHAT) do
    local i = msg:find(w, z, true)
    if i then return msg:sub(1, z - 1) .. msg:sub(i) end
  end
  return msg
end

-- Encodes v both ways; asserts the same outcome; returns ok, text or message.
local function both(v, what)
  local ok1, r1 = pcall(json.encode, v)
  local ok2, r2 = pcall(oracle.encode, v)
  if V.lua == "lua5.1" and not ok1 and not ok2 then r1 = as_51_writes(r1) end
  if ok1 ~= ok2 or r1 ~= r2 then
    error(("%s: core %s %q, Lua encoder %s %q"):format(what or "value", ok1 and "writes" or "raises",
      tostring(r1), ok2 and "writes" or "raises", tostring(r2)), 2)
  end
  return ok1, r1
end

local function raises(v, message)
  local ok, err = both(v)
  assert.is_false(ok)
  assert.are.equal(V.lua == "lua5.1" and as_51_writes(message) or message, err)
end

-- A deterministic generator (the same on every Lua: no math.random).
local function rng(seed)
  local s = seed
  return function(n)   -- 0 .. n - 1
    s = (s * 1103515245 + 12345) % 2147483648
    return floor(s / 65536) % n
  end
end

local EDGE_NUMBERS = {
  0, 1, -1, 7, -7, 10, 100, 1e3, 123456789, 2 ^ 31, -2 ^ 31, 2 ^ 32, 2 ^ 53 - 1, 2 ^ 53,
  -2 ^ 53, 2 ^ 53 + 2, -2 ^ 53 - 2, 2 ^ 63, -2 ^ 63, 2 ^ 64, 0.5, -0.5, 0.1, 0.2, 0.3, 1 / 3,
  2 / 3, 1e15, 1e16, 1e17, 1e21, 1e22, 1e-5, 1e-7, 1e-300, 5e-324, 2.2250738585072014e-308,
  1.7976931348623157e308, -1.7976931348623157e308, 123456789012345.0, 1234567890123456.0,
  12345678901234567.0, 9007199254740993.0, 0.1 + 0.2, 100 / 3, 3.14159265358979,
  4.35, 2.675, 1.005, 1e100, 1.5e-10, -0.0, 0.0, 2.0, -2.0, 1e15 + 0.5, 4503599627370495.5,
}
if V.INTEGERS then
  local extra = { math.maxinteger, math.mininteger, math.maxinteger - 1, math.mininteger + 1,
                  9007199254740993, -9007199254740993, 1000000000000000000, math.tointeger(2 ^ 53) }
  for _, x in ipairs(extra) do EDGE_NUMBERS[#EDGE_NUMBERS + 1] = x end
end

local function random_number(r)
  local k = r(6)
  if k == 0 then return EDGE_NUMBERS[r(#EDGE_NUMBERS) + 1] end
  if k == 1 then return r(2001) - 1000 end
  if k == 2 then return (r(2000001) - 1000000) / (r(1000) + 1) end
  if k == 3 then   -- a float from random mantissa bits and exponent
    local m = r(65536) * 65536 * 65536 + r(65536) * 65536 + r(65536) + r(2) * 2 ^ 48
    return (r(2) == 0 and 1 or -1) * m * 2 ^ (r(2100) - 1100)
  end
  if k == 4 then return (r(2) == 0 and 1 or -1) * 10 ^ (r(40) - 20) * (r(10) + 1) end
  return r(1000000) / 1000
end

local SPECIAL = { 0, 8, 9, 10, 12, 13, 31, 34, 47, 92, 127, 128, 191, 192, 224, 237, 240, 244, 255 }
local function random_string(r)
  local n, out = r(12), {}
  for i = 1, n do
    local k = r(4)
    if k == 0 then out[i] = char(SPECIAL[r(#SPECIAL) + 1])
    elseif k == 1 then out[i] = char(r(256))
    else out[i] = char(97 + r(26)) end
  end
  if r(8) == 0 then out[#out + 1] = "é🌍\226\128" end
  return concat(out)
end

local function random_value(r, depth, ancestors)
  local k = r(depth > 4 and 6 or 12)
  if k == 0 then return random_string(r) end
  if k == 1 then return random_number(r) end
  if k == 2 then return r(2) == 0 end
  if k == 3 then return null end
  if k == 4 then return random_string(r) end
  if k == 5 then return random_number(r) end
  if k == 6 and r(20) == 0 then return print end                     -- raises
  if k == 6 and r(20) == 0 and #ancestors > 0 then                    -- a cycle
    return ancestors[r(#ancestors) + 1]
  end
  if k == 6 and r(30) == 0 then return 0 / 0 end                     -- raises
  if k == 6 and r(30) == 0 then return -math.huge end                -- raises
  local t = {}
  ancestors[#ancestors + 1] = t
  local n = r(6)
  local shape = r(9)
  if shape <= 2 then                                                 -- an array
    for i = 1, n do t[i] = random_value(r, depth + 1, ancestors) end
    if shape == 1 then setmetatable(t, A) end
    if shape == 2 and n > 1 and r(3) == 0 then t[r(n) + 1] = nil; setmetatable(t, A) end
  elseif shape <= 5 then                                             -- an object
    for _ = 1, n do t[random_string(r)] = random_value(r, depth + 1, ancestors) end
    if shape == 4 then setmetatable(t, O) end
  elseif shape == 6 then                                             -- sparse or mixed: raises
    t[1] = 1; t[r(3) + 3] = 2
    if r(2) == 0 then t.x = 3 end
  elseif shape == 7 then                                             -- a key JSON cannot have
    local keys = { true, 1.5, -1, 0, print, {} }
    t[keys[r(#keys) + 1]] = 1
    if r(2) == 0 then t.a = 1 end
    if r(3) == 0 then setmetatable(t, O) end
  else                                                               -- a marked empty one
    setmetatable(t, r(2) == 0 and A or O)
  end
  ancestors[#ancestors] = nil
  return t
end

describe("llm.json.encode (core) against the Lua encoder", function()
  it("writes every byte of a string the same way, alone and between others", function()
    for b = 0, 255 do
      both(char(b), "byte " .. b)
      both("a" .. char(b) .. "z" .. char(b), "byte " .. b)
      both({ [char(b)] = char(b) }, "key byte " .. b)
    end
    local all = {}
    for b = 0, 255 do all[#all + 1] = char(b) end
    local _, text = both(concat(all))
    assert.truthy(text:find('\\u0000\\u0001', 1, true))
    assert.truthy(text:find('\\b\\t\\n\\u000b\\f\\r', 1, true))
    assert.truthy(text:find(' !\\"#', 1, true))
    assert.truthy(text:find('./0', 1, true))            -- '/' is not escaped
    assert.truthy(text:find('[\\\\]', 1, true))
    assert.truthy(text:find('~\\u007f\128', 1, true))   -- invalid UTF-8 goes out as it came
    both(string.rep("x", 100000) .. "\n" .. string.rep("\"", 70000))   -- past the kept buffer
  end)

  it("writes the edge numbers the same way", function()
    for _, x in ipairs(EDGE_NUMBERS) do
      both(x, tostring(x))
      both(-x, tostring(-x))
      both({ x, { v = x } }, tostring(x))
    end
    assert.are.equal(V.INTEGERS and "-0.0" or "0", json.encode(-0.0))
    assert.are.equal(V.INTEGERS and "1e+15" or "1000000000000000", json.encode(1e15))
    assert.are.equal("1e+17", json.encode(1e17))
    assert.are.equal("4.94065645841247e-324", json.encode(5e-324))   -- 15 digits read back
    assert.are.equal("0.30000000000000004", json.encode(0.1 + 0.2))
    assert.are.equal(V.INTEGERS and "123456789012345.0" or "123456789012345", json.encode(123456789012345.0))
  end)

  it("writes random numbers the same way", function()
    local r = rng(7)
    for i = 1, 20000 do both(random_number(r), "number " .. i) end
  end)

  it("gives the same text or the same message for random nested values", function()
    local r = rng(12345)
    local wrote, raised = 0, 0
    for i = 1, 3000 do
      local ok = both(random_value(r, 0, {}), "value " .. i)
      if ok then wrote = wrote + 1 else raised = raised + 1 end
    end
    assert.is_true(wrote > 1000, wrote .. " encoded")   -- both outcomes are well covered
    assert.is_true(raised > 300, raised .. " raised")
  end)

  it("raises with the messages and paths of the Lua encoder", function()
    raises({ messages = { { role = "user" }, { 1, x = 2 } } },
      "llm.json.encode: $.messages[2] mixes array and object keys or is a sparse array")
    raises({ a = { [1] = 1, [3] = 3 } }, "llm.json.encode: $.a mixes array and object keys or is a sparse array")
    raises({ [true] = 1 }, "llm.json.encode: $ has a key of type boolean (true)")
    raises({ x = { 1, { [1.5] = 0 } } }, "llm.json.encode: $.x[2] has a key of type number (1.5)")
    raises({ [-1] = 0 }, "llm.json.encode: $ has a key of type number (-1)")
    raises(json.object({ [1] = 0 }), "llm.json.encode: $ is an object with a non-string key (1)")
    raises({ a = { { b = 1 }, { b = { c = 0 / 0 } } } }, "llm.json.encode: $.a[2].b.c is not a finite number ("
      .. tostring(0 / 0) .. ")")
    raises({ 1, math.huge }, "llm.json.encode: $[2] is not a finite number (" .. tostring(math.huge) .. ")")
    raises({ f = print }, "llm.json.encode: $.f cannot encode a function")
    raises(coroutine.create(function() end), "llm.json.encode: $ cannot encode a thread")
    raises({ ["a.b"] = { ["\0"] = io.stdout } }, "llm.json.encode: $.a.b.\0 cannot encode a userdata")
    local t = {}; t.self = { list = { t } }
    raises(t, "llm.json.encode: $.self.list[1] is a cycle")
    local k = setmetatable({}, { __tostring = function() return "my key" end })
    raises({ a = { [k] = 1 } }, "llm.json.encode: $.a has a key of type table (my key)")
  end)

  it("writes a table shared by two places twice (not a cycle)", function()
    local shared = { 1, 2 }
    local _, text = both({ a = shared, b = { shared, shared } })
    assert.are.equal('{"a":[1,2],"b":[[1,2],[1,2]]}', text)
  end)

  it("keeps the keys of large objects (past the keys kept on the stack) in order", function()
    for _, n in ipairs({ 63, 64, 65, 200, 1500 }) do
      local t, nested = {}, json.object()
      for i = 1, n do t["k" .. i] = i; nested[("%05d"):format(n - i)] = { i } end
      t.nested = nested
      both(t, n .. " keys")
    end
  end)

  it("reads tables with other metatables as the Lua encoder read them", function()
    local proxy_mt = { __index = function(_, i) return i * 10 end }
    both(setmetatable({ 1, 2 }, proxy_mt))
    both(setmetatable({ a = 1 }, { __index = { b = 2 } }))
    both(setmetatable({ 1, 2, 3 }, { __len = function() return 5 end, __index = function() return "x" end }))
    both(setmetatable({ 1, 2 }, { __metatable = A }))
    both(setmetatable({}, { __metatable = O }))
    both(setmetatable({ x = 1 }, { __metatable = "locked" }))
    both(setmetatable({}, { __pairs = function() return next, { a = 1, b = { 2 } } end,
                             __index = function(_, k) return k == "a" and 1 or nil end }))
    both({ v = setmetatable({}, { __eq = function() return true end }) })   -- `v == null` in Lua
    both({ v = setmetatable({ 1 }, { __eq = function() return false end }) })
    both(setmetatable({ 1, 2 }, { __len = function() return 1.5 end }))
  end)

  it("allows a metamethod to encode (a nested call) and recovers after a raise", function()
    local inner = setmetatable({ 1, 2 }, { __index = function() return json.encode({ z = { 1 } }) end,
                                           __len = function() return 3 end })
    local _, text = both({ x = inner })
    if V.lua ~= "lua5.1" and V.lua ~= "luajit" then
      assert.are.equal('{"x":[1,2,"{\\"z\\":[1]}"]}', text)
    end
    assert.has_error(function() json.encode({ bad = print }) end)
    assert.are.equal('{"a":[1,"b"]}', json.encode({ a = { 1, "b" } }))
    local deep = { msg = setmetatable({ 1 }, { __index = function() error("boom", 0) end,
                                              __len = function() return 2 end }) }
    local ok1, e1 = pcall(json.encode, deep)
    local ok2, e2 = pcall(oracle.encode, deep)
    assert.are.same({ ok2, e2 }, { ok1, e1 })
    if V.lua ~= "lua5.1" and V.lua ~= "luajit" then assert.are.equal("boom", e1) end
    assert.are.equal("[]", json.encode(json.array()))
  end)

  it("writes keys a child's metamethod removed from the parent as the Lua encoder did", function()
    local function make()
      local parent = {}
      for i = 1, 70 do parent["key" .. i] = i end
      parent.a = setmetatable({}, { __index = function() return 0 end,
        __len = function()
          for i = 1, 70 do parent["key" .. i] = nil end
          collectgarbage(); collectgarbage()
          return 2
        end })
      return parent
    end
    both(make())
  end)

  it("stops past 1,000 nested tables, where the decoder does (the Lua encoder goes deeper)", function()
    local t = "leaf"
    for _ = 1, 1000 do t = { t } end
    local _, text = both(t, "1,000 levels")
    assert.is_not_nil(json.decode(text))
    t = { t }
    local ok, err = pcall(json.encode, t)
    assert.is_false(ok)
    assert.are.equal("llm.json.encode: $" .. string.rep("[1]", 1000) .. " is nested more than 1000 levels deep", err)
    local okd = json.decode(string.rep("[", 1001) .. string.rep("]", 1001))
    assert.is_nil(okd)
  end)
end)
