-- needs: fixtures (run_spec.sh skips this file with 77 when they are absent)
-- lua5.1: yes
-- Every fixture of the openai_responses and gemini folders, run through its provider:
-- streams (whole and in 50 seeded random 2-3-way byte splits through the framer),
-- success bodies and error bodies, checked against the `.expect.json` facts and against
-- the normalized event sequence.

local F = require("support.fixtures")

local FOLDERS = {
  { "openai_responses", "llm.providers.openai_responses" },
  { "gemini", "llm.providers.gemini" },
}
local SPLITS = 50

-- Responses events that carry no normalized meaning and must come out as "raw".
local RAW_NAMES = {
  ["response.created"] = true, ["response.in_progress"] = true,
  ["response.content_part.added"] = true, ["response.content_part.done"] = true,
  ["response.output_text.done"] = true, ["response.reasoning_summary_part.added"] = true,
  ["response.reasoning_summary_part.done"] = true, ["response.reasoning_summary_text.done"] = true,
  ["response.web_search_call.in_progress"] = true, ["response.web_search_call.searching"] = true,
  ["response.web_search_call.completed"] = true,
}

-- Unlike Chat Completions and Messages, every framed event gives at least one normalized
-- event here; Gemini's usage counts may go down between chunks.
local OPTS = {
  openai_responses = { every_event = true, raw_names = RAW_NAMES },
  gemini = { every_event = true, raw_names = RAW_NAMES, usage_may_drop = true },
}

F.describe_fixtures(describe, it, "more fixtures", FOLDERS, SPLITS, {
  stream = function(P, folder, events, exp)
    local resp = F.check_stream(P, events, exp, OPTS[folder])
    if resp and folder == "openai_responses" then
      assert.truthy(resp.id and resp.id:find("^resp_"), "response id for previous_response_id")
      assert.are.equal("table", type(resp.raw))
      assert.truthy(resp.raw.output, "raw is the terminal response object")
    end
  end,
  error_body = function(P, folder, exp, status, headers, text)
    local e = F.check_error(P, exp, status, headers, text)
    if folder == "gemini" and status == 429 then
      -- a per-minute quota: waiting helps, and the body says how long
      assert.are.equal("rate_limit", e.kind)
      assert.are.equal(34.4, e.retry_after)
    elseif status == 400 then
      assert.are.equal("bad_request", e.kind)
    end
  end,
  response_body = function(P, _, exp, body)
    local resp = P.decode_response(body, {})
    F.check_response(resp, exp)
    assert.are.equal(body, resp.raw)
    assert.truthy(resp.id)
  end,
})
