--- What differs between the Lua versions llm runs on (5.4, 5.3, LuaJIT 2.1, PUC 5.1), and
-- the guarded access to `os`, `io` and `debug` that sandboxed hosts remove. Every other
-- file takes these from here instead of testing versions itself (API §11).
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see below
local M = {}

local floor, char, byte = math.floor, string.char, string.byte
local select, type, error, tostring = select, type, error, tostring

-- Iterating with pairs: every library file says `local each = pairs` and loops with
-- `for k, v in each(t)`, never `in pairs(...)` or `in next, t`. The parser specialises a loop
-- whose iterator is named pairs or next (ISNEXT/ITERN), and the JIT of LuaJIT 2.1 as Debian 12
-- ships it (2.1.0-beta3, 2022-03) ends such loops early once one nested in another is
-- despecialised (LuaJIT issue 827, fixed upstream in 2022-04): the JSON encoder then wrote a
-- nested object as `{}` and request bodies lost keys. Under another name the loop is a plain
-- call of next; spec/compat_spec.lua checks both the rule and the pattern.
-- The same snapshots also miscompiled the encoder's key count with `each` now and then (a
-- two-element list counted as sparse), so on every LuaJIT that calls itself 2.1.0-beta3
-- (its snapshots of 2017 to 2023; later ones carry a rolling version) each library file
-- starts with jit.off(true, true): its functions run in LuaJIT's interpreter, while the
-- host's own code keeps its JIT.

-- Standard libraries a sandbox may have removed: read once, indexed only when present.
local os_lib, io_lib, debug_lib = os, io, debug

--- The running Lua: "Lua 5.4", "Lua 5.3", "Lua 5.1" or "LuaJIT" (as llm.core's `lua` field
-- names the Lua it was built for); `supported` is false on anything else (e.g. Lua 5.2).
M.lua = jit and "LuaJIT" or _VERSION
M.supported = M.lua == "Lua 5.4" or M.lua == "Lua 5.3" or M.lua == "LuaJIT" or M.lua == "Lua 5.1"
--- PUC Lua 5.1 cannot yield across pcall, metamethods or iterators: no tasks there.
M.tasks = M.lua ~= "Lua 5.1"
M.NO_TASKS = "llm tasks (llm.run, llm.spawn, and what uses them: gather, map, timeout, tools) "
  .. "need Lua 5.3, 5.4 or LuaJIT: Lua 5.1 cannot yield across pcall; call llm outside tasks "
  .. "(blocking) on Lua 5.1"
M.SUPPORTED = "llm runs on Lua 5.4, Lua 5.3, LuaJIT 2.1 and Lua 5.1"

M.unpack = table.unpack or unpack
M.pack = table.pack or function(...) return { n = select("#", ...), ... } end

-- Integers: 5.3+ have a subtype; on LuaJIT and 5.1 every number is a double, and an
-- integral one up to 2^53 (where doubles stop being exact) counts as an integer.
local TWO53 = 2 ^ 53
local function integral(x) return x == floor(x) and x >= -TWO53 and x <= TWO53 end

M.math_type = math.type or function(x)
  if type(x) ~= "number" then return nil end
  return integral(x) and "integer" or "float"
end

M.tointeger = math.tointeger or function(x)
  if type(x) ~= "number" or not integral(x) then return nil end
  if x == 0 then return 0 end                -- -0.0 too, as math.tointeger(-0.0) is 0
  return x
end

-- utf8.char and utf8.len (5.3+); on LuaJIT and 5.1 the same in Lua, with 5.4's rules: char
-- encodes any code point below 2^31 (a lone surrogate too), len counts only valid UTF-8
-- (no overlong forms, surrogates or code points above U+10FFFF) or returns nil, position.
-- `utf8_lua` is always built, so that 5.4 can check it against the real library.
do
  local function enc(cp)
    if type(cp) ~= "number" or cp < 0 or cp > 0x7FFFFFFF or cp ~= floor(cp) then
      error("bad argument to 'char' (value out of range)", 3)
    end
    if cp < 0x80 then return char(cp) end
    local tail, first_max, n = {}, 0x3F, 0
    while cp > first_max do             -- continuation bytes, last first
      n = n + 1
      tail[n] = 0x80 + cp % 64
      cp = floor(cp / 64)
      first_max = floor(first_max / 2)
    end
    local out = { char(0xFF - (first_max * 2 + 1) + cp) }   -- 110xxxxx, 1110xxxx, ...
    for i = n, 1, -1 do out[#out + 1] = char(tail[i]) end
    return table.concat(out)
  end

  local function char_fn(...)
    local n = select("#", ...)
    if n == 1 then return enc((...)) end
    local out = {}
    for i = 1, n do out[i] = enc((select(i, ...))) end
    return table.concat(out)
  end

  local MIN = { 0x80, 0x800, 0x10000 }   -- the smallest code point of a 2-, 3-, 4-byte form

  local function len_fn(s)
    local i, n, count = 1, #s, 0
    while i <= n do
      local c = byte(s, i)
      local extra, cp
      if c < 0x80 then extra, cp = 0, c
      elseif c >= 0xC0 and c < 0xE0 then extra, cp = 1, c - 0xC0
      elseif c >= 0xE0 and c < 0xF0 then extra, cp = 2, c - 0xE0
      elseif c >= 0xF0 and c < 0xF8 then extra, cp = 3, c - 0xF0
      else return nil, i end
      for k = 1, extra do
        local cc = byte(s, i + k)
        if not cc or cc < 0x80 or cc >= 0xC0 then return nil, i end
        cp = cp * 64 + (cc - 0x80)
      end
      if extra > 0 and cp < MIN[extra] then return nil, i end          -- overlong
      if cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil, i end
      i = i + extra + 1
      count = count + 1
    end
    return count
  end

  M.utf8_lua = { char = char_fn, len = len_fn }
end
M.utf8 = utf8 or M.utf8_lua

--- loadfile(path, "t", env) on every version (5.1 has no mode or env arguments).
function M.loadfile(path, env)
  if setfenv and M.lua == "Lua 5.1" then
    local chunk, err = loadfile(path)
    if chunk then setfenv(chunk, env) end
    return chunk, err
  end
  return loadfile(path, "t", env)
end

--- os.getenv(name), or nil where a sandbox removed `os`.
function M.getenv(name)
  if os_lib and os_lib.getenv then return os_lib.getenv(name) end
  return nil
end

--- Write to stderr; dropped where a sandbox removed `io`.
function M.warn(...)
  if io_lib and io_lib.stderr then io_lib.stderr:write(...) end
end

--- debug.traceback(co, msg) of a coroutine where `debug` is present; the bare message
-- elsewhere (sandboxed hosts get shorter tracebacks).
function M.traceback(co, msg)
  if debug_lib and debug_lib.traceback then return debug_lib.traceback(co, msg) end
  return tostring(msg)
end

--- An xpcall message handler: debug.traceback (which leaves non-string errors alone), or
-- the error itself without `debug`.
M.handler = debug_lib and debug_lib.traceback or function(e) return e end

return M
