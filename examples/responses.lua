-- The OpenAI Responses API with a hosted tool (web search) passed through unchanged.
-- Hosted tool activity has no normalized meaning: it arrives as "raw" events.
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")

local client, mocked = common.client("openai", { api = "responses" })
-- Against the mock, replay a recorded web-search stream when the shared fixtures are there.
local fixtures = os.getenv("LLM_FIXTURES") or "../shared/fixtures"
local recorded = io.open(fixtures .. "/openai_responses/responses_web_search_stream.sse")
if recorded then recorded:close() end
local stream = assert(client:stream{
  instructions = "Answer with one sentence and cite nothing.",
  input = "What happened in the news today?",
  tools = { { type = "web_search" } },
  extra_headers = mocked and recorded
    and { ["x-mock-fixture"] = "openai_responses/responses_web_search_stream" } or nil,
})
local searches = 0
for ev in stream:events() do
  if ev.type == "text" then io.write(ev.text)
  elseif ev.type == "raw" and ev.name and ev.name:find("web_search_call", 1, true) then
    searches = searches + 1
  elseif ev.type == "error" then
    print("\nfailed: " .. tostring(ev.error))
    os.exit(1)
  end
end
local resp = assert(stream:final())
print(("\n-- %d web search events, response %s --"):format(searches, tostring(resp.id)))
