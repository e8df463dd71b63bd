-- A small agent: a lookup tool and a calculator, chained by the model over several rounds
-- (look a fact up, compute with it, answer). The reply streams as it arrives.
--   lua5.4 examples/agent.lua [openai|anthropic|gemini|ollama] ["question"]
-- Uses the mock server at LLM_MOCK_URL when set, else the real API when the provider's key is
-- set (OPENAI_API_KEY, ...; for Ollama, OLLAMA_BASE_URL says a server runs), else a mock
-- server started for the run by llm.mock (which plays tools/mock/scripts/scripted/agent.lua).
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")
local llm = common.llm

---------------------------------------------------------------------------------------
-- The tools.

local FACTS = {
  everest = "Mount Everest is 8849 m high (2020 survey).",
  ["k2"] = "K2 is 8611 m high.",
  ["seoul"] = "Seoul has about 9.4 million inhabitants.",
  ["metre"] = "One metre is 3.28084 feet.",
}

local lookup = llm.tool{
  name = "lookup",
  description = "Look a fact up in the encyclopedia. Topics: " .. "everest, k2, seoul, metre.",
  parameters = { type = "object", properties = { topic = { type = "string", minLength = 1 } },
                 required = { "topic" }, additionalProperties = false },
  run = function(args)
    local fact = FACTS[args.topic:lower()]
    if not fact then return nil, "no entry for '" .. args.topic .. "'" end
    return fact
  end,
}

-- Arithmetic without `load`: + - * / ^, parentheses, unary minus, decimal numbers.
local function evaluate(src)
  local pos = 1
  local function skip() pos = src:find("%S", pos) or #src + 1 end
  local expr
  local function atom()
    skip()
    local c = src:sub(pos, pos)
    if c == "(" then
      pos = pos + 1
      local v = expr()
      skip()
      if src:sub(pos, pos) ~= ")" then error("expected ')' at position " .. pos, 0) end
      pos = pos + 1
      return v
    elseif c == "-" then
      pos = pos + 1
      return -atom()
    end
    local num = src:match("^%d+%.?%d*", pos) or src:match("^%.%d+", pos)
    if not num then error("unexpected '" .. c .. "' at position " .. pos, 0) end
    pos = pos + #num
    return tonumber(num)
  end
  local function power()
    local v = atom()
    skip()
    if src:sub(pos, pos) == "^" then pos = pos + 1; return v ^ power() end
    return v
  end
  local function term()
    local v = power()
    while true do
      skip()
      local op = src:sub(pos, pos)
      if op == "*" then pos = pos + 1; v = v * power()
      elseif op == "/" then pos = pos + 1; v = v / power()
      else return v end
    end
  end
  function expr()
    local v = term()
    while true do
      skip()
      local op = src:sub(pos, pos)
      if op == "+" then pos = pos + 1; v = v + term()
      elseif op == "-" then pos = pos + 1; v = v - term()
      else return v end
    end
  end
  local v = expr()
  skip()
  if pos <= #src then error("unexpected '" .. src:sub(pos, pos) .. "' at position " .. pos, 0) end
  return v
end

local calculator = llm.tool{
  name = "calculator",
  description = "Evaluate an arithmetic expression with + - * / ^ and parentheses.",
  parameters = { type = "object", properties = { expression = { type = "string", maxLength = 200 } },
                 required = { "expression" }, additionalProperties = false },
  run = function(args)
    local v = evaluate(args.expression) -- a syntax error raises: the model gets the message
    return { expression = args.expression, value = v }
  end,
}

---------------------------------------------------------------------------------------
-- The agent.

local provider = arg[1] or "openai"
local question = arg[2] or "How many feet high is Mount Everest?"
local client, mocked = common.client(provider, nil,
  { ["x-mock-script"] = "agent", ["x-mock-key"] = tostring(os.time()) .. tostring(os.clock()) })

print(("-- %s%s --"):format(provider, mocked and " (mock server)" or ""))
print("> " .. question)
local resp, err = client:run_tools{
  system = "Answer with the tools: look facts up, compute with the calculator. Be brief.",
  messages = { { role = "user", content = question } },
  tools = { lookup, calculator },
  max_steps = 6,
  stream = true,
  on_event = function(ev)
    if ev.type == "text" then io.write(ev.text); io.flush() end
  end,
  on_tool_call = function(call, _, msg)   -- the tool's value, and the message sent back
    local shown = type(msg.content) == "table" and llm.json.encode(msg.content) or msg.content
    print(("\n  [%s] %s(%s) -> %s"):format(msg.is_error and "error" or "tool", call.name,
      call.arguments_json, shown))
  end,
}
if not resp then
  io.stderr:write("\nfailed: ", tostring(err), "\n")
  os.exit(1, true) -- close the state, so the mock server started here is stopped
end
print()
print(("-- %s after %d model round trips; transcript of %d messages --"):format(
  resp.finish_reason, #resp.steps, #resp.messages))
