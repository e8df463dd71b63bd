-- Images and PDFs in a message: a part with `path` is read, base64-encoded and sent in the
-- shape each provider wants (OpenAI image_url / file, Anthropic image / document, Gemini
-- inline_data). A part a provider cannot take raises before anything is sent.
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")
local here = arg[0]:match("^(.*[/\\])") or ""

local image = { type = "image", path = here .. "media/cat.png" }
local report = { type = "file", path = here .. "media/report.pdf" }

for _, provider in ipairs({ "openai", "anthropic", "gemini" }) do
  local client = common.client(provider)
  local resp = assert(client:chat{ max_tokens = 200, messages = { { role = "user", content = {
    { type = "text", text = "What animal is drawn here, and what does the report say?" },
    image, report } } } })
  print(string.format("%-9s %s", provider, resp.text))
end

-- Ollama takes images but no documents: the refusal comes before any request.
local ok, err = pcall(function()
  return common.client("ollama"):chat{ messages = { { role = "user",
    content = { { type = "text", text = "Summarize" }, report } } } }
end)
print("ollama    " .. (ok and "sent" or tostring(err):gsub("^.-:%d+: ", "")))
