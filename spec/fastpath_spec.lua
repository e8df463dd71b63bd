-- needs: fixtures
-- lua5.1: yes
-- The fast paths of the common stream events (core.fast_*_text and the providers'
-- decode_fast): the same events, the same state and the same final response as the full
-- decode, on every fixture stream and on thousands of mutated events; anything the full
-- decoder would reject, or read differently, is left to it.

local json = require("llm.json")
local core = require("llm.core")
local C = require("llm.providers.common")
local F = require("support.fixtures")

local PROVIDERS = {
  { "openai_chat", "llm.providers.openai" },
  { "openai_compat", "llm.providers.openai" },
  { "anthropic", "llm.providers.anthropic" },
  { "openai_responses", "llm.providers.openai_responses" },
}

-- Runs `events` through P.decode_event; with `full`, P.decode_fast is off for the run.
-- Returns the events, the final response (or nil, err) and how many took the fast path.
local function run(P, events, full)
  local saved, hits = P.decode_fast, 0
  if full then
    P.decode_fast = function() return nil end
  else
    P.decode_fast = function(...)
      local ev = saved(...)
      if ev then hits = hits + 1 end
      return ev
    end
  end
  local ok, resp, err, all = pcall(F.run_stream, P, events)
  P.decode_fast = saved
  assert(ok, resp)
  return all, resp, err, hits
end

describe("fast paths on the fixture streams", function()
  local dir = F.dir()
  for _, pv in ipairs(PROVIDERS) do
    local folder, mod = pv[1], pv[2]
    it(folder .. ": the same events and final response as the full decode", function()
      local P = require(mod)
      local hits, streams = 0, 0
      for _, file in ipairs(F.list(dir, folder)) do
        if file:match("%.sse$") then
          streams = streams + 1
          local events = F.frame({ F.read(dir .. "/" .. folder .. "/" .. file) })
          local fast_evs, fast_resp, fast_err, n = run(P, events, false)
          local full_evs, full_resp, full_err = run(P, events, true)
          hits = hits + n
          assert.equal(#full_evs, #fast_evs, file)
          for i = 1, #full_evs do
            assert.is_true(F.same(full_evs[i], fast_evs[i]), file .. ": event " .. i)
            assert.is_true(F.same(fast_evs[i], full_evs[i]), file .. ": event " .. i)
          end
          assert.is_true(F.same(full_resp, fast_resp), file .. ": final response")
          assert.is_true(F.same(full_err, fast_err), file .. ": final error")
        end
      end
      assert.is_true(streams > 0)
      assert.is_true(hits > 0, folder .. ": no event took the fast path")
    end)

    it(folder .. ": decode_batch queues what decode_event gives, record by record", function()
      local P = require(mod)
      local queue = require("llm.queue")
      local hits = 0
      for _, file in ipairs(F.list(dir, folder)) do
        if file:match("%.sse$") then
          local events = F.frame({ F.read(dir .. "/" .. folder .. "/" .. file) })
          local full_evs, full_resp = run(P, events, true)
          -- the events as the core batches them, run as the client does once started
          local batch = { n = #events, names = {}, ids = {} }
          for i, ev in ipairs(events) do batch[i], batch.names[i], batch.ids[i] = ev.data, ev.name, ev.id end
          local state, q, i = P.new_stream_state({}), queue.new(), 1
          while i <= batch.n do
            local k
            i, k = P.decode_batch(state, batch, i, q)
            hits = hits + k
            if i <= batch.n then
              for _, ev in ipairs(P.decode_event(state, events[i])) do q:push(ev) end
              i = i + 1
            end
          end
          local got = {}
          while q:len() > 0 do got[#got + 1] = q:pop() end
          assert.equal(#full_evs, #got, file)
          for j = 1, #full_evs do
            assert.is_true(F.same(full_evs[j], got[j]), file .. ": event " .. j)
            assert.is_true(F.same(got[j], full_evs[j]), file .. ": event " .. j)
          end
          assert.is_true(F.same(full_resp, (P.finish_stream(state))), file .. ": final response")
        end
      end
      assert.is_true(hits > 0, folder .. ": no record took the batch path")
    end)
  end
end)

-- A chunk of each shape, the fast function, and how the full decode reads its text.
local SHAPES = {
  chat = {
    fast = function(s) return core.fast_chat_text(s) end,
    base = '{"id":"c1","object":"chat.completion.chunk","created":17,"model":"m","system_fingerprint":null,'
      .. '"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi \\u00e9\\n"},"logprobs":null,'
      .. '"finish_reason":null}],"usage":null}',
    full = function(obj)
      local ch = obj.choices and obj.choices[1]
      return type(ch) == "table" and type(ch.delta) == "table" and ch.delta.content or nil
    end,
  },
  anthropic = {
    fast = function(s) local _, t = core.fast_anthropic_text(s); return t end,
    base = '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi \\"there\\""}}',
    full = function(obj) return type(obj.delta) == "table" and obj.delta.text or nil end,
  },
  ollama = {
    fast = function(s) return core.fast_ollama_text(s) end,
    base = '{"model":"llama3.2","created_at":"2024-07-01T10:00:00.5Z","message":{"role":"assistant",'
      .. '"content":"Hi \\u00e9","images":null},"done":false}',
    full = function(obj) return type(obj.message) == "table" and obj.message.content or nil end,
  },
  responses = {
    fast = function(s) return core.fast_responses_text(s) end,
    base = '{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,'
      .. '"content_index":0,"delta":"Hi","logprobs":[]}',
    full = function(obj) return obj.delta end,
  },
}

describe("core.fast_*_text", function()
  it("read the text of the common event as json_decode does", function()
    for name, sh in pairs(SHAPES) do
      local t = sh.fast(sh.base)
      assert.is_not_nil(t, name)
      assert.equal(sh.full(assert(json.decode(sh.base))), t, name)
    end
    -- invalid UTF-8 inside the text becomes U+FFFD, as in the full decode
    local s = '{"type":"response.output_text.delta","delta":"a\255b"}'
    assert.equal(json.decode(s).delta, core.fast_responses_text(s))
    assert.equal("a\239\191\189b", core.fast_responses_text(s))
  end)

  it("leave to the full decode what they do not fully understand", function()
    local chat = {
      '{"choices":[{"index":0,"delta":{"content":"a","content":"b"}}]}',            -- repeated key
      '{"choices":[{"index":0,"delta":{"cont\\u0065nt":"a"}}]}',                     -- escaped key
      '{"choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"total_tokens":1}}', -- usage
      '{"choices":[{"index":0,"delta":{"content":"a"}}],"error":{"message":"x"}}',    -- error
      '{"choices":[{"index":1,"delta":{"content":"a"}}]}',                            -- choice 1
      '{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}',     -- finish
      '{"choices":[{"index":0,"delta":{"content":"a","tool_calls":[]}}]}',            -- tool calls
      '{"choices":[{"index":0,"delta":{"content":"a","refusal":"no"}}]}',             -- refusal
      '{"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{}}]}',     -- two choices
      '{"choices":[{"index":0,"delta":{"content":""}}]}',                             -- empty text
      '{"choices":[{"index":0,"delta":{"content":7}}]}',                              -- not a string
      '{"choices":[{"index":0,"delta":{"content":"a"}}],}',                           -- trailing comma
      '{"choices":[{"index":0,"delta":{"content":"a"}}]} x',                          -- trailing bytes
      '{"x":"\\q","choices":[{"index":0,"delta":{"content":"a"}}]}',                  -- bad escape
      '{"x":"a\1b","choices":[{"index":0,"delta":{"content":"a"}}]}',                 -- control byte
      '{"x":01,"choices":[{"index":0,"delta":{"content":"a"}}]}',                     -- leading zero
      '{"x":truex,"choices":[{"index":0,"delta":{"content":"a"}}]}',                  -- bad literal
      '{"x":' .. ("["):rep(1000) .. ("]"):rep(1000) .. ',"choices":[{"index":0,"delta":{"content":"a"}}]}',
      '[{"choices":[{"index":0,"delta":{"content":"a"}}]}]',
    }
    for _, s in ipairs(chat) do assert.is_nil(core.fast_chat_text(s), s) end
    assert.is_nil(json.decode(chat[18]))                -- nesting too deep: the decoder agrees
    assert.equal("a", core.fast_chat_text('{"x":' .. ("["):rep(999) .. ("]"):rep(999)
      .. ',"choices":[{"index":0,"delta":{"content":"a"}}]}'))
    local anth = {
      '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","text":"a"}}',
      '{"type":"content_block_delta","index":0,"index":1,"delta":{"type":"text_delta","text":"a"}}',
      '{"type":"content_block_delta","index":0.0,"delta":{"type":"text_delta","text":"a"}}',
      '{"type":"content_block_start","index":0,"delta":{"type":"text_delta","text":"a"}}',
      '{"type":"content_block_delta","delta":{"type":"text_delta","text":"a"}}',
    }
    for _, s in ipairs(anth) do assert.is_nil((core.fast_anthropic_text(s)), s) end
    local ollama = {
      '{"model":"m","message":{"content":"a"},"done":true}',                       -- the last line
      '{"model":"m","message":{"content":"a","thinking":"b"}}',                      -- reasoning too
      '{"model":"m","message":{"content":"a","tool_calls":[]}}',                     -- tool calls
      '{"model":"m","message":{"content":"a"},"error":"x"}',                         -- an error
      '{"model":"m","message":{"content":""}}',                                      -- no text
      '{"model":"m","message":{"content":"a"},"message":{"content":"b"}}',           -- repeated key
    }
    for _, s in ipairs(ollama) do assert.is_nil(core.fast_ollama_text(s), s) end
    assert.is_nil(core.fast_responses_text('{"type":"response.output_text.delta","delta":""}'))
    assert.is_nil(core.fast_responses_text('{"type":"response.output_text.done","delta":"a"}'))
  end)

  it("never accept a mutated event the full decode reads differently (seeded mutations)", function()
    local ALPHABET = { "{", "}", "[", "]", '"', ",", ":", "\\", "0", "1", "-", ".", "e", "n",
                       "u", "l", "t", " ", "\1", "\128", "\255", "a" }
    math.randomseed(11)
    local accepted = 0
    for name, sh in pairs(SHAPES) do
      local base = sh.base
      for _ = 1, 3000 do
        local s, k = base, math.random(1, 3)
        for _ = 1, k do
          local i, op = math.random(1, #s), math.random(1, 3)
          local c = ALPHABET[math.random(1, #ALPHABET)]
          if op == 1 then s = s:sub(1, i - 1) .. c .. s:sub(i + 1)
          elseif op == 2 then s = s:sub(1, i - 1) .. s:sub(i + 1)
          else s = s:sub(1, i - 1) .. c .. s:sub(i) end
        end
        local t = sh.fast(s)
        if t ~= nil then
          accepted = accepted + 1
          local obj = json.decode(s)
          assert.is_not_nil(obj, name .. ": " .. s)
          assert.equal(sh.full(obj), t, name .. ": " .. s)
        end
      end
    end
    assert.is_true(accepted > 100)   -- the mutations also reach the accepting side
  end)
end)

describe("the ollama fast path (no fixture streams: lines built here)", function()
  it("gives the events, state and final response of the full decode", function()
    local P = require("llm.providers.ollama")
    local lines = { '{"model":"llama3.2","created_at":"t0","message":{"role":"assistant","content":""},"done":false}' }
    for i = 1, 20 do
      lines[#lines + 1] = '{"model":"llama3.2","created_at":"t' .. i .. '","message":{"role":"assistant",'
        .. '"content":"w' .. i .. ' \\n"},"done":false}'
    end
    lines[#lines + 1] = '{"model":"llama3.2","created_at":"t","message":{"role":"assistant","content":""},'
      .. '"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":20}'
    local events = {}
    for i, l in ipairs(lines) do events[i] = { data = l } end
    local fast_evs, fast_resp, _, hits = run(P, events, false)
    local full_evs, full_resp = run(P, events, true)
    assert.equal(20, hits)
    assert.equal(#full_evs, #fast_evs)
    for i = 1, #full_evs do
      assert.is_true(F.same(full_evs[i], fast_evs[i]), "event " .. i)
      assert.is_true(F.same(fast_evs[i], full_evs[i]), "event " .. i)
    end
    assert.is_true(F.same(full_resp, fast_resp))
    assert.equal("w1 \nw2 \n", fast_resp.text:sub(1, 8))   -- the escapes decoded
  end)
end)

describe("an event whose raw is decoded on first read", function()
  it("has no raw key until read, then the decoded table, the same one every time", function()
    local data = '{"type":"response.output_text.delta","delta":"Hi","output_index":0}'
    local ev = C.lazy_text_event("text", "Hi", data, "response.output_text.delta")
    assert.is_nil(rawget(ev, "raw"))
    assert.same({ type = "text", text = "Hi", name = "response.output_text.delta" },
                { type = ev.type, text = ev.text, name = ev.name })
    local raw = ev.raw
    assert.is_true(F.same(json.decode(data), raw))
    assert.equal(raw, ev.raw)
    assert.equal(raw, rawget(ev, "raw"))
    assert.is_nil(ev.other)
  end)
end)
