-- luacheck configuration (`make lint`: luacheck lua spec examples).

-- The library runs on Lua 5.1, 5.2, 5.3, 5.4 and LuaJIT: only the globals all of them share.
std = "min"
max_line_length = 120
-- LuaLS annotations (`---@param name type description`) cannot wrap: one annotation, one line.
max_comment_line_length = false
-- Methods keep the `obj:method()` form even when a body has no use for `self`.
self = false

-- Functions that exist on some Lua versions only. The code reads them behind a feature test
-- (`math.type and math.type(x)`, `table.unpack or unpack`), never assumes them; listing them
-- here keeps luacheck quiet about those reads while any other version-specific use still warns.
read_globals = {
  math = { fields = { "type", "tointeger", "maxinteger", "mininteger" } },
  table = { fields = { "pack", "unpack" } },
  "utf8", "unpack", "setfenv", "loadstring",
  "jit",   -- LuaJIT's module: lua/llm/compat.lua tells LuaJIT from PUC 5.1 by it
}

-- The schema checker writes `not (v >= minimum)` on purpose: NaN fails every comparison, so
-- the negated form rejects NaN where `v < minimum` would let it through.
files["lua/llm/schema.lua"] = { ignore = { "581" } }

files["spec/"] = {
  std = "+busted",
  -- Specs quote wire payloads (SSE lines, JSON bodies, fault headers) verbatim on one line:
  -- splitting them would hide what goes on the wire.
  max_line_length = false,
  -- Specs swap io.stderr for a capturing file to check what the library prints there.
  globals = { io = { fields = { stderr = { read_only = false } } } },
}

-- Host examples run inside their host, which provides these globals: Neovim's `vim`, LÖVE's
-- `love` (the game defines its callbacks on it), and LuaJIT's `jit` (both embed LuaJIT).
files["examples/nvim/"] = { read_globals = { "vim", "jit" } }
files["examples/love/"] = { globals = { "love" }, read_globals = { "jit" } }
