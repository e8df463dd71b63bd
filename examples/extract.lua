-- Structured output you can trust: the reply is checked against the schema (resp.parsed, or
-- resp.parse_error with the path), and a stream shows the object as it fills in.
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")

local schema = {
  type = "object",
  properties = {
    title = { type = "string" },
    year = { type = "integer" },
    cast = { type = "array", items = { type = "string" } },
  },
  required = { "title", "year", "cast" },
  additionalProperties = false,
}
local request = {
  response_format = { type = "json_schema", name = "movie", schema = schema },
  messages = { { role = "user", content = "Extract the movie: 'Casablanca (1942), starring "
    .. "Humphrey Bogart, Ingrid Bergman and Paul Henreid.'" } },
}

for _, provider in ipairs({ "openai", "anthropic" }) do
  -- against the mock, the scripted reply "extract" plays a model that answers in JSON
  local client = common.client(provider, nil, { ["x-mock-script"] = "extract", ["x-mock-key"] = provider })
  local stream = assert(client:stream(request))
  local seen = ""
  for ev in stream:events() do
    if ev.type == "partial" then   -- the object so far, after each text delta that changed it
      local v = ev.value
      -- print it when a field or a cast member appears (strings grow on every delta)
      local shape = tostring(v.title ~= nil) .. tostring(v.year ~= nil) .. #(v.cast or {})
      if shape ~= seen then
        seen = shape
        print(string.format("%-9s partial: %s", provider, common.llm.json.encode(v)))
      end
    end
  end
  local resp = assert(stream:final())
  if resp.parsed then
    print(string.format("%-9s parsed:  %s (%d), %s", provider, resp.parsed.title, resp.parsed.year,
      table.concat(resp.parsed.cast, ", ")))
  else
    print(string.format("%-9s parse_error: %s", provider, resp.parse_error))
  end
end
