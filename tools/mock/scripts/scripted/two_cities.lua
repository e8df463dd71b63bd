-- Two parallel weather calls in one reply, then the answer.
return {
  { tool_calls = {
      { name = "get_weather", arguments = { city = "Seoul" } },
      { name = "get_weather", arguments = { city = "Busan" } },
  } },
  { text = "Seoul is 21 C and Busan is 24 C." },
}
