-- lua5.1: yes
-- Sandboxed hosts (API §11): with `os`, `io` and `debug` removed from the globals, llm still
-- loads and calls with an explicit api_key. The sandbox is a child process (a `load` with a
-- custom environment would not reach the modules that `require` loads).
local mockmod = require("support.mock")
local V = require("support.version")

local ROOT = os.getenv("LLM_ROOT") or "."
local BUILD = os.getenv("LLM_BUILD") or (ROOT .. "/build")
local KEY = "sk-test-SECRET-0123456789abcdef"

local SCRIPT = [=[
local root, build, url, key = arg[1], arg[2], arg[3], arg[4]
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath
os, io, debug = nil, nil, nil
package.loaded.os, package.loaded.io, package.loaded.debug = nil, nil, nil

local llm = require("llm")
local c = llm.client("openai", { model = "gpt-test", base_url = url .. "/v1", api_key = key })
print("chat: " .. assert(c:chat("from the sandbox")).text)
local s = assert(c:stream("streamed in the sandbox"))
local parts = {}
for t in s:text() do parts[#parts + 1] = t end
print("stream: " .. table.concat(parts))
local job = assert(c:batch({ "batched in the sandbox" }, { poll_interval = 0 }))
print("batch: " .. assert(job:wait())[1].response.text)
local ok, err = pcall(llm.client, "openai", { model = "gpt-test", base_url = url .. "/v1" })
print("no key: " .. tostring(ok) .. " " .. tostring(err))
if require("llm.compat").tasks then
  print("task: " .. llm.run(function() return assert(c:chat("in a task")).text end))
  local t = llm.spawn(function() error("boom in a task") end)
  local ok2, terr = pcall(llm.run, function() return llm.await(t) end)
  print("task error: " .. tostring(ok2) .. " " .. tostring(terr))
end
print("done")
]=]

describe("a sandbox without os, io and debug", function()
  local mock
  setup(function() mock = mockmod.start() end)
  teardown(function() if mock then mock:stop() end end)

  it("requires llm and calls with an explicit api_key", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(SCRIPT)
    f:close()
    local p = assert(io.popen(("env -u OPENAI_API_KEY %s %s %s %s %s %s 2>&1"):format(
      V.lua, path, ROOT, BUILD, mock.url, KEY)))
    local out = p:read("*a")
    p:close()
    os.remove(path)
    assert.matches("chat: [^\n]*from the sandbox", out)
    assert.matches("stream: [^\n]*streamed in the sandbox", out)
    assert.matches("batch: [^\n]*batched in the sandbox", out)   -- a multipart upload without os
    -- no os.getenv to fall back on: the missing key is reported, not an indexing error
    assert.matches("no key: false [^\n]*no API key for provider 'openai'", out)
    if require("llm.compat").tasks then
      assert.matches("task: [^\n]*in a task", out)
      assert.matches("task error: false [^\n]*boom in a task", out)
    end
    assert.matches("\ndone\n$", out)
    assert.is_nil(out:find("attempt to index", 1, true), out)
  end)
end)
