-- lua5.1: yes
-- The JSON Schema checker for tool arguments: every keyword, paths in messages, JSON
-- arrays versus objects as llm.json decodes them, and pattern translation.
local schema = require("llm.schema")
local json = require("llm.json")

local function check(v, s)
  local ok, msg, errs = schema.validate(v, s)
  return ok, msg, errs
end

local function fails(v, s, expected)
  local ok, msg = check(v, s)
  assert.is_nil(ok, "expected a failure")
  if expected then
    assert.truthy(msg:find(expected, 1, true), "message was: " .. tostring(msg))
  end
  return msg
end

local function passes(v, s)
  local ok, msg = check(v, s)
  assert.is_true(ok, msg)
end

describe("schema.validate", function()
  it("checks types, naming the path", function()
    passes("x", { type = "string" })
    passes(1, { type = "integer" })
    passes(2.0, { type = "integer" })
    passes(2.5, { type = "number" })
    passes(true, { type = "boolean" })
    passes(json.null, { type = "null" })
    fails(2.5, { type = "integer" }, "args: expected integer, got number")
    fails("1", { type = "number" }, "args: expected number, got string")
    fails(json.null, { type = "string" }, "args: expected string, got null")
    fails(json.decode("[]"), { type = "object" }, "expected object, got array")
    fails(json.decode("{}"), { type = "array" }, "expected array, got object")
  end)

  it("takes a list of types and nullable", function()
    passes(json.null, { type = { "string", "null" } })
    passes("a", { type = { "string", "null" } })
    fails(3, { type = { "string", "null" } }, "expected string or null, got number")
    passes(json.null, { type = "string", nullable = true })
  end)

  it("tells JSON arrays from objects, including empty ones", function()
    passes(json.decode("[]"), { type = "array" })
    passes(json.decode("{}"), { type = "object" })
    passes({}, { type = "array" })  -- an unmarked empty Lua table is both
    passes({}, { type = "object" })
    passes({ 1, 2 }, { type = "array" })
    fails({ 1, 2 }, { type = "object" }, "expected object, got array")
  end)

  it("checks nested objects and arrays with 1-based paths", function()
    local s = { type = "object", properties = {
      cities = { type = "array", items = { type = "string" } },
      trip = { type = "object", properties = { days = { type = "integer", minimum = 1 } }, required = { "days" } },
    }, required = { "cities" } }
    passes(json.decode('{"cities":["Seoul","Busan"],"trip":{"days":3}}'), s)
    fails(json.decode('{"cities":["Seoul",7]}'), s, "args.cities[2]: expected string, got number")
    fails(json.decode('{"cities":[],"trip":{}}'), s, "args.trip.days: required property is missing")
    fails(json.decode('{"cities":[],"trip":{"days":0}}'), s, "args.trip.days: must be >= 1, got 0")
    fails(json.decode('{}'), s, "args.cities: required property is missing")
  end)

  it("reports every error, joined", function()
    local s = { type = "object", properties = { a = { type = "string" }, b = { type = "integer" } },
                required = { "c" } }
    local ok, msg, errs = check(json.decode('{"a":1,"b":"x"}'), s)
    assert.is_nil(ok)
    assert.equal(3, #errs)
    assert.truthy(msg:find("args.c: required property is missing; ", 1, true))
    assert.truthy(msg:find("args.a: expected string, got number", 1, true))
    assert.truthy(msg:find("args.b: expected integer, got string", 1, true))
  end)

  it("checks enum and const", function()
    passes("c", { enum = { "c", "f" } })
    fails("k", { type = "string", enum = { "c", "f" } }, 'args: expected one of "c", "f", got "k"')
    passes(3, { const = 3 })
    fails(4, { const = 3 }, "expected 3, got 4")
    passes(json.decode('{"a":[1]}'), { const = { a = { 1 } } })
  end)

  it("checks additionalProperties false or a schema", function()
    local s = { type = "object", properties = { a = { type = "string" } }, additionalProperties = false }
    passes({ a = "x" }, s)
    fails({ a = "x", b = 1 }, s, "args.b: unknown property (expected one of: a)")
    local s2 = { type = "object", additionalProperties = { type = "integer" } }
    passes({ x = 1, y = 2 }, s2)
    fails({ x = 1, y = "2" }, s2, "args.y: expected integer, got string")
    fails({ ["odd key"] = "2" }, s2, 'args["odd key"]: expected integer')
  end)

  it("checks number bounds", function()
    local s = { type = "number", minimum = 0, maximum = 10 }
    passes(0, s); passes(10, s)
    fails(-1, s, "must be >= 0"); fails(11, s, "must be <= 10")
    fails(0, { exclusiveMinimum = 0 }, "must be > 0")
    fails(5, { exclusiveMaximum = 5 }, "must be < 5")
    fails(0, { minimum = 0, exclusiveMinimum = true }, "must be > 0") -- draft 4 form
    fails(5, { maximum = 5, exclusiveMaximum = true }, "must be < 5")
    passes(0.3, { multipleOf = 0.1 })
    fails(7, { multipleOf = 2 }, "must be a multiple of 2")
  end)

  it("checks string lengths in characters", function()
    passes("한국", { type = "string", maxLength = 2 })
    fails("한국어", { type = "string", maxLength = 2 }, "must be at most 2 characters long, got 3")
    fails("", { type = "string", minLength = 1 }, "must be at least 1 characters long, got 0")
  end)

  it("checks array sizes and uniqueness", function()
    fails(json.decode("[]"), { type = "array", minItems = 1 }, "must have at least 1 item, got 0")
    fails({ 1, 2, 3 }, { type = "array", maxItems = 2 }, "must have at most 2 items, got 3")
    fails({ 1, 2, 1 }, { type = "array", uniqueItems = true }, "args[3]: duplicate of item 1")
    passes({ "a", 1 }, { type = "array", prefixItems = { { type = "string" }, { type = "integer" } } })
    fails({ 1, 1 }, { type = "array", prefixItems = { { type = "string" } } }, "args[1]: expected string")
  end)

  it("checks patterns that translate to Lua patterns", function()
    local s = { type = "string", pattern = "^[A-Z]{3}$" }
    passes("ICN", s)
    fails("ICNX", s, 'does not match the pattern "^[A-Z]{3}$"')
    fails("ic", s)
    passes("abc-123", { pattern = "\\d+" })        -- unanchored: found anywhere
    fails("abc", { pattern = "\\d+" })
    passes("a.b", { pattern = "^a\\.b$" })
    fails("axb", { pattern = "^a\\.b$" })
    passes("ab", { pattern = "^ab?c?$" })
    passes("x_1", { pattern = "^\\w{1,5}$" })
    fails("x_1234", { pattern = "^\\w{1,5}$" })
  end)

  it("does not enforce patterns Lua cannot express", function()
    passes("anything", { pattern = "^(cat|dog)$" })
    passes("anything", { pattern = "^(?=x)" })
    assert.is_nil(schema.lua_pattern("(a|b)"))
    assert.is_nil(schema.lua_pattern("a+?"))
    assert.is_nil(schema.lua_pattern("\\1"))
    assert.equal("^%d%d%d$", schema.lua_pattern("^\\d{3}$"))
    assert.equal("^[a-z_]+$", schema.lua_pattern("^[a-z_]+$"))
    assert.equal("%-[%.]", schema.lua_pattern("-[.]"))
  end)

  it("checks anyOf, oneOf, allOf and not", function()
    local s = { anyOf = { { type = "string" }, { type = "integer" } } }
    passes("a", s); passes(1, s)
    fails(true, s, "matches none of the allowed forms")
    local o = { oneOf = { { type = "integer" }, { type = "number" } } }
    fails(1, o, "more than one")
    passes(1.5, o)
    fails(3, { allOf = { { minimum = 1 }, { maximum = 2 } } }, "must be <= 2")
    fails("x", { ["not"] = { type = "string" } }, "not allowed")
  end)

  it("follows local $refs", function()
    local s = { type = "object", properties = { home = { ["$ref"] = "#/$defs/city" } },
                ["$defs"] = { city = { type = "object", properties = { name = { type = "string" } },
                                       required = { "name" } } } }
    passes({ home = { name = "Seoul" } }, s)
    fails({ home = {} }, s, "args.home.name: required property is missing")
    fails({ home = 1 }, { properties = { home = { ["$ref"] = "#/nowhere" } } }, "unresolvable $ref")
  end)

  it("names a different root", function()
    local _, msg = schema.validate(1, { type = "string" }, "input")
    assert.equal("input: expected string, got number", msg)
  end)
end)

describe("schema.check", function()
  it("accepts well formed schemas", function()
    assert.is_true(schema.check({ type = "object", properties = { a = { type = { "string", "null" } },
      b = { type = "array", items = { type = "integer" } } }, required = { "a" } }))
  end)

  it("names the first problem", function()
    local _, msg = schema.check({ type = "object", properties = { a = { type = "str" } } })
    assert.equal('schema.properties.a.type: unknown type "str"', msg)
    _, msg = schema.check({ type = "object", required = { 1 } })
    assert.equal("schema.required[1]: expected a string", msg)
    _, msg = schema.check({ type = "array", items = 3 })
    assert.equal("schema.items: a schema must be a table", msg)
    _, msg = schema.check({ type = "string", minLength = "3" })
    assert.equal("schema.minLength: expected a number", msg)
  end)
end)
