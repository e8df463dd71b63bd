-- Arguments that are not valid JSON (raw text), corrected on the next reply.
return {
  { tool_calls = { { name = "get_weather", arguments = '{"city": "Seo' } } },
  { tool_calls = { { name = "get_weather", arguments = '{"city": "Seoul"}' } } },
  { text = "Seoul is 21 C." },
}
