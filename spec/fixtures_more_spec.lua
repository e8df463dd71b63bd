-- needs: fixtures (run_spec.sh skips this file with 77 when they are absent)
-- Every fixture of the openai_responses and gemini folders, run through its provider:
-- streams (whole and in 50 seeded random 2-3-way byte splits through the framer),
-- success bodies and error bodies, checked against the `.expect.json` facts and against
-- the normalized event sequence.

local F = require("support.fixtures")
local json = require("llm.json")

local dir = F.dir()
if not dir then          -- run directly without fixtures: register nothing
  print("fixtures absent")
  return
end

local FOLDERS = {
  { "openai_responses", "llm.providers.openai_responses" },
  { "gemini", "llm.providers.gemini" },
}
local SPLITS = 50

local null = json.null
local function v(x) if x == null then return nil end return x end

-- Responses events that carry no normalized meaning and must come out as "raw".
local RAW_NAMES = {
  ["response.created"] = true, ["response.in_progress"] = true,
  ["response.content_part.added"] = true, ["response.content_part.done"] = true,
  ["response.output_text.done"] = true, ["response.reasoning_summary_part.added"] = true,
  ["response.reasoning_summary_part.done"] = true, ["response.reasoning_summary_text.done"] = true,
  ["response.web_search_call.in_progress"] = true, ["response.web_search_call.searching"] = true,
  ["response.web_search_call.completed"] = true,
}

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
  if eu.reasoning_tokens ~= nil then
    assert.are.equal(v(eu.reasoning_tokens), resp.usage.reasoning_tokens)
  end
  for k, n in pairs(resp.usage) do
    assert.are.equal("integer", math.type(n), "usage." .. k)
  end
  assert.are.equal(exp.reasoning_text, resp.reasoning)
  assert.are.equal("assistant", resp.message.role)
  if #resp.tool_calls > 0 then assert.are.equal(resp.tool_calls, resp.message.tool_calls) end
  -- the message's text and reasoning parts say what the response says
  local content = resp.message.content
  if type(content) == "string" then
    assert.are.equal(resp.text, content)
    assert.is_nil(resp.reasoning)
  else
    local text, reasoning = {}, {}
    for _, p in ipairs(content) do
      if p.type == "text" then text[#text + 1] = p.text end
      if p.type == "reasoning" then reasoning[#reasoning + 1] = p.text end
    end
    assert.are.equal(resp.text, table.concat(text))
    assert.are.equal(resp.reasoning or "", table.concat(reasoning))
  end
end

-- The normalized events against the final response; plain comparisons collected into one
-- list (a luassert call per event would dominate the run time of 50 splits per fixture).
-- `monotonic`: usage counts never go down (not so for Gemini, whose counts may drop).
local function check_events(evs, resp, monotonic)
  local problems = {}
  local function bad(msg) problems[#problems + 1] = msg end
  local text, reasoning, args, done = {}, {}, {}, {}
  local prev_usage, last_usage
  for i, e in ipairs(evs) do
    if e.raw == nil then bad("event " .. i .. " (" .. tostring(e.type) .. ") has no raw") end
    if e.type == "done" then bad("provider emitted done") end
    if e.type == "text" then
      text[#text + 1] = e.text
    elseif e.type == "reasoning" then
      reasoning[#reasoning + 1] = e.text
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
      if prev_usage == e.usage then bad("usage event reuses its table") end
      if monotonic and prev_usage then
        for _, k in ipairs({ "input_tokens", "output_tokens" }) do
          if prev_usage[k] and e.usage[k] and e.usage[k] < prev_usage[k] then bad("usage went down") end
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

-- Runs a provider over framed events, checking that every framed event gives at least one
-- normalized event and that events without meaning come out as "raw".
local function run(P, framed)
  local state = P.new_stream_state({})
  local all, problems = {}, {}
  for i, ev in ipairs(framed) do
    local out = P.decode_event(state, ev)
    if #out == 0 then problems[#problems + 1] = "event " .. i .. " (" .. tostring(ev.name) .. ") dropped" end
    if ev.name and RAW_NAMES[ev.name] and (#out ~= 1 or out[1].type ~= "raw") then
      problems[#problems + 1] = "event " .. i .. " (" .. ev.name .. ") is not raw"
    end
    for _, e in ipairs(out) do all[#all + 1] = e end
  end
  local resp, err = P.finish_stream(state)
  return resp, err, all, problems
end

local function check_stream(P, folder, framed, exp)
  local resp, err, evs, problems = run(P, framed)
  assert.are.same({}, problems)
  if exp.error then
    assert.is_nil(resp)
    assert.are.equal(exp.error.message, err.message)
    return
  end
  assert.is_nil(err, err and err.message)
  check_response(resp, exp)
  check_events(evs, resp, folder ~= "gemini")
  if folder == "openai_responses" then
    assert.truthy(resp.id and resp.id:find("^resp_"), "response id for previous_response_id")
    assert.are.equal("table", type(resp.raw))
    assert.truthy(resp.raw.output, "raw is the terminal response object")
  end
  return resp, evs
end

describe("more fixtures", function()
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
              check_stream(P, folder, F.frame({ F.read(path) }), exp)
            end)
            it(name .. " (" .. SPLITS .. " random 2-3-way splits)", function()
              local bytes = F.read(path)
              local whole = F.frame({ bytes })
              for i, chunks in ipairs(F.splits(bytes, SPLITS, #bytes)) do
                local evs = F.frame(chunks)
                assert.are.equal(#whole, #evs, "split " .. i)
                check_stream(P, folder, evs, exp)
              end
            end)
          elseif exp and exp.error then
            it(name .. " (error body)", function()
              local status, headers = F.headers(stem .. ".headers.json")
              status = status or exp.http_status
              local e = P.decode_error(status, headers or {}, F.read(path))
              assert.are.equal(exp.error.message, e.message)
              assert.are.equal(v(exp.error.type), e.type)
              if exp.error.code ~= nil then assert.are.equal(v(exp.error.code), e.code) end
              if exp.error.param ~= nil then assert.are.equal(v(exp.error.param), e.param) end
              assert.are.equal(status, e.status)
              assert.are.equal("table", type(e.body))
              if folder == "gemini" and status == 429 then
                -- a per-minute quota: waiting helps, and the body says how long
                assert.are.equal("rate_limit", e.kind)
                assert.are.equal(34.4, e.retry_after)
              elseif status == 400 then
                assert.are.equal("bad_request", e.kind)
              end
            end)
          else
            it(name .. " (response body)", function()
              assert.is_not_nil(exp, "missing " .. base .. ".expect.json")
              local body = assert(json.decode(F.read(path)))
              local resp = P.decode_response(body, {})
              check_response(resp, exp)
              assert.are.equal(body, resp.raw)
              assert.truthy(resp.id)
            end)
          end
        end
      end
    end)
  end
end)
