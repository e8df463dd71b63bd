-- llm.providers.common: helpers shared by the provider translation modules.
-- Pure functions only (no I/O, no clock), like the providers themselves.

local json = require("llm.json")

local M = {}

local null = json.null
local type, pairs, ipairs, tointeger, concat = type, pairs, ipairs, math.tointeger, table.concat

--- nil for JSON null (and for nil); the value otherwise.
function M.val(v)
  if v == null then return nil end
  return v
end

--- A string field or nil (JSON null and non-strings are nil).
function M.str(v)
  if type(v) == "string" then return v end
  return nil
end

--- An integer or nil: usage counts are integers even when a server writes 17.0.
function M.int(v)
  if type(v) ~= "number" then return nil end
  return tointeger(v) or v
end

--- Error kind for an HTTP status (API.md §4 and §9).
function M.kind_for_status(status)
  status = tointeger(status)
  if not status then return "protocol" end
  if status == 401 then return "auth" end
  if status == 403 then return "permission" end
  if status == 404 then return "not_found" end
  if status == 408 then return "timeout" end
  if status == 429 then return "rate_limit" end
  if status == 402 then return "quota" end
  if status == 529 then return "overloaded" end
  if status >= 500 then return "server" end
  if status >= 400 then return "bad_request" end
  return "protocol"
end

--- A header value by lower-case name. Headers normally arrive with lower-case names (the
--- core lowers them); a table with other casing is searched as a fallback.
function M.header(headers, name)
  if type(headers) ~= "table" then return nil end
  local v = headers[name]
  if v ~= nil then return v end
  for k, val in pairs(headers) do
    if type(k) == "string" and k:lower() == name then return val end
  end
  return nil
end

--- Our own message when an error body carries none.
function M.fallback_message(status, text)
  local where = status and ("HTTP " .. tostring(status)) or "the server"
  if type(text) ~= "string" or text:find("^%s*$") then
    return where .. " with an empty body"
  end
  if text:find("^%s*<") then return where .. " with an HTML body" end
  local snippet = text:gsub("%s+", " ")
  if #snippet > 200 then snippet = snippet:sub(1, 200) .. "..." end
  return where .. ": " .. snippet
end

--- Decodes an error body text: the decoded table (or nil) and the body to report.
function M.decode_body(body_text)
  if type(body_text) == "table" then return body_text, body_text end
  if type(body_text) ~= "string" then return nil, body_text end
  local t = json.decode(body_text)
  if type(t) == "table" and t ~= null then return t, t end
  return nil, body_text
end

--- Concatenated text of a content value (string or list of parts).
function M.content_text(content)
  if type(content) == "string" then return content end
  if type(content) ~= "table" then return "" end
  local out, n = {}, 0
  for _, p in ipairs(content) do
    if type(p) == "string" then
      n = n + 1; out[n] = p
    elseif type(p) == "table" and p.type == "text" and type(p.text) == "string" then
      n = n + 1; out[n] = p.text
    end
  end
  return concat(out)
end

--- A normalized tool call from the raw argument text. An empty text means `{}`; text that
--- is not valid JSON gives `arguments = nil` (API.md §9) with `arguments_json` kept.
function M.tool_call(id, name, arguments_json, provider_data)
  local args
  if arguments_json == nil or arguments_json == "" or arguments_json:find("^%s*$") then
    args = json.object()
    arguments_json = arguments_json or ""
  else
    local v = json.decode(arguments_json)
    if v ~= nil and v ~= null then args = v end
  end
  return { id = id, name = name, arguments = args, arguments_json = arguments_json,
           provider_data = provider_data }
end

--- The JSON text a tool call is sent back with: the text as received when there is one,
--- else the encoded arguments.
function M.arguments_text(call)
  if type(call.arguments_json) == "string" and call.arguments_json ~= "" then
    return call.arguments_json
  end
  if type(call.arguments) == "table" then return json.encode(call.arguments) end
  if type(call.arguments) == "string" then return call.arguments end
  return "{}"
end

--- The decoded arguments of a tool call being replayed (a table; `{}` when unknown).
function M.arguments_table(call)
  if type(call.arguments) == "table" then return call.arguments end
  if type(call.arguments_json) == "string" and call.arguments_json ~= "" then
    local v = json.decode(call.arguments_json)
    if type(v) == "table" and v ~= null then return v end
  end
  return json.object()
end

--- A tool result's content as text: strings as is, a list of parts as its text, any other
--- table as JSON (API.md §10: a table result is sent as JSON).
function M.tool_result_text(content)
  if type(content) == "string" then return content end
  if content == nil or content == null then return "" end
  if type(content) == "table" then
    local first = content[1]
    if type(first) == "table" and first.type == "text" then return M.content_text(content) end
    return json.encode(content)
  end
  return tostring(content)
end

--- Usage from provider counts: integers, nil when absent, total computed when both parts
--- are known and the server sent none.
function M.usage(input, output, total, extra)
  local u = { input_tokens = M.int(M.val(input)), output_tokens = M.int(M.val(output)),
              total_tokens = M.int(M.val(total)) }
  if u.total_tokens == nil and u.input_tokens and u.output_tokens then
    u.total_tokens = u.input_tokens + u.output_tokens
  end
  if extra then
    for k, v in pairs(extra) do u[k] = M.int(M.val(v)) end
  end
  return u
end

--- A fresh copy of a usage table (events carry their own copy).
function M.copy_usage(u)
  local c = {}
  for k, v in pairs(u) do c[k] = v end
  return c
end

--- True when two usage tables differ.
function M.usage_changed(a, b)
  for k, v in pairs(a) do if b[k] ~= v then return true end end
  for k, v in pairs(b) do if a[k] ~= v then return true end end
  return false
end

--- Whether a tool table is a function tool (has `run` or `parameters`, or no `type`) or a
--- hosted tool passed through unchanged.
function M.is_function_tool(t)
  return t.run ~= nil or t.parameters ~= nil or t.type == nil or t.type == "function"
end

-- JSON Schema keywords whose value is a list, a map of names to schemas, or one schema.
local LIST_KEYS = { required = true, enum = true, examples = true }
local SCHEMA_LIST_KEYS = { anyOf = true, oneOf = true, allOf = true, prefixItems = true }
local SCHEMA_MAP_KEYS = { properties = true, patternProperties = true, ["$defs"] = true,
                          definitions = true, dependentSchemas = true }
local SCHEMA_KEYS = { items = true, additionalProperties = true, ["not"] = true,
                      contains = true, propertyNames = true, ["if"] = true, ["then"] = true,
                      ["else"] = true, additionalItems = true, unevaluatedProperties = true }

--- A copy of a JSON Schema with empty lists marked as arrays (`required = {}` must be `[]`)
--- and empty maps marked as objects, so a user's schema without markers encodes right.
function M.schema(s)
  if type(s) ~= "table" or s == null then return s end
  if getmetatable(s) then return s end -- already marked (decoded or built with json.*)
  local out = {}
  for k, v in pairs(s) do
    if type(v) ~= "table" or v == null or getmetatable(v) then
      out[k] = v
    elseif LIST_KEYS[k] or (k == "type") then
      out[k] = json.array(v)
    elseif SCHEMA_LIST_KEYS[k] then
      local l = json.array()
      for i, sub in ipairs(v) do l[i] = M.schema(sub) end
      out[k] = l
    elseif SCHEMA_MAP_KEYS[k] then
      local m = json.object()
      for name, sub in pairs(v) do m[name] = M.schema(sub) end
      out[k] = m
    elseif SCHEMA_KEYS[k] then
      if v[1] ~= nil then
        local l = json.array()
        for i, sub in ipairs(v) do l[i] = M.schema(sub) end
        out[k] = l
      else
        out[k] = M.schema(v)
      end
    else
      out[k] = v
    end
  end
  return out
end

--- Shallow merge of `extra` into body, last (API.md §2: provider fields verbatim).
function M.merge_extra(body, extra)
  if type(extra) == "table" then
    for k, v in pairs(extra) do body[k] = v end
  end
  return body
end

--- A list of stop sequences as a JSON array (a single string becomes a one-item list).
function M.stop_list(stop)
  if stop == nil then return nil end
  if type(stop) == "string" then return json.array({ stop }) end
  local l = json.array()
  for i, v in ipairs(stop) do l[i] = v end
  return l
end

--- The parsed object when the request asked for JSON output and the text decodes.
function M.parsed(req, text)
  if type(req) ~= "table" or req.response_format == nil or type(text) ~= "string" then
    return nil
  end
  local v = json.decode(text)
  if v == null then return nil end
  return v
end

return M
