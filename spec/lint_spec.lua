-- luacheck finds nothing in the library, the specs, the examples and bin/ (the same run as
-- `make lint`, with .luacheckrc), so a warning fails `make test` before it can land.
local ROOT = os.getenv("LLM_ROOT") or "."

describe("lint", function()
  it("luacheck reports no warning", function()
    local p = assert(io.popen(string.format(
      'cd "%s" && luacheck --no-color --formatter plain lua spec examples bin/* 2>&1; echo "exit=$?"', ROOT), "r"))
    local out = p:read("*a")
    p:close()
    local code = out:match("exit=(%d+)%s*$")
    local report = out:gsub("exit=%d+%s*$", "")
    assert.equal("0", code, report)
    assert.equal("", report)
  end)

  it("luacheck sees an undefined global (the configuration is in force)", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute('mkdir -p "' .. dir .. '/lua"'))
    local f = assert(io.open(dir .. "/lua/bad.lua", "wb"))
    f:write("return undefined_name\n")
    f:close()
    local p = assert(io.popen(string.format(
      'cd "%s" && luacheck --no-color --formatter plain --config "%s/.luacheckrc" lua 2>&1', dir, ROOT), "r"))
    local out = p:read("*a")
    p:close()
    os.execute('rm -rf "' .. dir .. '"')
    assert.truthy(out:find("undefined_name", 1, true), out)
  end)
end)
