-- Structured output for examples/extract.lua: the JSON a model would give, as the reply's
-- text, or as the input of the tool a request forces (Anthropic's structured output).
local JSON = '{"title": "Casablanca", "year": 1942, "cast": ["Humphrey Bogart", "Ingrid Bergman", "Paul Henreid"]}'
return function(_, _, ctx)
  if ctx.forced_tool then return { tool_calls = { { name = ctx.forced_tool, arguments = JSON } } } end
  return { text = JSON }
end
