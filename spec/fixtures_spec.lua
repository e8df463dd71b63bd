-- Every fixture of the openai_chat, openai_compat and anthropic folders, run through its
-- provider: streams (whole and in 50 seeded random 2-3-way byte splits), success bodies
-- and error bodies, checked against the `.expect.json` facts.

local F = require("support.fixtures")
local json = require("llm.json")

local FOLDERS = {
  { "openai_chat", "llm.providers.openai" },
  { "openai_compat", "llm.providers.openai" },
  { "anthropic", "llm.providers.anthropic" },
}
local SPLITS = 50

local EXPECTED_KIND = { [400] = "bad_request", [401] = "auth", [403] = "permission",
  [404] = "not_found", [413] = "bad_request", [422] = "bad_request", [429] = "rate_limit",
  [500] = "server", [502] = "server", [503] = "server", [529] = "overloaded" }

local null = json.null
local function v(x) if x == null then return nil end return x end

-- Checks a normalized response against the expect facts.
local function check_response(resp, exp)
  assert.are.equal(exp.text or "", resp.text)
  local calls = exp.tool_calls or {}
  assert.are.equal(#calls, #resp.tool_calls)
  for i, ec in ipairs(calls) do
    local c = resp.tool_calls[i]
    assert.are.equal(v(ec.id), c.id)
    assert.are.equal(ec.name, c.name)
    if ec.arguments_invalid_json then
      assert.is_nil(c.arguments)
      assert.are.equal(ec.arguments_raw, c.arguments_json)
    else
      assert.is_true(F.same(ec.arguments, c.arguments), "arguments of call " .. i)
    end
    assert.are.equal("string", type(c.arguments_json))
  end
  assert.are.equal(v(exp.finish_reason), resp.finish_reason)
  if exp.raw_finish_reason ~= nil then
    assert.are.equal(v(exp.raw_finish_reason), resp.raw_finish_reason)
  end
  assert.are.equal("table", type(resp.usage))
  local eu = exp.usage or {}
  assert.are.equal(v(eu.input_tokens), resp.usage.input_tokens)
  assert.are.equal(v(eu.output_tokens), resp.usage.output_tokens)
  for _, k in ipairs({ "input_tokens", "output_tokens", "total_tokens" }) do
    if resp.usage[k] ~= nil then assert.are.equal("integer", math.type(resp.usage[k])) end
  end
  assert.are.equal(exp.reasoning_text, resp.reasoning)
  assert.are.equal(exp.refusal, resp.refusal)
  if exp.choices then
    assert.are.equal(#exp.choices, #resp.choices)
    for i, ec in ipairs(exp.choices) do
      local c = resp.choices[i]
      assert.are.equal(ec.index, c.index)
      assert.are.equal(ec.text or "", c.text)
      assert.are.equal(v(ec.finish_reason), c.finish_reason)
      assert.are.equal(#(ec.tool_calls or {}), #c.tool_calls)
    end
  else
    assert.is_nil(resp.choices)
  end
  -- the message is ready to append: assistant role, same calls
  assert.are.equal("assistant", resp.message.role)
  if #resp.tool_calls > 0 then assert.are.equal(resp.tool_calls, resp.message.tool_calls) end
end

-- Checks the normalized event sequence against the final response. Per-event checks are
-- plain comparisons collected into one list (luassert per event would dominate the run
-- time of 50 splits per fixture).
local function check_events(evs, resp)
  local problems = {}
  local function bad(msg) problems[#problems + 1] = msg end
  local text, reasoning, refusal, args, done = {}, {}, {}, {}, {}
  local prev_usage, last_usage
  for i, e in ipairs(evs) do
    if e.raw == nil then bad("event " .. i .. " (" .. tostring(e.type) .. ") has no raw") end
    if e.type == "done" then bad("provider emitted done") end
    if e.type == "text" then
      text[#text + 1] = e.text
    elseif e.type == "reasoning" then
      reasoning[#reasoning + 1] = e.text
    elseif e.type == "refusal" then
      refusal[#refusal + 1] = e.text
    elseif e.type == "tool_call" then
      local call = resp.tool_calls[e.index]
      if not call then
        bad("tool_call event with unknown index " .. tostring(e.index))
      else
        if not args[e.index] then
          args[e.index] = {}
          if e.name ~= call.name then bad("first tool_call delta lacks the name") end
        elseif e.name ~= nil then
          bad("tool name repeated after the first delta")
        end
        if e.id ~= call.id then bad("tool_call id differs") end
        table.insert(args[e.index], e.arguments_delta)
      end
    elseif e.type == "tool_call_done" then
      done[#done + 1] = e.call
    elseif e.type == "usage" then
      -- cumulative: a fresh table each time, counts never going down
      if prev_usage == e.usage then bad("usage event reuses its table") end
      if prev_usage then
        for _, k in ipairs({ "input_tokens", "output_tokens" }) do
          if prev_usage[k] and e.usage[k] and e.usage[k] < prev_usage[k] then
            bad("usage went down")
          end
        end
      end
      prev_usage, last_usage = e.usage, e.usage
    elseif e.type == "error" then
      bad("error event in a good stream")
    end
  end
  assert.are.same({}, problems)
  assert.are.equal(resp.text, table.concat(text))
  assert.are.equal(resp.reasoning or "", table.concat(reasoning))
  assert.are.equal(resp.refusal or "", table.concat(refusal))
  assert.are.equal(#resp.tool_calls, #done)
  for i, call in ipairs(resp.tool_calls) do
    assert.are.equal(call.arguments_json, table.concat(args[i] or {}))
    assert.are.equal(call.id, done[i].id)
    assert.are.equal(call.name, done[i].name)
    assert.is_true(F.same(call.arguments, done[i].arguments))
  end
  if last_usage then
    assert.is_true(F.same(last_usage, resp.usage))
  else
    assert.is_nil(next(resp.usage))
  end
end

local function check_stream(P, events, exp)
  local resp, err, evs = F.run_stream(P, events, {})
  if exp.error then
    assert.is_nil(resp)
    assert.are.equal(exp.error.message, err.message)
    return
  end
  assert.is_nil(err, err and err.message)
  check_response(resp, exp)
  check_events(evs, resp)
end

local dir = F.dir()

describe("fixtures", function()
  if not dir then
    print("fixtures absent")
    it("fixtures absent", function() pending("fixtures absent") end)
    return
  end
  local _, which = F.framer()
  local count = 0
  for _, pair in ipairs(FOLDERS) do
    for _, name in ipairs(F.list(dir, pair[1])) do
      if not name:find("%.expect%.json$") and not name:find("%.headers%.json$") then
        count = count + 1
      end
    end
  end
  print(("%d fixtures at %s (SSE framer: %s)"):format(count, dir, which))

  for _, pair in ipairs(FOLDERS) do
    local folder, modname = pair[1], pair[2]
    local P = require(modname)
    describe(folder, function()
      for _, name in ipairs(F.list(dir, folder)) do
        local path = dir .. "/" .. folder .. "/" .. name
        local base = name:match("^(.*)%.sse$") or name:match("^(.*)%.json$")
        if base and not name:find("%.expect%.json$") and not name:find("%.headers%.json$") then
          local stem = dir .. "/" .. folder .. "/" .. base
          local exp = F.read_json(stem .. ".expect.json")
          if name:find("%.sse$") then
            it(name .. " (whole body)", function()
              assert.is_not_nil(exp, "missing " .. base .. ".expect.json")
              check_stream(P, F.frame({ F.read(path) }), exp)
            end)
            it(name .. " (" .. SPLITS .. " random 2-3-way splits)", function()
              local bytes = F.read(path)
              local whole = F.frame({ bytes })
              for i, chunks in ipairs(F.splits(bytes, SPLITS, #bytes)) do
                local evs = F.frame(chunks)
                assert.are.equal(#whole, #evs, "split " .. i)
                check_stream(P, evs, exp)
              end
            end)
          elseif exp and exp.error then
            it(name .. " (error body)", function()
              local status, headers = F.headers(stem .. ".headers.json")
              status = status or exp.http_status
              local e = P.decode_error(status, headers or {}, F.read(path))
              assert.are.equal(EXPECTED_KIND[status], e.kind)
              assert.are.equal(exp.error.message, e.message)
              assert.are.equal(v(exp.error.type), e.type)
              if exp.error.code ~= nil then assert.are.equal(v(exp.error.code), e.code) end
              local rid = exp.error.request_id
                or (headers and (headers["x-request-id"] or headers["request-id"]))
              assert.are.equal(rid, e.request_id)
              assert.are.equal("table", type(e.body))
            end)
          else
            it(name .. " (response body)", function()
              assert.is_not_nil(exp, "missing " .. base .. ".expect.json")
              local body = assert(json.decode(F.read(path)))
              local resp = P.decode_response(body, {})
              check_response(resp, exp)
              assert.are.equal(body, resp.raw)
            end)
          end
        end
      end
    end)
  end
end)
