-- Ollama's native /api/chat (newline-delimited JSON stream). No key is needed; set
-- OLLAMA_BASE_URL for a server elsewhere than 127.0.0.1:11434.
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")

local client = common.client("ollama")
io.write("ollama: ")
local stream = assert(client:stream{ messages = { { role = "user", content = "Say hello in French." } },
                                     max_tokens = 50, temperature = 0.1 })
for text in stream:text() do io.write(text) end
local resp = assert(stream:final())
print(("\n-- %s, %s tokens out --"):format(resp.finish_reason, tostring(resp.usage.output_tokens)))
