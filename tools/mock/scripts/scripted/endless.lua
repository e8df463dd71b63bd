-- A model that never stops calling tools (every request gets the same call).
return {
  { tool_calls = { { name = "get_weather", arguments = { city = "Seoul" } } } },
}
