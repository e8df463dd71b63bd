-- Streaming: print a reply as it arrives, then the usage of the whole response.
--   make demo                       (against the built-in mock server, or the real API when
--                                    OPENAI_API_KEY / ANTHROPIC_API_KEY is set)
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")

local provider = arg[1] or common.default_provider()
local client, mocked = common.client(provider)
print(("-- %s%s --"):format(provider, mocked and " (mock server)" or ""))

local stream = assert(client:stream{
  system = "You are a concise storyteller.",
  messages = { { role = "user", content = "Tell a three-sentence story about a lighthouse keeper." } },
  max_tokens = 200,
  extra_headers = mocked and { ["x-mock-text"] =
    "The keeper counted ships for forty years. One night the lamp failed, and the sea went dark. "
    .. "He sang instead, and every boat came home.", ["x-mock-delay-ms"] = "30" } or nil,
})
for ev in stream:events() do
  if ev.type == "text" then
    io.write(ev.text)
    io.flush()
  elseif ev.type == "error" then
    io.stderr:write("\nstream failed: ", tostring(ev.error), "\n")
    os.exit(1)
  end
end
local resp = assert(stream:final())
print()
print(("-- finish: %s, tokens in/out: %s/%s --"):format(resp.finish_reason,
  tostring(resp.usage.input_tokens), tostring(resp.usage.output_tokens)))
