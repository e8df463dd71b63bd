-- Stream semantics against the mock server: what counts as content for the timeouts, the
-- bound on held-back events, a finished stream that stops reading, close(), and the
-- provider quirks that change what a stream reports (OpenRouter's [DONE] on the Responses
-- route, Anthropic's server-side tools).
local mockmod = require("support.mock")
local llm = require("llm")
local json = require("llm.json")

local KEY = "sk-test-streams-0123456789"
local mock

setup(function() mock = mockmod.start() end)
teardown(function() if mock then mock:stop() end end)
before_each(function() mock:reset() end)

local merge = mockmod.merge

local MAKE = {
  openai = function(o, lib) return (lib or llm).client("openai", merge({ model = "m", base_url = mock.url .. "/v1", api_key = KEY }, o)) end,
  responses = function(o, lib) return (lib or llm).client("openai", merge({ model = "m", base_url = mock.url .. "/v1", api_key = KEY, api = "responses" }, o)) end,
  anthropic = function(o, lib) return (lib or llm).client("anthropic", merge({ model = "m", base_url = mock.url, api_key = KEY }, o)) end,
  gemini = function(o, lib) return (lib or llm).client("gemini", merge({ model = "m", base_url = mock.url .. "/v1beta", api_key = KEY }, o)) end,
  ollama = function(o, lib) return (lib or llm).client("ollama", merge({ model = "m", base_url = mock.url }, o)) end,
}

local function fault(spec) return { ["x-mock-fault"] = spec } end

local function collect(s)
  local evs = {}
  for ev in s:events() do evs[#evs + 1] = ev end
  return evs
end

------------------------------------------------------------------------------------------
describe("content decides the timeouts (metadata is not content)", function()
  -- Each fault sends only events without content, then holds the connection open.
  local CASES = {
    { "openai", "stall-after-events=1", "a role-only chunk" },
    { "openai", "empty-chunks=5", "empty deltas" },
    { "responses", "stall-after-events=3", "response.created, response.in_progress, an output item" },
    { "anthropic", "stall-after-events=3", "message_start, content_block_start, a ping" },
    { "anthropic", "empty-chunks=5", "empty text deltas" },
    { "gemini", "empty-chunks=5", "empty text parts" },
    { "ollama", "empty-chunks=5", "lines with empty content" },
  }
  for _, c in ipairs(CASES) do
    it(c[1] .. ": " .. c[3] .. " do not end the first-token clock", function()
      local cl = MAKE[c[1]]{ max_retries = 0, first_token_timeout = 0.3, headers = fault(c[2]) }
      local s = assert(cl:stream("a b c"))
      local evs = collect(s)
      local last = evs[#evs]
      assert.equal("error", last.type)
      assert.equal("timeout", last.error.kind)
      assert.equal("first_token", last.error.which)
      for i = 1, #evs - 1 do                                         -- held back, then handed out
        assert.is_true(evs[i].type == "raw" or evs[i].type == "usage")
      end
      local r = assert(MAKE[c[1]]{ max_retries = 0 }:chat("next"))    -- the mock is fine afterwards
      assert.equal("echo: next", r.text)
    end)
  end

  it("content followed by empty chunks only trips idle_timeout", function()
    local cl = MAKE.openai{ max_retries = 0, idle_timeout = 0.3, headers = fault("stall-after-events=3") }
    local s = assert(cl:stream("a b c d e f"))
    local _, err = s:final()
    assert.equal("timeout", err.kind)
    assert.equal("idle", err.which)
  end)
end)

------------------------------------------------------------------------------------------
describe("held-back events are bounded", function()
  it("endless empty chunks: the stream is handed out at the cap and counts as started", function()
    collectgarbage()
    local before = collectgarbage("count")
    local cl = MAKE.openai{ max_retries = 2, first_token_timeout = 60, headers = fault("empty-chunks=60000") }
    local s = assert(cl:stream("hi"))
    assert.equal(256, s.held)                            -- the cap, not the whole stream
    -- Nobody reads: back-pressure pauses the transfer, memory stays bounded.
    for _ = 1, 3000 do                                   -- generous: returns once paused
      if s.hs.paused or s.finished then break end
      llm.step(0.01)
    end
    assert.is_false(s.finished)
    assert.is_true(s.hs.paused)
    -- at most one more batch (the core queues 1 MiB of event data) past the high-water mark
    assert.is_true(s.pending:len() < 4096 + 12000, "pending " .. s.pending:len())
    collectgarbage()
    assert.is_true(collectgarbage("count") - before < 32 * 1024, "client memory grew past 32 MiB")
    s:close()
    assert.equal(1, #mock:requests())                    -- started: never silently retried
  end)

  it("a held-back stream that then fails is not retried once past the cap", function()
    local cl = MAKE.openai{ max_retries = 2, first_token_timeout = 0.5, headers = fault("empty-chunks=300") }
    local s = assert(cl:stream("hi"))
    local evs = collect(s)
    assert.equal(301, #evs)                              -- every event delivered, then the error
    assert.equal("first_token", evs[#evs].error.which)
    assert.equal(1, #mock:requests())
  end)
end)

------------------------------------------------------------------------------------------
describe("a finished stream stops reading", function()
  for _, p in ipairs{ "openai", "responses", "anthropic", "ollama" } do
    it(p .. ": events after the terminal one, connection held open, are ignored", function()
      local transfers = llm.loop:stats().transfers
      local cl = MAKE[p]{ max_retries = 0, idle_timeout = 0.3, headers = fault("after-done=3") }
      local s = assert(cl:stream("one two"))
      local resp, err = s:final()
      assert.is_nil(err)
      assert.equal("echo: one two", resp.text)
      for _, ev in ipairs(collect(s)) do assert.is_nil(ev) end
      assert.equal(transfers, llm.loop:stats().transfers)   -- the transfer is gone
      local r = assert(cl:chat("again"))                      -- the client is fine afterwards
      assert.equal("echo: again", r.text)
    end)
  end

  it("chat on the same connection after a stream was cut at its end", function()
    local cl = MAKE.openai{ max_retries = 0, idle_timeout = 0.3 }
    local s = assert(cl:stream{ messages = { { role = "user", content = "x" } },
                                extra_headers = fault("after-done=2") })
    assert(s:final())
    assert.equal("echo: y", assert(cl:chat("y")).text)
  end)
end)

------------------------------------------------------------------------------------------
describe("a reply that arrives in one piece", function()
  -- The whole reply (role, five deltas, finish, usage, [DONE]) comes in one batch; the first
  -- text is in the reader's hands before the batch's last records are decoded.
  local function counting(cl)
    local p = cl.provider
    local real, calls = p.finish_stream, { n = 0 }
    p.finish_stream = function(...) calls.n = calls.n + 1; return real(...) end
    return calls, function() p.finish_stream = real end
  end

  it("hands out the first text before decoding the rest of its batch, then all of it in order", function()
    local cl = MAKE.openai{ max_retries = 0, headers = { ["x-mock-events"] = "5" } }
    local calls, restore = counting(cl)
    local ok, err = pcall(function()
      local s = assert(cl:stream("hi"))
      local ev = s:next()
      assert.equal("raw", ev.type)               -- the role chunk
      ev = s:next()
      assert.equal("text", ev.type)
      assert.equal(0, calls.n)                   -- the finish, usage and [DONE] records wait
      local texts, types = { ev.text }, {}
      for e in s:events() do
        types[#types + 1] = e.type
        if e.type == "text" then texts[#texts + 1] = e.text end
      end
      assert.equal(1, calls.n)
      assert.equal("done", types[#types])
      assert.equal(5, #texts)
      local resp = assert(s:final())
      assert.equal(table.concat(texts), resp.text)
      assert.is_table(resp.usage)
    end)
    restore()
    assert(ok, err)
  end)

  it("close() after the first text drops the undecoded rest", function()
    local cl = MAKE.openai{ max_retries = 0, headers = { ["x-mock-events"] = "5" } }
    local calls, restore = counting(cl)
    local ok, err = pcall(function()
      local s = assert(cl:stream("hi"))
      assert.equal("raw", s:next().type)
      assert.equal("text", s:next().type)
      s:close()
      assert.is_nil(s:next())
      assert.equal("cancelled", select(2, s:final()).kind)
      assert.equal(0, calls.n)
    end)
    restore()
    assert(ok, err)
  end)

  it("a transfer that fails after the rest of a batch reports its error after those records", function()
    local m = mock.server
    m:push{ text = { "a", "b" }, cut_after = 4 }  -- role, a, b, finish; then a reset
    local cl = MAKE.openai{ max_retries = 0 }
    local evs = collect(assert(cl:stream("hi")))
    local types = {}
    for i, ev in ipairs(evs) do types[i] = ev.type end
    assert.equal("raw", types[1])                 -- the role chunk, then the two texts
    assert.equal("error", types[#types])
    local texts = 0
    for _, t in ipairs(types) do if t == "text" then texts = texts + 1 end end
    assert.equal(2, texts)
  end)
end)

------------------------------------------------------------------------------------------
describe("close", function()
  it("next() returns nil after close(), even with events read ahead", function()
    local s = assert(MAKE.openai{}:stream("a b c d e"))
    assert.is_truthy(s:next())
    assert.is_true(s.pending:len() > 0)                  -- read ahead
    s:close()
    assert.is_nil(s:next())
    local _, err = s:final()
    assert.equal("cancelled", err.kind)
  end)

  it("__close does the same as close()", function()
    local s = assert(MAKE.anthropic{}:stream("a b c d e"))
    assert.is_truthy(s:next())
    getmetatable(s).__close(s)
    assert.is_nil(s:next())
  end)
end)

------------------------------------------------------------------------------------------
describe("provider stream quirks", function()
  local function decode_all(P, events)
    local state = P.new_stream_state({ model = "m" })
    local out = {}
    for _, e in ipairs(events) do
      for _, ev in ipairs(P.decode_event(state, e)) do out[#out + 1] = ev end
    end
    return out, state
  end

  it("the Responses route accepts a stream that ends with data: [DONE] (OpenRouter)", function()
    local P = require("llm.providers.openai_responses")
    local function ev(t, fields)
      local o = { type = t }
      for k, v in pairs(fields or {}) do o[k] = v end
      return { name = t, data = json.encode(o) }
    end
    local evs, state = decode_all(P, {
      ev("response.created", { response = { id = "r1", status = "in_progress" } }),
      ev("response.output_text.delta", { output_index = 0, delta = "hi" }),
      ev("response.completed", { response = { id = "r1", status = "completed", output = {} } }),
      { data = "[DONE]" },
    })
    for _, e in ipairs(evs) do assert.are_not.equal("error", e.type) end
    assert.is_true(state.complete)
    local resp = assert(P.finish_stream(state))
    assert.equal("hi", resp.text)
    -- [DONE] without response.completed is an incomplete stream, not bad JSON
    local evs2, st2 = decode_all(P, { ev("response.output_text.delta", { delta = "x" }), { data = "[DONE]" } })
    for _, e in ipairs(evs2) do assert.are_not.equal("error", e.type) end
    local r2, ferr = P.finish_stream(st2)
    assert.is_nil(r2)
    assert.matches("response.completed", ferr.message)
  end)

  it("Anthropic server_tool_use (web search) is never a client tool_call while streaming", function()
    local P = require("llm.providers.anthropic")
    local function ev(obj) return { name = obj.type, data = json.encode(obj) } end
    local evs, state = decode_all(P, {
      ev{ type = "message_start", message = { id = "msg_1", model = "m", role = "assistant", usage = { input_tokens = 5, output_tokens = 1 } } },
      ev{ type = "content_block_start", index = 0, content_block = { type = "server_tool_use", id = "srvtoolu_1", name = "web_search", input = json.object() } },
      ev{ type = "content_block_delta", index = 0, delta = { type = "input_json_delta", partial_json = '{"query": ' } },
      ev{ type = "content_block_delta", index = 0, delta = { type = "input_json_delta", partial_json = '"lua"}' } },
      ev{ type = "content_block_stop", index = 0 },
      ev{ type = "content_block_start", index = 1, content_block = { type = "web_search_tool_result", tool_use_id = "srvtoolu_1", content = json.array() } },
      ev{ type = "content_block_stop", index = 1 },
      ev{ type = "content_block_start", index = 2, content_block = { type = "text", text = "" } },
      ev{ type = "content_block_delta", index = 2, delta = { type = "text_delta", text = "Lua is a language." } },
      ev{ type = "content_block_stop", index = 2 },
      ev{ type = "message_delta", delta = { stop_reason = "end_turn" }, usage = { output_tokens = 9 } },
      ev{ type = "message_stop" },
    })
    local types = {}
    for _, e in ipairs(evs) do
      assert.are_not.equal("tool_call", e.type)
      assert.are_not.equal("tool_call_done", e.type)
      types[e.type] = true
    end
    assert.is_true(types.raw and types.text)
    assert.is_true(state.complete)
    local resp = assert(P.finish_stream(state))
    assert.equal(0, #resp.tool_calls)
    assert.equal("Lua is a language.", resp.text)
    assert.equal("stop", resp.finish_reason)
    local blk = resp.raw.content[1]
    assert.equal("server_tool_use", blk.type)
    assert.equal("lua", blk.input.query)                 -- the input its deltas carried
  end)
end)
