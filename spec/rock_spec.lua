-- The rock: the README's LuaRocks command installs into a fresh tree (offline, nothing from
-- a rocks server), builds only the module and the mock, and what it installs works from a
-- folder outside the repository with only that tree on the paths: an example against the
-- mock started by llm.mock from the tree, and the example user spec under busted.
local ROOT = os.getenv("LLM_ROOT") or "."
local V = require("support.version")

-- LD_PRELOAD (ASan runs) stays away from the tools, the compiler and the examples.
local function sh(cmd) return V.run("unset LD_PRELOAD; " .. cmd) end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function release_rockspec()
  local p = assert(io.popen("ls " .. q(ROOT .. "/rockspec")))
  local found
  for name in p:lines() do
    if name:match("^llm%-%d+%.%d+%.%d+%-%d+%.rockspec$") then found = name end
  end
  p:close()
  return found
end

-- Runs cmd in dir with the tree's paths (`luarocks path --tree`) and nothing of the
-- repository's: no LLM_* variables, no keys, so the run is offline.
local function in_tree(tree, dir, cmd)
  return sh(("cd %s && eval \"$(luarocks --lua-version 5.4 path --tree %s)\" && "
    .. "env -u LLM_ROOT -u LLM_BUILD -u LLM_MOCK_BIN -u LLM_MOCK_URL -u OPENAI_API_KEY "
    .. "-u ANTHROPIC_API_KEY -u GEMINI_API_KEY -u OLLAMA_BASE_URL %s")
    :format(q(dir), q(tree), cmd))
end

describe("the rock", function()
  local tree, work, rockspec

  setup(function()
    rockspec = assert(release_rockspec(), "no released rockspec in rockspec/")
    tree = os.tmpname()
    os.remove(tree)
    work = os.tmpname()
    os.remove(work)
    assert(os.execute("mkdir -p " .. q(tree) .. " " .. q(work)))
    -- The README's command, into a temporary tree.
    local out, code = sh(("cd %s && luarocks --lua-version 5.4 --tree %s make rockspec/%s")
      :format(q(ROOT), q(tree), rockspec))
    assert(code == 0, "luarocks make failed:\n" .. out)
  end)

  teardown(function()
    if tree then os.execute("rm -rf " .. q(tree) .. " " .. q(work)) end
  end)

  it("installs the module, llm.mock, llm-mock with its scripts, and builds no tests", function()
    local lib, share = tree .. "/lib/lua/5.4/llm", tree .. "/share/lua/5.4/llm"
    assert.is_true(exists(lib .. "/core.so"))
    assert.is_true(exists(lib .. "/llm-mock"))
    assert.is_true(exists(lib .. "/mock-scripts/main.lua"))
    assert.is_true(exists(share .. "/init.lua"))
    assert.is_true(exists(share .. "/mock.lua"))
    assert.is_true(exists(tree .. "/bin/llm-lua"))
    -- LLM_ROCK=ON: neither the C tests nor the benchmarks are built
    assert.is_false(exists(ROOT .. "/build.luarocks/tests/c/test_sse"))
    assert.is_false(exists(ROOT .. "/build.luarocks/CTestTestfile.cmake"))
  end)

  it("depends on nothing from a rocks server", function()
    local env = {}
    assert(load(assert(io.open(ROOT .. "/rockspec/" .. rockspec)):read("*a"), "=rockspec", "t", env))()
    for _, dep in ipairs(env.dependencies or {}) do
      assert.matches("^lua[%s>=<~]", dep)
    end
  end)

  it("runs an example from a folder outside the repository, against the mock from the tree", function()
    assert(os.execute(("cp %s/examples/stream.lua %s/examples/common.lua %s/")
      :format(q(ROOT), q(ROOT), q(work))))
    local where = in_tree(tree, work, [[lua5.4 -e 'print(package.searchpath("llm.core", package.cpath))']])
    assert.equal(tree .. "/lib/lua/5.4/llm/core.so", where:match("[^\n]+"))
    local out, code = in_tree(tree, work, "lua5.4 stream.lua")
    assert.equal(0, code, out)
    assert.matches("-- openai (mock server) --", out, 1, true)
    assert.matches("-- finish: stop", out, 1, true)
  end)

  it("passes the example user spec with only the installed llm.mock", function()
    assert(os.execute(("cp %s/examples/spec/my_bot_spec.lua %s/"):format(q(ROOT), q(work))))
    local out, code = in_tree(tree, work, "lua5.4 $(command -v busted) -o TAP my_bot_spec.lua")
    assert.equal(0, code, out)
    assert.matches("ok 6 ", out, 1, true)
    assert.not_matches("not ok", out, 1, true)
  end)

  it("installs llm-lua, which streams a reply from the mock it starts", function()
    local out, code = in_tree(tree, work, "llm-lua --mock chat 'hi from the rock'")
    assert.equal(0, code, out)
    assert.equal("echo: hi from the rock\n", out)
  end)
end)

-- The same command for another Lua: the module is built against that Lua's headers
-- (LUA_INCDIR from LuaRocks), the mock still embeds Lua 5.4.
local function has(path) local f = io.open(path, "rb"); if f then f:close() end; return f ~= nil end
if has("/usr/include/lua5.3/lua.h") and has("/usr/bin/lua5.3") then
  describe("the rock on Lua 5.3", function()
    it("installs with --lua-version 5.3 and runs an example from outside the repository", function()
      local rockspec = assert(release_rockspec())
      local tree, work = os.tmpname(), os.tmpname()
      os.remove(tree)
      os.remove(work)
      assert(os.execute("mkdir -p " .. q(tree) .. " " .. q(work)))
      local out, code = sh(("cd %s && luarocks --lua-version 5.3 --tree %s make rockspec/%s")
        :format(q(ROOT), q(tree), rockspec))
      assert.equal(0, code, out)
      assert(os.execute(("cp %s/examples/stream.lua %s/examples/common.lua %s/"):format(q(ROOT), q(ROOT), q(work))))
      out, code = sh(("cd %s && eval \"$(luarocks --lua-version 5.3 path --tree %s)\" && "
        .. "env -u LLM_ROOT -u LLM_BUILD -u LLM_MOCK_BIN -u LLM_MOCK_URL -u OPENAI_API_KEY "
        .. "-u ANTHROPIC_API_KEY -u GEMINI_API_KEY lua5.3 stream.lua"):format(q(work), q(tree)))
      os.execute("rm -rf " .. q(tree) .. " " .. q(work))
      assert.equal(0, code, out)
      assert.matches("-- openai (mock server) --", out, 1, true)
    end)
  end)
end
