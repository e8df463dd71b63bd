-- lua5.1: yes
-- The README's "First five minutes" works as written: its script runs offline from another
-- folder, and its base URLs are where the mock serves each provider.
local ROOT = os.getenv("LLM_ROOT") or "."
local BUILD = os.getenv("LLM_BUILD") or (ROOT .. "/build")
local V = require("support.version")

local F = require("support.fixtures")
local function read(path) return assert(F.read(path), "cannot read " .. path) end

local function section(title)
  local text = read(ROOT .. "/README.md")
  local body = text:match("\n## " .. title .. "\n(.-)\n## ")
  assert(body, "README has no section '" .. title .. "'")
  return body
end

describe("README first five minutes", function()
  it("the mock script runs from another folder and prints the queued reply, then an echo", function()
    local code = section("First five minutes"):match("```lua\n(.-)```")
    assert.is_string(code)
    code = code:gsub("\n   ", "\n"):gsub("^   ", "")   -- the block is indented in a list item
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute('mkdir -p "' .. dir .. '"'))
    local f = assert(io.open(dir .. "/hello.lua", "wb"))
    f:write(code)
    f:close()
    local cmd = string.format(
      'cd "%s" && env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u GEMINI_API_KEY -u LLM_MOCK_URL '
      .. 'LUA_PATH="%s/lua/?.lua;%s/lua/?/init.lua;;" LUA_CPATH="%s/?.so;;" %s hello.lua 2>&1',
      dir, ROOT, ROOT, BUILD, V.lua)
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("*a")
    p:close()
    os.execute('rm -rf "' .. dir .. '"')
    assert.equal("Hello from the mock!\necho: Count to three\n", out)
  end)

  it("the base URL of each provider is where the mock serves it", function()
    local roots = require("llm.mock").providers
    local rows = 0
    for provider, url in section("First five minutes"):gmatch("| `(%w+)` | `http://127%.0%.0%.1:PORT([^`]*)` |") do
      rows = rows + 1
      assert.is_table(roots[provider], provider)
      assert.equal(roots[provider].path, url, provider)
    end
    assert.equal(4, rows)
  end)
end)
