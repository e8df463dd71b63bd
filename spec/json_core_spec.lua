-- lua5.1: yes
-- core.json_decode (csrc/json.c) against the Lua decoders kept as its test oracles
-- (spec/support/json_oracle.lua).
--
-- oracle.exact is the strict Lua decoder and oracle.lua the whole Lua path (lua-cjson plus
-- the fix-up walk, the exact decoder as fallback). The core must give the
-- same value as both on every valid document, and fail exactly where the exact decoder
-- fails. Documented differences, each checked below:
-- * nesting: the core stops at 1,000 levels (nil, "nesting too deep"); the exact decoder
--   has no limit of its own and fails only on a Lua stack overflow;
-- * the cjson fast path accepts a leading zero and a raw control character in a string;
--   the core, like the exact decoder, rejects both (RFC 8259).
-- Numbers follow tonumber in both: 2^63 and beyond become floats, 1e400 becomes
-- math.huge (inf) and 1e-400 becomes 0.0. -0 is the integer 0; -0.0 (and -1e-400) is the
-- float +0.0, because the Lua decoder computes tonumber(literal) + 0.0, which drops the sign.
local json = require("llm.json")
local oracle = require("support.json_oracle")
local core = require("llm.core")
local F = require("support.fixtures")
local V = require("support.version")
local FFFD = "\239\191\189"   -- U+FFFD

local A, O, null = json.ARRAY_MT, json.OBJECT_MT, json.null
local function cdecode(s) return core.json_decode(s, A, O, null) end

-- Deep equality that also compares number subtypes (5.3+), the sign of a zero and the markers.
local function same(a, b, path)
  path = path or "$"
  if a == b then
    if V.math_type(a) ~= V.math_type(b) then
      return false, ("%s: %s %s vs %s"):format(path, tostring(a), V.math_type(a), V.math_type(b))
    end
    if a == 0 and 1 / a ~= 1 / b then        -- an integer 0 gives inf, as +0.0 does
      return false, path .. ": sign of zero"
    end
    return true
  end
  if type(a) ~= "table" or type(b) ~= "table" then
    return false, ("%s: %s vs %s"):format(path, tostring(a), tostring(b))
  end
  if getmetatable(a) ~= getmetatable(b) then return false, path .. ": different marker" end
  for k, v in pairs(a) do
    local ok, where = same(v, b[k], path .. "." .. tostring(k))
    if not ok then return false, where end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "." .. tostring(k) .. ": missing" end
  end
  return true
end

-- The core and the exact decoder agree: same value, or both fail (the core with a byte
-- offset in its message).
local function agree(s, label)
  local cv, cerr = cdecode(s)
  local lv, lerr = oracle.exact(s)
  label = label or ("%q"):format(#s > 80 and s:sub(1, 80) .. "..." or s)
  if cv == nil and cerr ~= nil then
    assert(type(cerr) == "string" and cerr:find("^JSON: .* at byte %d+$"),
           label .. ": bad message " .. tostring(cerr))
    assert(lv == nil and lerr ~= nil,
           label .. ": core failed (" .. cerr .. ") but the Lua decoder gave a value")
    return nil, cerr
  end
  assert(lerr == nil, label .. ": Lua decoder failed (" .. tostring(lerr) .. "), core did not")
  local ok, where = same(cv, lv)
  assert(ok, label .. ": " .. tostring(where))
  return cv
end

local function bad(s)
  local v, err = cdecode(s)
  assert(v == nil and type(err) == "string", ("%q should fail"):format(s))
  agree(s)
  return err
end

describe("core.json_decode", function()
  it("is what json.decode uses when the core loads", function()
    local v = assert(json.decode('{"a":[],"b":{}}'))
    assert.are.equal(O, getmetatable(v)); assert.are.equal(A, getmetatable(v.a))
    assert.are.equal(O, getmetatable(v.b))
    assert.are.same({ nil, "JSON: expected a string, got nil" }, { json.decode(nil) })
  end)

  if not (F.dir()) then print("fixtures absent: the fixture corpus comparison is not run") end
  if F.dir() then it("agrees with both Lua paths on every fixture body and SSE payload", function()
    local dir = F.dir()
    local files, payloads = 0, 0
    for _, sub in ipairs(F.list(dir, "")) do
      for _, name in ipairs(F.list(dir, sub)) do
        local path = dir .. "/" .. sub .. "/" .. name
        if name:find("%.json$") then
          local s = assert(F.read(path))
          files = files + 1
          local v = agree(s, path)
          assert(v ~= nil, path .. " did not decode")
          assert(same(v, assert(oracle.lua(s))), path)
        elseif name:find("%.sse$") then
          files = files + 1
          local f = core.framer("sse")
          local evs = assert(f:feed(assert(F.read(path))))
          for _, e in ipairs(f:finish()) do evs[#evs + 1] = e end
          for i, e in ipairs(evs) do
            payloads = payloads + 1
            local v = agree(e.data, path .. " event " .. i)
            if v ~= nil then
              local ok, where = same(v, assert(oracle.lua(e.data)))
              assert(ok, path .. " event " .. i .. ": " .. tostring(where))
            end
          end
        end
      end
    end
    print(("%d fixtures at %s (%d SSE payloads)"):format(files, dir, payloads))
    assert.is_true(files > 0)
  end) end

  it("makes integers of integer literals and floats of the others", function()
    local v = assert(cdecode('[17,-3,0,-0,1.5,2.0,1e2,1E2,-0.0,1e-2,123456789012345678]'))
    local values = { 17, -3, 0, 0, 1.5, 2, 100, 100, 0, 0.01, 123456789012345678 }
    for i, t in ipairs({ "integer", "integer", "integer", "integer", "float", "float",
                         "float", "float", "float", "float", "integer" }) do
      assert.are.equal(values[i], v[i], "element " .. i)
      if V.INTEGERS then assert.are.equal(t, math.type(v[i]), "element " .. i) end
    end
    -- LuaJIT and 5.1: one number type; integers beyond 2^53 are the nearest double
    assert.are.equal(V.INTEGERS and 123456789012345678 or 123456789012345678.0, v[11])
    assert.is_true(1 / v[9] > 0)          -- -0.0 is +0.0, as in the Lua decoder
    agree('[17,-3,0,-0,1.5,2.0,1e2,1E2,-0.0,1e-2,123456789012345678]')
  end)

  it("converts big numbers as tonumber does", function()
    local cases = {
      { "9223372036854775807", math.maxinteger or 2.0 ^ 63, "integer" },   -- LuaJIT: 2^63
      { "-9223372036854775808", math.mininteger or -(2.0 ^ 63), "integer" },
      { "9223372036854775808", 2.0 ^ 63, "float" },
      { "-9223372036854775809", -(2.0 ^ 63), "float" },
      { "18446744073709551616", 2.0 ^ 64, "float" },
      { "1000000000000000000", 1000000000000000000, "integer" },  -- 19 digits
      { "9999999999999999999", 1e19, "float" },
      { "1e400", math.huge, "float" },
      { "-1e400", -math.huge, "float" },
      { "1e-400", 0.0, "float" },
      { "-1e-400", 0.0, "float" },
      { "-0.0e7", 0.0, "float" },
      { ("9"):rep(400), math.huge, "float" },
      { "0." .. ("0"):rep(300) .. "1", tonumber("0." .. ("0"):rep(300) .. "1"), "float" },
      { "1" .. ("0"):rep(70) .. ".5", tonumber("1" .. ("0"):rep(70) .. ".5"), "float" },
    }
    for _, c in ipairs(cases) do
      local v = cdecode(c[1])
      assert.are.equal(c[2], v, c[1])
      if V.INTEGERS then assert.are.equal(c[3], math.type(v), c[1]) end
      agree(c[1]); agree("[" .. c[1] .. "]")
    end
  end)

  it("marks arrays and objects and keeps [] apart from {}", function()
    local text = '{"input":{},"items":[],"nested":[{},[[]]],"sp":[ ],"so":{ \n }}'
    local v = assert(cdecode(text))
    assert.are.equal(A, getmetatable(v.items)); assert.are.equal(O, getmetatable(v.input))
    assert.are.equal(A, getmetatable(v.sp)); assert.are.equal(O, getmetatable(v.so))
    assert.are.equal('{"input":{},"items":[],"nested":[{},[[]]],"so":{},"sp":[]}',
                     json.encode(v))
    agree(text)
    local plain = assert(core.json_decode('[{}]'))  -- no metatables given: none set
    assert.is_nil(getmetatable(plain)); assert.is_nil(getmetatable(plain[1]))
  end)

  it("decodes null to the sentinel it is given", function()
    local v = assert(cdecode('{"a":null,"b":[null,1]}'))
    assert.are.equal(null, v.a); assert.are.equal(null, v.b[1]); assert.are.equal(1, v.b[2])
    assert.are.equal(null, cdecode("null"))
    assert.are.equal("N", core.json_decode("[null]", nil, nil, "N")[1])
    agree('{"a":null,"b":[null,1]}')
  end)

  it("builds containers of every size around the staging limit exactly", function()
    for n = 0, 40 do
      local items, pairs_ = {}, {}
      for i = 1, n do items[i] = tostring(i * 3); pairs_[i] = ('"k%d":%d'):format(i, i) end
      local a = assert(cdecode("[" .. table.concat(items, ",") .. "]"))
      assert.are.equal(n, #a)
      for i = 1, n do assert.are.equal(i * 3, a[i]) end
      local o = assert(cdecode("{" .. table.concat(pairs_, ",") .. "}"))
      local count = 0
      for k, x in pairs(o) do count = count + 1; assert.are.equal("k" .. x, k) end
      assert.are.equal(n, count)
      agree("[" .. table.concat(items, ",") .. "]")
      agree("{" .. table.concat(pairs_, ",") .. "}")
    end
  end)

  it("lets the last of repeated keys win, staged or not", function()
    assert.are.equal(2, cdecode('{"a":1,"a":2}').a)
    local parts = {}
    for i = 1, 40 do parts[i] = ('"k%d":%d'):format(i, i) end
    parts[3] = '"dup":1'; parts[30] = '"dup":2'      -- before and after the flush
    parts[5] = '"d2":1'; parts[9] = '"d2":2'         -- both staged
    parts[20] = '"d3":1'; parts[35] = '"d3":2'       -- both after the flush
    parts[16] = '"d4":1'; parts[17] = '"d4":2'       -- at the flush
    local s = "{" .. table.concat(parts, ",") .. "}"
    local v = assert(cdecode(s))
    assert.are.equal(2, v.dup); assert.are.equal(2, v.d2)
    assert.are.equal(2, v.d3); assert.are.equal(2, v.d4)
    agree(s)
  end)

  it("decodes escapes and surrogates as the Lua decoder does", function()
    local cases = {
      { [["\"\\\/\b\f\n\r\t"]], '"\\/\b\f\n\r\t' },
      { [["a\u0000b"]], "a\0b" },
      { [["\u00e9\u20AC\u0041"]], "é€A" },
      { [["\ud83d\ude00"]], "😀" },
      { [["x\uD83D\uDE00y"]], "x😀y" },
      { [["\ud800"]], FFFD },                                 -- lone high: U+FFFD
      { [["\udc00"]], FFFD },                                 -- lone low
      { [["\ud800\u0041"]], FFFD .. "A" },                    -- high, then a plain escape
      { [["\ud800\ud800"]], FFFD .. FFFD },
      { [["\ud800x"]], FFFD .. "x" },
      { [["\ud800\n"]], FFFD .. "\n" },
      { '"caf\195\169 \127 \255"', "caf\195\169 \127 " .. FFFD }, -- UTF-8 and DEL pass; a bad byte is U+FFFD
      { '"\237\160\128 \192\175 \226\130"', FFFD:rep(3) .. " " .. FFFD:rep(2) .. " " .. FFFD:rep(2) },
      { '"' .. ("long "):rep(400) .. '\\n"', ("long "):rep(400) .. "\n" },  -- buffer > 1 KiB
      { '{"k\\u00e9y":"\\"v\\""}', nil },
    }
    for _, c in ipairs(cases) do
      local v = agree(c[1])
      if c[2] then assert.are.equal(c[2], v, c[1]) end
    end
    assert.are.equal('"v"', cdecode('{"k\\u00e9y":"\\"v\\""}')["kéy"])
  end)

  it("rejects malformed text with nil and a message naming the byte", function()
    local cases = {
      "", " ", "\n\t ", "[", "]", "{", "}", "[1,]", "[,1]", "[1 2]", "[1,,2]", "[1\n,2,]",
      '{"a":1,}', '{"a" 1}', '{"a":}', '{a:1}', "{'a':1}", "{1:2}", '{"a":1 "b":2}', '{,}',
      '{"a"', '{"a":', '{"a":1', "tru", "truee", "nul", "nulL", "fals", "True", "NaN",
      "Infinity", "-Infinity", "+1", "01", "-01", "00", "-00", "1.", ".5", "1.e5", "1e",
      "1e+", "1e-", "-", "--1", "- 1", "0x10", "1_0", '"abc', '"\\', '"\\"', '"\\x"',
      '"\\u12"', '"\\u12G4"', '"\\U0041"', '"\\ud800\\u"', '"\\ud800\\udc0"', "/* c */1",
      "1 // c", "[1]x", "[1] [2]", '"a""b"', "1 2", "\f1", "1\v", "\239\187\1911",
      "\194\1601", "[1]\0", "\0", '"a\0b"', '"a\nb"', '"a\tb"', '"\31"', "[01]",
      '{"a":[1,{"b":2]}', '[{"a":1]}', "[" .. ("1,"):rep(50) .. "]",
    }
    for _, s in ipairs(cases) do
      local err = bad(s)
      assert.is_truthy(err:find("at byte %d+$"), s)
    end
    assert.are.equal("JSON: leading zero in number at byte 2", select(2, cdecode("[01]")))
    assert.are.equal("JSON: trailing characters at byte 4", select(2, cdecode("[1]x")))
    assert.are.equal("JSON: unexpected end of input at byte 1", select(2, cdecode("")))
  end)

  it("is stricter than the cjson fast path of the Lua decoder", function()
    -- RFC 8259: no leading zeros, no raw control characters in strings
    assert.is_nil((cdecode("[01]")))
    assert.is_nil((cdecode('["a\tb"]')))
    assert.is_nil((oracle.exact("[01]")))
    assert.is_nil((oracle.exact('["a\tb"]')))
  end)

  it("never crashes on a document cut at any byte or spliced with junk", function()
    local doc = '{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"h\\u00e9\\ud83d' ..
                '\\ude00 \\"q\\"\\n"},"logprobs":null,"finish_reason":null}],"usage":' ..
                '{"prompt_tokens":12,"x":-1.5e-3,"t":true,"f":false,"e":[],"o":{}}}'
    agree(doc)
    for i = 0, #doc - 1 do
      local v, err = cdecode(doc:sub(1, i))
      assert(v == nil and type(err) == "string", "prefix of " .. i .. " bytes")
      agree(doc:sub(1, i))
      agree(doc:sub(1, i) .. "]"); agree(doc:sub(1, i) .. "}"); agree(doc:sub(1, i) .. '"')
      agree(doc:sub(i + 1))
    end
  end)

  it("agrees with the Lua decoder on seeded random mutations", function()
    local doc = '{"a":[1,-2.5e3,"x\\u00e9y",true,false,null,{"b":{}},[]],"c":"\\ud83d\\ude00"}'
    local alphabet = '{}[]:,"\\-+.0123456789eEtrufalsn \t\r\n\0\31x\127\255u'
    local seed = 12345
    local function rnd(n)  -- deterministic LCG, independent of math.random's state
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n + 1
    end
    for _ = 1, 5000 do
      local s = doc
      for _ = 1, rnd(3) do
        local pos, op = rnd(#s), rnd(3)
        local k = rnd(#alphabet)
        local c = alphabet:sub(k, k)
        if op == 1 then s = s:sub(1, pos - 1) .. c .. s:sub(pos + 1)
        elseif op == 2 then s = s:sub(1, pos - 1) .. c .. s:sub(pos)
        else s = s:sub(1, pos - 1) .. s:sub(pos + 1) end
      end
      agree(s)
    end
  end)

  it("limits nesting to 1,000 levels without crashing", function()
    local ok = assert(cdecode(("["):rep(1000) .. ("]"):rep(1000)))
    assert.are.equal(A, getmetatable(ok))
    agree(("["):rep(1000) .. ("]"):rep(1000))
    local v, err = cdecode(("["):rep(1001) .. ("]"):rep(1001))
    assert.is_nil(v); assert.are.equal("JSON: nesting too deep at byte 1001", err)
    assert.is_truthy(oracle.exact(("["):rep(1001) .. ("]"):rep(1001)))  -- no limit there
    assert.is_truthy(cdecode(('{"a":'):rep(1000) .. "1" .. ("}"):rep(1000)))
    assert.is_nil((cdecode(('{"a":'):rep(1001) .. "1" .. ("}"):rep(1001))))
    assert.is_nil((cdecode(('[{"a":'):rep(600) .. "1" .. ("}]"):rep(600))))
    for _, s in ipairs({ ("["):rep(200000), ("{\"a\":"):rep(100000), ("[1,"):rep(100000) }) do
      local v2, err2 = cdecode(s)
      assert.is_nil(v2); assert.is_string(err2)
    end
  end)

  it("raises only on misuse", function()
    assert.has_error(function() core.json_decode({}) end)
    assert.has_error(function() core.json_decode("[]", "not a table") end)
    assert.has_error(function() core.json_decode("[]", nil, 42) end)
  end)
end)

describe("llm.json without the core", function()
  it("loads, and encoding and decoding name the missing core: its codec is the only one", function()
    local saved_json, saved_core = package.loaded["llm.json"], package.loaded["llm.core"]
    local saved_preload = package.preload["llm.core"]
    -- a fresh llm.json each time (LuaJIT remembers a module that failed to load)
    local function without_core(fn)
      package.loaded["llm.json"], package.loaded["llm.core"] = nil, nil
      package.preload["llm.core"] = function() error("no core here") end
      local ok, j = pcall(require, "llm.json")
      local r = { ok, j, pcall(fn, j) }
      package.loaded["llm.json"], package.loaded["llm.core"] = saved_json, saved_core
      package.preload["llm.core"] = saved_preload
      return r
    end
    local enc = without_core(function(j) return j.encode({ a = 1 }) end)
    local dec = without_core(function(j) return j.decode("[]") end)
    assert.is_true(enc[1], tostring(enc[2]))
    assert.is_false(enc[3])
    assert.is_truthy(tostring(enc[4]):find("no core here", 1, true))
    assert.is_false(dec[3])
    assert.is_truthy(tostring(dec[4]):find("no core here", 1, true))
  end)
end)
