--- Headless check of the plugin (llm_stream.lua) against the mock server:
--   LLM_MOCK_URL=http://127.0.0.1:PORT nvim --headless -u NONE -c 'luafile examples/nvim/run.lua'
-- Loads the module from lua/ and the LuaJIT build (LLM_BUILD_LUAJIT, default build-luajit),
-- streams a three-line reply into a new buffer, and quits with status 0 only when the buffer
-- holds exactly the text the server sent, after more than one wake-up (it really streamed).
local here = debug.getinfo(1, "S").source:match("^@(.*)/") or "."
local root = vim.fn.fnamemodify(here .. "/../..", ":p"):gsub("/$", "")
local build = os.getenv("LLM_BUILD_LUAJIT") or (root .. "/build-luajit")
package.path = here .. "/?.lua;" .. root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local function fail(msg)
  io.stderr:write("nvim: ", msg, "\n")
  vim.cmd("cquit 1")
end

local ok, llm = pcall(require, "llm")
if not ok then return fail(tostring(llm)) end
local plugin = require("llm_stream")
plugin.setup(llm)

local mock = os.getenv("LLM_MOCK_URL")
if not mock then return fail("LLM_MOCK_URL is not set (the mock server's address)") end
local client = llm.client("openai", { base_url = mock .. "/v1", api_key = "mock-key",
  model = "gpt-4.1-mini", headers = { ["x-mock-delay-ms"] = "20" } })

-- The mock answers "echo: " .. prompt, one word (with its leading white space) per event.
local prompt = "Three lines please:\nthe first line,\nand the last one."
local expected = vim.split("echo: " .. prompt, "\n", { plain = true })

local buf = vim.api.nvim_create_buf(false, true)
local finished, result, err = false, nil, nil
plugin.stream_into(buf, client, prompt, function(success, e)
  finished, result, err = true, success, e
end)
vim.wait(20000, function() return finished end, 10)

local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
plugin.teardown()
if not finished then return fail("the reply did not finish within 20 s") end
if not result then return fail("the stream failed: " .. tostring(err)) end
if table.concat(lines, "\n") ~= table.concat(expected, "\n") then
  return fail(string.format("buffer holds %q, expected %q", table.concat(lines, "\n"), table.concat(expected, "\n")))
end
if plugin.wakeups < 3 then return fail("only " .. plugin.wakeups .. " wake-ups: the reply did not stream") end
io.stdout:write(string.format("nvim: buffer has the %d streamed lines (%d wake-ups, %s)\n",
  #lines, plugin.wakeups, jit and jit.version or _VERSION))
vim.cmd("qall!")
