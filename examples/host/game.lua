--- The game llm-host runs: the agent (agent.lua) streams its answer while the frame loop
-- goes on; "drawing" prints the text whenever it grew.
--   build/llm-host [--sandbox] examples/host/game.lua [BASE_URL]
-- BASE_URL defaults to $LLM_MOCK_URL/v1 (the mock server); a sandboxed host (no os, io or
-- debug) must pass it. LUA_PATH / LUA_CPATH must find llm (lua/) and llm.core (the build
-- directory); make test-hosts sets them.
local llm = require("llm")
llm.configure{ blocking = false }        -- a call that would freeze the frame raises instead
local script = ...                       -- the host passes this file's path
local here = script and script:match("^(.*)/") or "."
local agent = dofile(here .. "/agent.lua")

local game = {}
local state, shown = nil, ""

function game.start(args)
  local env = os and os.getenv("LLM_MOCK_URL")
  local base = args[1] or (env and env .. "/v1")
  state = agent.start(llm, base)
end

function game.update(_frame)
  return state.done
end

function game.draw(frame)
  if state.text ~= shown then
    shown = state.text
    print(string.format("[frame %4d] %s", frame, shown))
  end
end

function game.result()
  local ok, why = agent.check(state)
  if not ok then return false, why end
  return true, "streamed: " .. state.text
end

return game
