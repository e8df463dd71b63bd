-- needs: fixtures (run_spec.sh skips this file with 77 when they are absent)
-- lua5.1: yes
-- Every fixture of the openai_chat, openai_compat and anthropic folders, run through its
-- provider: streams (whole and in 50 seeded random 2-3-way byte splits), success bodies
-- and error bodies, checked against the `.expect.json` facts.

local F = require("support.fixtures")

local FOLDERS = {
  { "openai_chat", "llm.providers.openai" },
  { "openai_compat", "llm.providers.openai" },
  { "anthropic", "llm.providers.anthropic" },
}
local SPLITS = 50

F.describe_fixtures(describe, it, "fixtures", FOLDERS, SPLITS, {
  stream = function(P, _, events, exp)
    F.check_stream(P, events, exp)
  end,
  error_body = function(P, _, exp, status, headers, text)
    F.check_error(P, exp, status, headers, text)
  end,
  response_body = function(P, _, exp, body)
    local resp = P.decode_response(body, {})
    F.check_response(resp, exp)
    assert.are.equal(body, resp.raw)
  end,
})
