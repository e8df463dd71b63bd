--- llm.schema: a JSON Schema checker for tool arguments (the subset tools use).
--
-- `schema.validate(value, s, root)` checks a decoded JSON value against the schema `s` and
-- returns `true`, or `nil, message, errors` where `errors` is a list of
-- `{ path = "args.cities[2]", message = "expected string, got number" }` and `message` joins
-- them as `args.cities[2]: expected string, got number; ...`. Array positions in paths are
-- 1-based, as Lua users count. `schema.check(s)` tells whether a schema itself is well
-- formed (llm.tool uses it); it returns `true` or `nil, message`.
--
-- Keywords: type (a name or a list of names), properties, required, additionalProperties
-- (false or a schema), patternProperties (with translatable patterns), items, prefixItems,
-- minItems, maxItems, uniqueItems, enum, const, minimum, maximum, exclusiveMinimum,
-- exclusiveMaximum (number, or the draft-4 boolean form), multipleOf, minLength, maxLength
-- (counted in UTF-8 characters), pattern, anyOf, oneOf, allOf, not, nullable (OpenAPI /
-- Gemini), and local `$ref`s (`#/$defs/...`, `#/definitions/...`, `#`). Other keywords
-- (format, description, title, default, examples ...) are accepted and not checked.
--
-- Patterns: JSON Schema patterns are ECMA-262 regular expressions and Lua has none, so a
-- pattern is translated to a Lua pattern when it only uses what Lua patterns can express:
-- literal characters, `.`, classes `[...]`, escapes `\d \w \s \D \W \S` and escaped
-- punctuation, anchors `^` and `$`, and the quantifiers `* + ?` and `{n}`, `{n,}`, `{n,m}`
-- applied to a single character or class. A pattern with groups, alternation, lazy
-- quantifiers, look-arounds or back-references is not enforced (the value passes), since a
-- wrong rejection would send the model into a loop over a valid argument.
--
-- Empty tables: llm.json marks decoded arrays and objects, so `[]` and `{}` are told apart;
-- an unmarked empty table (built in Lua) counts as both an empty array and an empty object.
-- @module llm.schema
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local json = require("llm.json")

local M = {}

local type, ipairs, tostring, concat = type, ipairs, tostring, table.concat
local compat = require("llm.compat")
local mtype, floor, huge = compat.math_type, math.floor, math.huge
local null = json.null
local ARRAY_MT, OBJECT_MT = json.ARRAY_MT, json.OBJECT_MT

local MAX_ERRORS = 20
local MAX_DEPTH = 64

---------------------------------------------------------------------------------------
-- Values
-- @section values

-- "array", "object" or "both" (an unmarked empty table) for a table that is not null.
local function table_kind(v)
  local mt = getmetatable(v)
  if mt == ARRAY_MT then return "array" end
  if mt == OBJECT_MT then return "object" end
  if next(v) == nil then return "both" end
  if json.is_array(v) then return "array" end
  return "object"
end

--- The JSON type name of a Lua value: null, boolean, number, string, array, object.
---@param v any
---@return string type
function M.type_of(v)
  if v == null or v == nil then return "null" end
  local t = type(v)
  if t == "table" then
    local k = table_kind(v)
    return k == "both" and "object" or k
  end
  if t == "number" or t == "string" or t == "boolean" then return t end
  return t -- function, userdata ...: never valid JSON
end

local function is_integer(v)
  if mtype(v) == "integer" then return true end
  return mtype(v) == "float" and v == floor(v) and v > -huge and v < huge
end

local function has_type(v, name)
  if name == "null" then return v == null end
  if name == "boolean" then return type(v) == "boolean" end
  if name == "string" then return type(v) == "string" end
  if name == "number" then return type(v) == "number" and v == v end
  if name == "integer" then return type(v) == "number" and is_integer(v) end
  if type(v) ~= "table" or v == null then return false end
  local k = table_kind(v)
  if name == "array" then return k == "array" or k == "both" end
  if name == "object" then return k == "object" or k == "both" end
  return false
end

--- Whether two decoded JSON values are equal (tables compared deeply).
---@param a any
---@param b any
---@return boolean
local function deep_equal(a, b)
  if a == b then return true end
  if type(a) == "number" and type(b) == "number" then return a == b end
  if type(a) ~= "table" or type(b) ~= "table" or a == null or b == null then return false end
  for k, v in each(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in each(b) do
    if a[k] == nil then return false end
  end
  return true
end
M.equal = deep_equal

-- A short JSON rendering of a value for messages.
local function show(v)
  if type(v) == "string" then
    if #v > 40 then v = v:sub(1, 37) .. "..." end
    return string.format("%q", v):gsub("\\\n", "\\n")
  end
  if v == null then return "null" end
  if type(v) == "table" then
    local ok, s = pcall(json.encode, v)
    if ok then
      if #s > 60 then s = s:sub(1, 57) .. "..." end
      return s
    end
    return M.type_of(v)
  end
  return tostring(v)
end

local function key_path(path, k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return path .. "." .. k end
  return path .. "[" .. string.format("%q", tostring(k)) .. "]"
end

---------------------------------------------------------------------------------------
-- Patterns: a subset of ECMA-262 regular expressions as Lua patterns.

local CLASS_ESC = { d = "%d", D = "%D", w = "[%w_]", W = "[^%w_]", s = "%s", S = "%S" }
local IN_CLASS_ESC = { d = "%d", w = "%w_", s = "%s" }
local CTRL_ESC = { n = "\n", t = "\t", r = "\r", f = "\f", v = "\v" }

local function lua_literal(ch)
  if ch:match("[%^%$%(%)%%%.%[%]%*%+%-%?]") then return "%" .. ch end
  return ch
end

-- Translates one `[...]` class starting at i (the '['); returns the Lua class and the
-- index after ']', or nil when it cannot be expressed.
local function translate_class(p, i)
  local j = i + 1
  local out = { "[" }
  if p:sub(j, j) == "^" then out[2] = "^"; j = j + 1 end
  local first = true
  while j <= #p do
    local ch = p:sub(j, j)
    if ch == "]" and not first then
      out[#out + 1] = "]"
      return concat(out), j + 1
    elseif ch == "\\" then
      local e = p:sub(j + 1, j + 1)
      if e == "" then return nil end
      if IN_CLASS_ESC[e] then out[#out + 1] = IN_CLASS_ESC[e]
      elseif e:match("[DWSbB]") or e:match("%d") then return nil -- negated class inside a class, backrefs
      elseif CTRL_ESC[e] then out[#out + 1] = CTRL_ESC[e]
      else out[#out + 1] = lua_literal(e) end
      j = j + 2
    elseif ch == "[" and p:sub(j + 1, j + 1) == ":" then
      return nil -- POSIX classes are not ECMA
    else
      -- a range a-z passes through; other punctuation is escaped for Lua
      if ch == "-" and not first and p:sub(j + 1, j + 1) ~= "]" then out[#out + 1] = "-"
      else out[#out + 1] = lua_literal(ch) end
      j = j + 1
    end
    first = false
  end
  return nil
end

--- The Lua pattern for an ECMA regex, or nil when it uses more than Lua patterns express.
---@param p string an ECMA regex
---@return string? pattern
function M.lua_pattern(p)
  if type(p) ~= "string" then return nil end
  local out = {}
  local i, n = 1, #p
  local last -- the previous single item (a quantifier applies to it)
  while i <= n do
    local ch = p:sub(i, i)
    local item
    if ch == "^" then
      if i ~= 1 then return nil end
      out[#out + 1] = "^"; i = i + 1
    elseif ch == "$" then
      if i ~= n then return nil end
      out[#out + 1] = "$"; i = i + 1
    elseif ch == "(" or ch == ")" or ch == "|" then
      return nil
    elseif ch == "[" then
      local cls, nxt = translate_class(p, i)
      if not cls then return nil end
      item, i = cls, nxt
    elseif ch == "\\" then
      local e = p:sub(i + 1, i + 1)
      if e == "" or e:match("%d") or e:match("[bBkpPux]") then return nil end
      item = CLASS_ESC[e] or CTRL_ESC[e] or lua_literal(e)
      i = i + 2
    elseif ch == "." then
      item = "[^\n]"; i = i + 1
    elseif ch == "*" or ch == "+" or ch == "?" then
      if not last then return nil end
      if p:sub(i + 1, i + 1) == "?" or p:sub(i + 1, i + 1) == "+" then return nil end -- lazy / possessive
      out[#out + 1] = ch; last = nil; i = i + 1
    elseif ch == "{" then
      local a, b, close = p:match("^{(%d+)(,?%d*)}()", i)
      if not a or not last then
        if not a then item = "{"; i = i + 1 else return nil end
      else
        if p:sub(close, close) == "?" then return nil end
        local lo = tonumber(a)
        local hi
        if b == "" then hi = lo elseif b == "," then hi = nil else hi = tonumber(b:sub(2)) end
        if (hi and hi < lo) or lo > 100 or (hi and hi > 100) then return nil end
        out[#out] = nil -- replace the single item by its repetitions
        for _ = 1, lo do out[#out + 1] = last end
        if hi == nil then out[#out + 1] = last .. "*"
        else for _ = lo + 1, hi do out[#out + 1] = last .. "?" end end
        last = nil
        i = close
      end
    else
      item = lua_literal(ch); i = i + 1
    end
    if item then out[#out + 1] = item; last = item end
  end
  return concat(out)
end

---------------------------------------------------------------------------------------
-- Validation

local function ulen(s)
  return compat.utf8.len(s) or #s
end

local function resolve_ref(root, ref)
  if ref == "#" then return root end
  local ptr = ref:match("^#(/.*)$")
  if not ptr then return nil end
  local node = root
  for part in ptr:gmatch("/([^/]*)") do
    part = part:gsub("~1", "/"):gsub("~0", "~")
    if type(node) ~= "table" then return nil end
    local nxt = node[part]
    if nxt == nil and tonumber(part) then nxt = node[tonumber(part) + 1] end
    node = nxt
  end
  if type(node) ~= "table" then return nil end
  return node
end

local function type_list(t)
  if type(t) == "string" then return { t } end
  if type(t) == "table" then return t end
  return nil
end

local validate -- forward

local function sub_ok(v, s, ctx, path, depth)
  local sub = { root = ctx.root, errors = {} }
  validate(v, s, sub, path, depth)
  return #sub.errors == 0, sub.errors
end

function validate(v, s, ctx, path, depth)
  if #ctx.errors >= MAX_ERRORS then return end
  if s == true or s == nil then return end
  local function fail(msg, at)
    if #ctx.errors < MAX_ERRORS then
      ctx.errors[#ctx.errors + 1] = { path = at or path, message = msg }
    end
  end
  if s == false then return fail("no value is allowed here") end
  if type(s) ~= "table" then return end
  if depth > MAX_DEPTH then return fail("schema nesting too deep (a $ref cycle?)") end

  if type(s["$ref"]) == "string" then
    local target = resolve_ref(ctx.root, s["$ref"])
    if not target then return fail("unresolvable $ref " .. s["$ref"]) end
    validate(v, target, ctx, path, depth + 1)
  end

  -- type
  local types = type_list(s.type)
  if types and #types > 0 then
    local ok = false
    for _, t in ipairs(types) do
      if has_type(v, t) then ok = true; break end
    end
    if not ok and s.nullable == true and v == null then ok = true end
    if not ok then
      return fail("expected " .. concat(types, " or ") .. ", got " .. M.type_of(v))
    end
  end
  if v == null and s.nullable == true then return end

  -- enum / const
  if type(s.enum) == "table" then
    local ok = false
    for _, e in ipairs(s.enum) do
      if deep_equal(v, e) then ok = true; break end
    end
    if not ok then
      local shown = {}
      for i, e in ipairs(s.enum) do
        if i > 10 then shown[#shown + 1] = "..."; break end
        shown[#shown + 1] = show(e)
      end
      fail("expected one of " .. concat(shown, ", ") .. ", got " .. show(v))
    end
  end
  if s.const ~= nil and not deep_equal(v, s.const) then
    fail("expected " .. show(s.const) .. ", got " .. show(v))
  end

  local vt = type(v)
  -- numbers
  if vt == "number" then
    if type(s.minimum) == "number" then
      if s.exclusiveMinimum == true then
        if not (v > s.minimum) then fail("must be > " .. show(s.minimum) .. ", got " .. show(v)) end
      elseif not (v >= s.minimum) then fail("must be >= " .. show(s.minimum) .. ", got " .. show(v)) end
    end
    if type(s.maximum) == "number" then
      if s.exclusiveMaximum == true then
        if not (v < s.maximum) then fail("must be < " .. show(s.maximum) .. ", got " .. show(v)) end
      elseif not (v <= s.maximum) then fail("must be <= " .. show(s.maximum) .. ", got " .. show(v)) end
    end
    if type(s.exclusiveMinimum) == "number" and not (v > s.exclusiveMinimum) then
      fail("must be > " .. show(s.exclusiveMinimum) .. ", got " .. show(v))
    end
    if type(s.exclusiveMaximum) == "number" and not (v < s.exclusiveMaximum) then
      fail("must be < " .. show(s.exclusiveMaximum) .. ", got " .. show(v))
    end
    if type(s.multipleOf) == "number" and s.multipleOf > 0 then
      local q = v / s.multipleOf
      if math.abs(q - floor(q + 0.5)) > 1e-9 then
        fail("must be a multiple of " .. show(s.multipleOf) .. ", got " .. show(v))
      end
    end
  end

  -- strings
  if vt == "string" then
    if type(s.minLength) == "number" and ulen(v) < s.minLength then
      fail(string.format("must be at least %d characters long, got %d", s.minLength, ulen(v)))
    end
    if type(s.maxLength) == "number" and ulen(v) > s.maxLength then
      fail(string.format("must be at most %d characters long, got %d", s.maxLength, ulen(v)))
    end
    if type(s.pattern) == "string" then
      local lp = M.lua_pattern(s.pattern)
      if lp then
        local ok, found = pcall(string.find, v, lp)
        if ok and not found then fail("does not match the pattern " .. show(s.pattern)) end
      end
    end
  end

  if vt == "table" and v ~= null then
    local kind = table_kind(v)
    -- arrays
    if kind == "array" or kind == "both" then
      local n = #v
      if type(s.minItems) == "number" and n < s.minItems then
        fail(string.format("must have at least %d item%s, got %d", s.minItems, s.minItems == 1 and "" or "s", n))
      end
      if type(s.maxItems) == "number" and n > s.maxItems then
        fail(string.format("must have at most %d item%s, got %d", s.maxItems, s.maxItems == 1 and "" or "s", n))
      end
      local prefix = type(s.prefixItems) == "table" and s.prefixItems or nil
      local items = s.items
      if type(items) == "table" and items[1] ~= nil and getmetatable(items) ~= OBJECT_MT then
        prefix, items = items, s.additionalItems -- draft-4 tuple form
      end
      for i = 1, n do
        local sch
        if prefix and prefix[i] ~= nil then sch = prefix[i] else sch = items end
        if sch ~= nil then validate(v[i], sch, ctx, path .. "[" .. i .. "]", depth + 1) end
      end
      if s.uniqueItems == true then
        for i = 2, n do
          for j = 1, i - 1 do
            if deep_equal(v[i], v[j]) then
              fail(string.format("duplicate of item %d", j), path .. "[" .. i .. "]")
            end
          end
        end
      end
    end
    -- objects
    if kind == "object" or kind == "both" then
      local props = type(s.properties) == "table" and s.properties or {}
      if type(s.required) == "table" then
        for _, name in ipairs(s.required) do
          if v[name] == nil then fail("required property is missing", key_path(path, name)) end
        end
      end
      local names = {}
      for k in each(v) do names[#names + 1] = k end
      table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
      local pprops = type(s.patternProperties) == "table" and s.patternProperties or nil
      for _, k in ipairs(names) do
        local kp = key_path(path, k)
        local known = false
        if props[k] ~= nil then
          known = true
          validate(v[k], props[k], ctx, kp, depth + 1)
        end
        if pprops and type(k) == "string" then
          for pat, sch in each(pprops) do
            local lp = M.lua_pattern(pat)
            if lp and k:find(lp) then
              known = true
              validate(v[k], sch, ctx, kp, depth + 1)
            end
          end
        end
        if not known then
          local ap = s.additionalProperties
          if ap == false then
            local allowed = {}
            for name in each(props) do allowed[#allowed + 1] = tostring(name) end
            table.sort(allowed)
            fail(#allowed > 0 and ("unknown property (expected one of: " .. concat(allowed, ", ") .. ")")
                 or "unknown property (no properties are allowed)", kp)
          elseif type(ap) == "table" then
            validate(v[k], ap, ctx, kp, depth + 1)
          end
        end
      end
      if type(s.minProperties) == "number" and #names < s.minProperties then
        fail(string.format("must have at least %d properties, got %d", s.minProperties, #names))
      end
      if type(s.maxProperties) == "number" and #names > s.maxProperties then
        fail(string.format("must have at most %d properties, got %d", s.maxProperties, #names))
      end
    end
  end

  -- combinators
  if type(s.allOf) == "table" then
    for _, sub in ipairs(s.allOf) do validate(v, sub, ctx, path, depth + 1) end
  end
  if type(s.anyOf) == "table" and #s.anyOf > 0 then
    local firsts = {}
    local ok = false
    for _, sub in ipairs(s.anyOf) do
      local good, errs = sub_ok(v, sub, ctx, path, depth + 1)
      if good then ok = true; break end
      firsts[#firsts + 1] = errs[1] and errs[1].message or "?"
    end
    if not ok then fail("matches none of the allowed forms (" .. concat(firsts, "; ") .. ")") end
  end
  if type(s.oneOf) == "table" and #s.oneOf > 0 then
    local count, firsts = 0, {}
    for _, sub in ipairs(s.oneOf) do
      local good, errs = sub_ok(v, sub, ctx, path, depth + 1)
      if good then count = count + 1 else firsts[#firsts + 1] = errs[1] and errs[1].message or "?" end
    end
    if count == 0 then fail("matches none of the allowed forms (" .. concat(firsts, "; ") .. ")")
    elseif count > 1 then fail("matches more than one of the allowed forms (oneOf)") end
  end
  if type(s["not"]) == "table" then
    if sub_ok(v, s["not"], ctx, path, depth + 1) then fail("matches a form that is not allowed") end
  end
end

--- Check a decoded JSON value against a schema: `true`, or `nil, message, errors`.
---@param value any the decoded JSON value
---@param s table the schema
---@param root? string the name of the value in paths ("args")
---@return true|nil ok
---@return string? message every problem, joined
---@return { path: string, message: string }[]? errors
function M.validate(value, s, root)
  local ctx = { root = s, errors = {} }
  validate(value, s, ctx, root or "args", 0)
  if #ctx.errors == 0 then return true end
  local parts = {}
  for i, e in ipairs(ctx.errors) do parts[i] = e.path .. ": " .. e.message end
  return nil, concat(parts, "; "), ctx.errors
end

---------------------------------------------------------------------------------------
-- Checking a schema itself

local TYPES = { object = true, array = true, string = true, number = true, integer = true,
                boolean = true, null = true }
local SCHEMA_MAPS = { properties = true, patternProperties = true, ["$defs"] = true, definitions = true }
local SCHEMA_LISTS = { anyOf = true, oneOf = true, allOf = true, prefixItems = true }
local SCHEMA_ONE = { additionalProperties = true, ["not"] = true, additionalItems = true }
local NUMBERS = { minimum = true, maximum = true, minLength = true, maxLength = true,
                  minItems = true, maxItems = true, multipleOf = true, minProperties = true,
                  maxProperties = true }

local function check(s, path, depth)
  if s == true or s == false then return true end
  if type(s) ~= "table" or s == null then return nil, path .. ": a schema must be a table" end
  if depth > MAX_DEPTH then return nil, path .. ": nested too deep" end
  if s.type ~= nil then
    local types = type_list(s.type)
    if not types then return nil, path .. ".type: expected a type name or a list of names" end
    for _, t in ipairs(types) do
      if not TYPES[t] then return nil, path .. ".type: unknown type " .. show(t) end
    end
  end
  for k in each(NUMBERS) do
    if s[k] ~= nil and type(s[k]) ~= "number" then return nil, path .. "." .. k .. ": expected a number" end
  end
  if s.required ~= nil then
    if type(s.required) ~= "table" then return nil, path .. ".required: expected a list of names" end
    for i, name in ipairs(s.required) do
      if type(name) ~= "string" then return nil, path .. ".required[" .. i .. "]: expected a string" end
    end
  end
  if s.enum ~= nil and (type(s.enum) ~= "table" or s.enum == null) then
    return nil, path .. ".enum: expected a list"
  end
  if s.pattern ~= nil and type(s.pattern) ~= "string" then return nil, path .. ".pattern: expected a string" end
  for k in each(SCHEMA_MAPS) do
    local m = s[k]
    if m ~= nil then
      if type(m) ~= "table" then return nil, path .. "." .. k .. ": expected a table of schemas" end
      for name, sub in each(m) do
        local ok, err = check(sub, key_path(path .. "." .. k, name), depth + 1)
        if not ok then return nil, err end
      end
    end
  end
  for k in each(SCHEMA_LISTS) do
    local l = s[k]
    if l ~= nil then
      if type(l) ~= "table" then return nil, path .. "." .. k .. ": expected a list of schemas" end
      for i, sub in ipairs(l) do
        local ok, err = check(sub, path .. "." .. k .. "[" .. i .. "]", depth + 1)
        if not ok then return nil, err end
      end
    end
  end
  for k in each(SCHEMA_ONE) do
    if s[k] ~= nil then
      local ok, err = check(s[k], path .. "." .. k, depth + 1)
      if not ok then return nil, err end
    end
  end
  if s.items ~= nil then
    if type(s.items) == "table" and s.items[1] ~= nil then
      for i, sub in ipairs(s.items) do
        local ok, err = check(sub, path .. ".items[" .. i .. "]", depth + 1)
        if not ok then return nil, err end
      end
    else
      local ok, err = check(s.items, path .. ".items", depth + 1)
      if not ok then return nil, err end
    end
  end
  return true
end

--- Whether a schema is well formed: `true`, or `nil, message`.
---@param s table the schema
---@param root? string the name of the schema in paths ("schema")
---@return true|nil ok
---@return string? message
function M.check(s, root)
  return check(s, root or "schema", 0)
end

return M
