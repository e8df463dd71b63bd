-- llm.mock with Lua 5.4's to-be-closed variables: the server stops when the scope ends.
local llm = require("llm")
local mock = require("llm.mock")

describe("llm.mock <close>", function()
  it("stops the server when the variable goes out of scope", function()
    local url
    do
      local m <close> = assert(mock.start())
      url = m.url
      assert.equal("echo: hi", assert(m:client("ollama"):chat("hi")).text)
    end
    local c = llm.client("openai", { base_url = url .. "/v1", api_key = "k", model = "m",
                                     max_retries = 0, connect_timeout = 1, timeout = 2 })
    local _, err = c:chat("ping")
    assert.equal("connection", err.kind)
  end)
end)
