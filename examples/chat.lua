-- One call to each provider: the same request, a normalized response.
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")

for _, provider in ipairs({ "openai", "anthropic" }) do
  local client, mocked = common.client(provider)
  local resp, err = client:chat{
    system = "Answer in one short sentence.",
    messages = { { role = "user", content = "What is the capital of Korea?" } },
    max_tokens = 60,
  }
  if resp then
    print(("%-10s%s %s  [%s, %s tokens]"):format(provider, mocked and "(mock)" or "", resp.text,
      resp.finish_reason, tostring(resp.usage.total_tokens)))
  else
    print(provider .. " failed: " .. tostring(err))
  end
end
