-- One call to a slow tool and one to a quick one, then the answer.
return {
  { tool_calls = {
      { name = "slow", arguments = {} },
      { name = "get_weather", arguments = { city = "Seoul" } },
  } },
  { text = "Done." },
}
