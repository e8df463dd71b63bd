-- A two-turn tool conversation: the first request gets two parallel tool calls, the second
-- (after the tool results) the final answer. Later requests repeat the last reply.
return {
  { tool_calls = {
      { name = "get_weather", arguments = { city = "Paris" } },
      { name = "get_weather", arguments = { city = "Tokyo" } },
  } },
  { text = "It is sunny in Paris and raining in Tokyo." },
}
