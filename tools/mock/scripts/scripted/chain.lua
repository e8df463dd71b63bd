-- A three-step chain: each reply needs the result of the one before, then the answer.
return {
  { tool_calls = { { name = "lookup", arguments = { person = "Kim" } } } },
  { tool_calls = { { name = "get_weather", arguments = { city = "Seoul" } } } },
  { tool_calls = { { name = "add", arguments = { a = 21, b = 3 } } } },
  { text = "Kim lives in Seoul; it is 21 C there, 24 C by tonight." },
}
