-- lua5.1: yes
-- Identity of the package: llm._VERSION, the rockspecs, LICENSE and CHANGELOG agree.
local llm = require("llm")

local ROOT = os.getenv("LLM_ROOT") or "."

local F = require("support.fixtures")
local function read(path) return F.read(ROOT .. "/" .. path) end

-- The fields a rockspec sets, read as Lua in an empty environment (as LuaRocks does).
local function rockspec(path)
  local text = assert(read(path), "cannot read " .. path)
  local env = {}
  local chunk
  if setfenv then
    chunk = assert(loadstring(text, "=" .. path))
    setfenv(chunk, env)
  else
    chunk = assert(load(text, "=" .. path, "t", env))
  end
  chunk()
  return env
end

local function rockspec_files()
  local names = {}
  local p = assert(io.popen('ls "' .. ROOT .. '/rockspec"'))
  for name in p:lines() do
    if name:match("%.rockspec$") then names[#names + 1] = name end
  end
  p:close()
  return names
end

describe("identity", function()
  it("llm._VERSION is a semantic version, the same on every instance", function()
    assert.is_string(llm._VERSION)
    assert.truthy(llm._VERSION:match("^%d+%.%d+%.%d+$") or llm._VERSION:match("^%d+%.%d+%.%d+%-[%w%.]+$"),
      "not a semantic version: " .. llm._VERSION)
    assert.equal(llm._VERSION, llm.new()._VERSION)
  end)

  it("every rockspec names the package, and the released one carries llm._VERSION", function()
    local names = rockspec_files()
    assert.is_true(#names > 0, "no rockspec in rockspec/")
    local released = 0
    for _, name in ipairs(names) do
      local spec = rockspec("rockspec/" .. name)
      assert.equal("llm", spec.package, name)
      assert.equal("llm-" .. spec.version .. ".rockspec", name, "file name and version differ")
      assert.equal("MIT", spec.description.license, name)
      local v = spec.version:match("^(.-)%-%d+$")
      assert.is_string(v, name .. ": version is not <version>-<revision>")
      if v ~= "scm" then
        assert.equal(llm._VERSION, v, name .. " carries another version than llm._VERSION")
        released = released + 1
      end
    end
    assert.equal(1, released, "exactly one released rockspec, llm-" .. llm._VERSION .. "-<revision>")
  end)

  it("LICENSE is the MIT license of the llm authors", function()
    local text = assert(read("LICENSE"), "LICENSE is missing")
    assert.truthy(text:match("^MIT License\n"))
    assert.truthy(text:find("Copyright %(c%) %d%d%d%d the llm authors"))
    assert.truthy(text:find("Permission is hereby granted, free of charge", 1, true))
  end)

  it("CHANGELOG.md has a section for llm._VERSION and for every earlier release", function()
    local text = assert(read("CHANGELOG.md"), "CHANGELOG.md is missing")
    local versions = {}
    for v in text:gmatch("\n## (%d+%.%d+%.%d+)") do versions[#versions + 1] = v end
    assert.equal(llm._VERSION, versions[1], "the newest CHANGELOG section is not llm._VERSION")
    assert.is_true(#versions >= 2)
  end)
end)
