-- The conversation examples/agent.lua plays against the mock: a lookup, a calculation on
-- its result, then the answer.
return {
  { tool_calls = { { name = "lookup", arguments = { topic = "everest" } } } },
  { tool_calls = { { name = "calculator", arguments = { expression = "8849 * 3.28084" } } } },
  { text = "Mount Everest is 8849 m high, which is about 29032 feet." },
}
