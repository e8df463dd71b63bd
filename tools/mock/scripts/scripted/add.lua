-- One tool call, then text; the text reports how many requests this key has made.
return {
  { tool_calls = { { name = "add", arguments = { a = 2, b = 3 } } } },
  function(n) return { text = "The sum is 5 (turn " .. n .. ")." } end,
}
