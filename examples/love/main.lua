--- A LÖVE 11 game that streams an agent's answer onto the screen while it keeps drawing.
-- LÖVE runs LuaJIT 2.1, so this loads the LuaJIT build of the module:
--   LLM_MOCK_URL=http://127.0.0.1:PORT love examples/love
--   xvfb-run -a love examples/love            (headless: an X server in memory)
-- llm.step(0) runs once per frame in love.update and never blocks; love.draw prints the
-- text the agent (examples/host/agent.lua) has streamed so far. With LLM_LOVE_CHECK=1 the
-- game quits by itself once the answer is complete: status 0 when the text drawn is exactly
-- what the server sent, 1 otherwise (or after 30 s).
local source = love.filesystem.getSource()            -- examples/love, absolute
local root = source:gsub("/+$", ""):gsub("/[^/]+/[^/]+$", "")
local build = os.getenv("LLM_BUILD_LUAJIT") or (root .. "/build-luajit")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local llm = require("llm")
llm.configure{ blocking = false }        -- a call that would freeze the frame raises instead
local agent = dofile(root .. "/examples/host/agent.lua")

local check = os.getenv("LLM_LOVE_CHECK") == "1"
local state, drawn, frames, elapsed = nil, nil, 0, 0

function love.load()
  local mock = os.getenv("LLM_MOCK_URL")
  state = agent.start(llm, mock and mock .. "/v1")
end

function love.update(dt)
  frames = frames + 1
  elapsed = elapsed + dt
  llm.step(0)
  if check then
    if state.done and drawn == state.text then
      local ok, why = agent.check(state)
      print(ok and string.format("love: drew %q after %d frames (%s)", drawn, frames, jit and jit.version or _VERSION)
               or ("love: " .. why))
      love.event.quit(ok and 0 or 1)
    elseif elapsed > 30 then
      print("love: the answer did not arrive within 30 s; drawn so far: " .. tostring(drawn))
      love.event.quit(1)
    end
  end
end

function love.draw()
  love.graphics.clear(0.1, 0.1, 0.15)
  love.graphics.setColor(1, 1, 1)
  love.graphics.printf(state.text, 20, 20, 600)
  love.graphics.setColor(0.6, 0.6, 0.6)
  love.graphics.print(state.done and "done" or ("streaming... frame " .. frames), 20, 200)
  drawn = state.text
end
