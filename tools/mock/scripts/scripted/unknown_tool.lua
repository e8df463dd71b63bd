-- A call to a tool the application does not have, then an answer without it.
return {
  { tool_calls = { { name = "teleport", arguments = { to = "Mars" } } } },
  { text = "I cannot teleport you." },
}
