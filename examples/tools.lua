-- Tools: the model asks for the weather in two cities in one round; both calls run at the
-- same time (each tool waits 0.5 s, the round takes about 0.5 s, not 1 s).
--   lua5.4 examples/tools.lua [openai|anthropic|gemini|ollama]
-- Uses the mock server at LLM_MOCK_URL when set, else the real API when the provider's key is
-- set (OPENAI_API_KEY, ...; for Ollama, OLLAMA_BASE_URL says a server runs), else a mock
-- server started for the run by llm.mock.
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")
local llm = common.llm

local provider = arg[1] or "openai"
local client, mocked = common.client(provider, nil,
  { ["x-mock-script"] = "two_cities", ["x-mock-key"] = tostring(os.time()) .. tostring(os.clock()) })

local weather = llm.tool{
  name = "get_weather",
  description = "Current weather for a city",
  parameters = {
    type = "object",
    properties = { city = { type = "string", description = "City name, e.g. Seoul" } },
    required = { "city" },
    additionalProperties = false,
  },
  run = function(args, ctx)
    print(("  [round %d] looking up %s ..."):format(ctx.round, args.city))
    llm.sleep(0.5)                        -- stands in for a slow weather service
    print(("  [round %d] %s done"):format(ctx.round, args.city))
    return { city = args.city, celsius = args.city == "Seoul" and 21 or 24, sky = "clear" }
  end,
}

print(("-- %s%s --"):format(provider, mocked and " (mock server)" or ""))
local t0 = llm.clock:now()
local resp = assert(client:run_tools{
  messages = { { role = "user", content = "What is the weather in Seoul and in Busan right now?" } },
  tools = { weather },
  on_tool_call = function(call, _, msg)   -- the tool's value, and the message sent back
    print(("  %s(%s) -> %s"):format(call.name, call.arguments_json,
      type(msg.content) == "table" and llm.json.encode(msg.content) or msg.content))
  end,
})
print(resp.text)
print(("-- %d model round trips, %.2f s --"):format(#resp.steps, llm.clock:now() - t0))
