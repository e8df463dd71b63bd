--- The agent every host example runs: one task that asks a question, lets the model call a
-- tool, and streams the answer into `state.text` as it arrives. The host only steps the loop
-- and shows `state.text`; nothing here blocks.
--
--   local agent = dofile("examples/host/agent.lua")
--   local state = agent.start(llm, base_url)   -- spawns the task, returns at once
--   ... each frame / wake-up: llm.step(0), then draw state.text; state.done says it ended
--
-- Against the mock server (`base_url` = its address), the reply is the scripted weather
-- conversation (tools/mock/scripts/scripted/weather.lua): two tool calls, then
-- `agent.EXPECTED`. With a key in OPENAI_API_KEY and no base_url, the real API answers.
local M = {}

--- The text the mock server's weather script streams as the final answer.
M.EXPECTED = "It is sunny in Paris and raining in Tokyo."

local FORECAST = { paris = "sunny", tokyo = "raining" }

--- Spawn the agent on `llm`'s loop. Returns the state table the host reads each frame:
-- `text` (the answer so far), `deltas` (text events received), `tool_calls`, `done`, `err`.
function M.start(llm, base_url, opts)
  opts = opts or {}
  local state = { text = "", deltas = 0, tool_calls = 0, done = false, err = nil }
  local client = llm.client("openai", {
    model = "gpt-4.1-mini",
    base_url = base_url,
    api_key = base_url and "mock-key" or opts.api_key,   -- explicit: sandboxed hosts have no os.getenv
    max_retries = 1,
    headers = base_url and {
      ["x-mock-script"] = "weather",
      ["x-mock-key"] = opts.key or string.format("agent-%.6f", llm.loop:now()),  -- one conversation per run
      ["x-mock-delay-ms"] = tostring(opts.delay_ms or 40),           -- a word every few frames
    } or nil,
  })
  local weather = llm.tool{
    name = "get_weather",
    description = "Today's weather in a city",
    parameters = { type = "object", properties = { city = { type = "string" } }, required = { "city" } },
    run = function(args)
      state.tool_calls = state.tool_calls + 1
      return { city = args.city, sky = FORECAST[args.city:lower()] or "unknown" }
    end,
  }
  state.task = llm.spawn(function()
    local resp, err = client:run_tools{
      messages = { { role = "user", content = "What is the weather in Paris and Tokyo?" } },
      tools = { weather },
      stream = true,
      on_event = function(ev)
        if ev.type == "text" then
          state.text = state.text .. ev.text
          state.deltas = state.deltas + 1
        end
      end,
    }
    state.done, state.err = true, err
    state.final = resp and resp.text
  end)
  return state
end

--- After the agent ended: true, or false and what went wrong (for the host's exit status).
function M.check(state)
  if not state.done then return false, "the agent did not finish" end
  if state.err then return false, "the agent failed: " .. tostring(state.err) end
  if state.text ~= M.EXPECTED then
    return false, string.format("streamed text %q, expected %q", state.text, M.EXPECTED)
  end
  if state.final ~= state.text then
    return false, string.format("final response %q differs from the streamed text", tostring(state.final))
  end
  if state.tool_calls ~= 2 then return false, "expected 2 tool calls, ran " .. state.tool_calls end
  if state.deltas < 2 then return false, "the answer arrived in one piece, not streamed" end
  return true
end

return M
