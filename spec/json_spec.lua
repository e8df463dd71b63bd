-- lua5.1: yes
local json = require("llm.json")
local V = require("support.version")

describe("llm.json.decode", function()
  it("gives integers for integer literals and floats for the others", function()
    local v = assert(json.decode('{"a":17,"b":-3,"c":1.5,"d":2.0,"e":1e2,"f":0,"g":-0}'))
    assert.are.equal(17, v.a); assert.are.equal(-3, v.b); assert.are.equal(1.5, v.c)
    assert.are.equal(2.0, v.d); assert.are.equal(100.0, v.e); assert.are.equal(0, v.f)
    assert.are.equal(0, v.g)
    local mtype = V.math_type
    assert.are.equal("integer", mtype(v.a)); assert.are.equal("integer", mtype(v.b))
    assert.are.equal("float", mtype(v.c))
    assert.are.equal("integer", mtype(v.f)); assert.are.equal("integer", mtype(v.g))
    if V.INTEGERS then
      assert.are.equal("float", math.type(v.d)); assert.are.equal("float", math.type(v.e))
    else                            -- LuaJIT, 5.1: one number type; integral means integer
      assert.are.equal("integer", mtype(v.d)); assert.are.equal("integer", mtype(v.e))
    end
  end)

  it("keeps integers exact beyond 2^53 (5.3+); LuaJIT and 5.1 give the nearest double", function()
    local v = assert(json.decode('[9007199254740993, -9007199254740993, 12345678901234567890]'))
    if V.INTEGERS then
      assert.are.equal(9007199254740993, v[1])
      assert.are.equal("integer", math.type(v[1]))
      assert.are.equal(-9007199254740993, v[2])
      assert.are.equal("float", math.type(v[3])) -- beyond 64 bits: the nearest double
    else
      assert.are.equal(2 ^ 53, v[1]); assert.are.equal(-(2 ^ 53), v[2])
      assert.are.equal(12345678901234567890, v[3])
    end
  end)

  it("tells [] from {} and marks arrays and objects", function()
    local v = assert(json.decode('{"a":[],"b":{},"c":[ ],"d":{ \n },"e":[1,2],"f":{"x":1}}'))
    assert.is_true(json.is_array(v.a))
    assert.is_false(json.is_array(v.b))
    assert.is_true(json.is_array(v.c))
    assert.is_false(json.is_array(v.d))
    assert.is_true(json.is_array(v.e))
    assert.is_false(json.is_array(v.f))
    assert.are.equal(json.ARRAY_MT, getmetatable(v.a))
    assert.are.equal(json.OBJECT_MT, getmetatable(v.b))
  end)

  it("round-trips empty containers unchanged", function()
    local text = '{"input":{},"items":[],"nested":[{},[[]]]}'
    assert.are.equal(text, json.encode(assert(json.decode(text))))
  end)

  it("decodes null to the json.null sentinel", function()
    local v = assert(json.decode('{"a":null,"b":[null,1]}'))
    assert.are.equal(json.null, v.a)
    assert.are.equal(json.null, v.b[1])
    assert.are.equal("null", tostring(json.null))
    assert.are.equal(json.null, json.decode("null"))
  end)

  it("decodes escapes and keeps UTF-8", function()
    local v = assert(json.decode('"a\\"b\\\\c\\/d\\n\\t\\r\\b\\f\\u00e9\\ud83c\\udf0d°"'))
    assert.are.equal('a"b\\c/d\n\t\r\b\fé🌍°', v)
  end)

  it("decodes scalars at the top level and tolerates whitespace", function()
    assert.are.equal(true, json.decode(" true "))
    assert.are.equal(false, json.decode("false"))
    assert.are.equal(42, json.decode("\n42\r\n"))
    assert.are.equal("x", json.decode('"x"'))
  end)

  it("returns nil and a message on bad input, never raises", function()
    local bad = { "", "   ", "{", '{"a":', "[1,]", "[1 2]", '{"a" 1}', '{a:1}', "01", "1.",
                  ".5", "tru", "nul", '"abc', '"\\x"', '"\\u12"', "[1]]", "{}x", "NaN",
                  "Infinity", "-", "{'a':1}" }
    -- (a raw control character inside a string is accepted when lua-cjson is present:
    -- a documented leniency of the fast path)
    for _, s in ipairs(bad) do
      local v, err = json.decode(s)
      assert.is_nil(v, "accepted: " .. s)
      assert.are.equal("string", type(err))
    end
    local v, err = json.decode(nil)
    assert.is_nil(v); assert.is_string(err)
  end)

  it("survives deep nesting without raising", function()
    local deep = string.rep("[", 100000)
    local v, err = json.decode(deep)
    assert.is_nil(v); assert.is_string(err)
  end)

  it("decodes a padded Anthropic event", function()
    local v = assert(json.decode('{"type":"content_block_stop","index":0      }'))
    assert.are.equal(0, v.index)
    assert.are.equal("integer", V.math_type(v.index))
  end)
end)

describe("llm.json.encode", function()
  it("writes integers as integers and floats exactly", function()
    assert.are.equal("17", json.encode(17))
    assert.are.equal("-3", json.encode(-3))
    assert.are.equal("0.1", json.encode(0.1))
    assert.are.equal(V.INTEGERS and "2.0" or "2", json.encode(2.0))   -- LuaJIT: 2.0 is 2
    assert.are.equal("9007199254740992", json.encode(9007199254740992))   -- all 16 digits
    assert.are.equal("0.3333333333333333", json.encode(1 / 3))
    for _, x in ipairs({ 0.1, 1 / 3, 1e300, -2.5e-300, 123456.789, math.pi, 2 ^ 60 + 0.0 }) do
      assert.are.equal(x, json.decode(json.encode(x)))
    end
  end)

  it("raises on non-finite numbers", function()
    assert.has_error(function() json.encode(0 / 0) end)
    assert.has_error(function() json.encode({ a = math.huge }) end)
    assert.has_error(function() json.encode(-math.huge) end)
  end)

  it("escapes strings and keeps UTF-8 bytes", function()
    assert.are.equal('"a\\"b\\\\c\\n\\t\\u0001\\u001f\\u007fé🌍"',
      json.encode('a"b\\c\n\t\1\31\127é🌍'))
    assert.are.equal('"a/b"', json.encode("a/b"))
  end)

  it("sorts keys so bodies are deterministic", function()
    assert.are.equal('{"a":1,"b":{"c":true,"d":false},"z":"x"}',
      json.encode({ z = "x", a = 1, b = { d = false, c = true } }))
  end)

  it("encodes sequences as arrays and empty tables as objects unless marked", function()
    assert.are.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
    assert.are.equal("{}", json.encode({}))
    assert.are.equal("[]", json.encode(json.array()))
    assert.are.equal("[]", json.encode(json.array({})))
    assert.are.equal("{}", json.encode(json.object()))
    assert.are.equal('{"properties":{},"required":[]}',
      json.encode({ properties = json.object(), required = json.array() }))
  end)

  it("encodes json.null and booleans", function()
    assert.are.equal('[null,true,false]', json.encode({ json.null, true, false }))
    assert.are.equal("null", json.encode(json.null))
  end)

  it("raises on mixed and sparse tables, naming the path", function()
    local ok, err = pcall(json.encode, { messages = { { role = "user" }, { 1, x = 2 } } })
    assert.is_false(ok)
    assert.truthy(err:find("$.messages[2]", 1, true), err)
    ok, err = pcall(json.encode, { a = { [1] = 1, [3] = 3 } })
    assert.is_false(ok)
    assert.truthy(err:find("$.a", 1, true), err)
    ok = pcall(json.encode, { [true] = 1 })
    assert.is_false(ok)
  end)

  it("builds no path string for a value that encodes (only when it raises)", function()
    -- 800 levels of { key_name_of_some_length = ... }: a path per value would be
    -- "$.key_name_of_some_length.key_..." at every level, megabytes of strings in all.
    local deep = "leaf"
    for _ = 1, 800 do deep = { key_name_of_some_length = deep } end
    collectgarbage(); collectgarbage()
    collectgarbage("stop")
    local before = collectgarbage("count")
    local text = json.encode(deep)
    local used = collectgarbage("count") - before
    collectgarbage("restart")
    assert.are.equal(800 * 28 + 6, #text)
    assert.is_true(used < 2048, ("%.0f KiB allocated"):format(used))   -- a path per value: 8 MiB
    local bad = { a = { { b = 1 }, { b = { c = 0 / 0 } } } }
    local ok, err = pcall(json.encode, bad)
    assert.is_false(ok)
    assert.truthy(err:find("$.a[2].b.c is not a finite number", 1, true), err)
  end)

  it("raises on functions and cycles", function()
    assert.has_error(function() json.encode({ f = print }) end)
    local t = {}; t.self = t
    assert.has_error(function() json.encode(t) end)
  end)

  it("round-trips a request-shaped body", function()
    local body = { model = "m", messages = { { role = "user", content = "hi\n" } },
                   max_tokens = 10, temperature = 0.25, tools = json.array(),
                   stop = json.array({ "\n\n" }) }
    local text = json.encode(body)
    assert.are.equal(text, json.encode(assert(json.decode(text))))
    assert.truthy(text:find('"tools":[]', 1, true))
    assert.truthy(text:find('"max_tokens":10', 1, true))
  end)
end)

describe("llm.json.is_array", function()
  it("tells marked and plain sequences apart from objects", function()
    assert.is_true(json.is_array({ 1, 2 }))
    assert.is_true(json.is_array(json.array()))
    assert.is_false(json.is_array({}))
    assert.is_false(json.is_array(json.object()))
    assert.is_false(json.is_array({ a = 1 }))
    assert.is_false(json.is_array({ 1, a = 1 }))
    assert.is_false(json.is_array("x"))
    assert.is_false(json.is_array(json.null))
  end)
end)

describe("llm.json decode speed", function()
  it("reports the rate for a 200-byte stream event (informational, not asserted)", function()
    local ev = '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello there, a sample delta"}}'
    ev = ev .. string.rep(" ", 200 - #ev)
    local n = 20000
    local t0 = os.clock()
    for _ = 1, n do json.decode(ev) end
    local dt = os.clock() - t0
    print(("json.decode: %d events of %d bytes in %.3f s CPU (~%d/s)"):format(n, #ev, dt,
      dt > 0 and math.floor(n / dt) or 0))
    assert.are.equal(0, json.decode(ev).index)
  end)
end)
