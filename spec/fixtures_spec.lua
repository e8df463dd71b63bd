-- needs: fixtures (run_spec.sh skips this file with 77 when they are absent)
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

local check_response, check_events = F.check_response, F.check_events
local null = json.null
local function v(x) if x == null then return nil end return x end

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
if not dir then          -- run directly without fixtures: register nothing
  print("fixtures absent")
  return
end

describe("fixtures", function()
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
