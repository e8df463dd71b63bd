-- A call to a tool that fails, then an answer that works around it.
return {
  { tool_calls = { { name = "explode", arguments = { why = "testing" } } } },
  { text = "The tool failed; sorry." },
}
