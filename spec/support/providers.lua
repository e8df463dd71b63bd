-- Helpers shared by the provider specs (spec/providers_*_spec.lua).

local json = require("llm.json")
local F = require("support.fixtures")
local assert = require("luassert")

local M = {}

--- The body of `P.build_request(req)` as the wire sees it (encoded, then decoded again,
--- markers and all), the request itself and the encoded body text.
function M.wire(P, req)
  local r = P.build_request(req)
  local text = json.encode(r.body)
  return assert(json.decode(text)), r, text
end

--- The type of each normalized event, in order.
function M.types(evs)
  local t = {}
  for i, e in ipairs(evs) do t[i] = e.type end
  return t
end

--- Decodes the error case `c` = { status, body text with an `error` object, kind } with
--- `headers` and checks what every provider gives: the kind, the body's message, the request
--- id "req_<status>", and no `retryable` (the client decides that). Returns the fields.
function M.check_error_case(P, c, headers)
  local e = P.decode_error(c[1], headers, c[2])
  assert.are.equal(c[3], e.kind)
  assert.are.equal(json.decode(c[2]).error.message, e.message)
  assert.are.equal("req_" .. c[1], e.request_id)
  assert.is_nil(e.retryable)
  return e
end

--- Decodes the error body fixture `<stem>.json` (stem relative to the fixture folder, which
--- must exist) with the status and headers of `<stem>.headers.json`; without that file, with
--- `status` and no headers. Returns the error fields and the headers.
function M.fixture_error(P, stem, status)
  local path = F.dir() .. "/" .. stem
  local st, headers = F.headers(path .. ".headers.json")
  return P.decode_error(st or status, headers, F.read(path .. ".json")), headers
end

return M
