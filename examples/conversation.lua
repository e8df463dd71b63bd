-- A conversation remembers earlier turns. With the Chat Completions API the history is
-- resent each turn; with api = "responses" the turns chain previous_response_id instead.
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")

for _, api in ipairs({ "chat", "responses" }) do
  local client = common.client("openai", { api = api == "responses" and "responses" or nil })
  local conv = client:conversation{ system = "You are a friendly pirate. Keep answers short." }
  assert(conv:send("Hi, I'm Kim."))
  local resp = assert(conv:send("What's my name?"))
  print(("[%s] %s  (history: %d messages%s)"):format(api, resp.text, #conv.messages,
    api == "responses" and ", chained on " .. tostring(conv.last_response_id) or ""))
end
