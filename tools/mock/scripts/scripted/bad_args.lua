-- Arguments that break the schema (a number for a string, an extra property), corrected on
-- the next reply once the error result has come back.
return {
  { tool_calls = { { name = "get_weather", arguments = { city = 42, planet = "Earth" } } } },
  { tool_calls = { { name = "get_weather", arguments = { city = "Seoul" } } } },
  { text = "Seoul is 21 C." },
}
