-- The agent of examples/host/agent.lua driven by a plain libuv loop (lua-luv), as a host
-- with its own event loop does: nothing polls on a timer, the loop sleeps in libuv until
-- llm's descriptor is readable (or llm's next timer is due), then calls llm.step(0).
--   lua5.4 examples/luv.lua
-- Uses the real API when OPENAI_API_KEY is set, else the mock server (LLM_MOCK_URL, or one
-- started from build/llm-mock for the run). Exits non-zero unless the streamed answer is
-- the one the server sent.
local common = dofile("examples/common.lua")
local llm = common.llm
local uv = require("luv")
local agent = dofile("examples/host/agent.lua")

local base = not os.getenv("OPENAI_API_KEY") and common.mock_url() .. "/v1" or nil
local state = agent.start(llm, base)

local fd = llm.pollfd()                   -- readable whenever llm.step has work
local poll = fd and uv.new_poll(fd)
local timer = uv.new_timer()             -- for timed work, when llm tells us its deadline
local wakeups, shown = 0, ""

local function pump()
  wakeups = wakeups + 1
  llm.step(0)
  if state.text ~= shown then
    io.write(state.text:sub(#shown + 1)); io.flush()
    shown = state.text
  end
  timer:stop()
  if state.done then
    if poll then poll:stop() end
    return
  end
  -- next_timeout() counts timers only; sockets show on the fd. A backend without an fd
  -- ("poll", llm.backend()) cannot wake us on I/O, so step it at the frame rate instead.
  local t = llm.next_timeout()
  if not poll then t = math.min(t or 1 / 60, 1 / 60) end
  if t then timer:start(math.ceil(t * 1000), 0, pump) end
end

if poll then poll:start("r", pump) end
pump()                 -- the first step starts the spawned task
uv.run("default")
io.write("\n")

local ok, why = agent.check(state)
if not ok then
  io.stderr:write("luv: ", why, "\n")
  os.exit(1)
end
print(string.format("luv: %d wake-ups, %d text deltas, %d tool calls (%s backend)", wakeups, state.deltas,
  state.tool_calls, llm.backend()))
