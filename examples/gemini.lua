-- Google Gemini: the same request shape, generateContent and streamGenerateContent.
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")

local client = common.client("gemini")
local resp = assert(client:chat{ system = "Be brief.", messages = { { role = "user", content = "Name a planet." } } })
print("chat:   " .. resp.text)
io.write("stream: ")
for text in assert(client:stream("Name two moons.")):text() do io.write(text) end
print()
