--- llm.validate: the checks a request and a client's options pass before anything is sent.
-- A field that is not part of the contract, a misspelt one, a value of the wrong type or a
-- message part a provider cannot take raises here, naming the field (and, for a misspelling,
-- the likely intended name), instead of being dropped on the way to the wire. Which optional
-- fields and part types a provider takes is data in its table (`request_fields`,
-- `part_types`); this module only reads it. Pure functions: each check returns nil, or the
-- message to raise with the caller's level.
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local M = {}

local type, ipairs, tostring, format = type, ipairs, tostring, string.format

local function set(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

--- Client options (API §1). Options of features not built yet are left out on purpose, so
--- that they raise rather than do nothing.
M.CLIENT_OPTIONS = set{
  "model", "api_key", "base_url", "timeout", "connect_timeout", "idle_timeout",
  "first_token_timeout", "max_retries", "retry", "headers", "ca_file", "proxy", "insecure",
  "api", "max_event_size", "prices", "hooks", "limiter", "embedding_model",
}

--- The hooks a client takes (API §12) and the fields of a price.
M.HOOKS = set{ "on_request", "on_response", "on_retry", "on_error" }
M.PRICE_FIELDS = set{ "input", "output", "cached_input", "cache_write" }

--- Request fields every provider takes (API §2, §10): what they mean is mapped per provider.
M.REQUEST_FIELDS = set{
  "model", "system", "messages", "max_tokens", "temperature", "top_p", "stop", "tools",
  "tool_choice", "parallel_tool_calls", "reasoning", "response_format", "extra",
  "extra_headers", "extra_query", "timeout", "idle_timeout", "first_token_timeout",
  "max_retries", "retry", "api", "priority",
  "cache",   -- cache breakpoints (API §12): Anthropic cache_control; others cache on their own
}

--- Request fields that are part of the contract but exist only on some APIs (API §9): a
--- provider lists those it maps in `request_fields`; sent to another they raise.
M.OPTIONAL_FIELDS = set{
  "n", "seed", "top_k", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
  "user", "metadata", "service_tier", "prompt_cache_key",
  -- the Responses API (API §2)
  "input", "instructions", "previous_response_id", "store", "include", "background",
}

--- Part types of the message format (API §10, §12). A provider lists those it takes in
--- `part_types`; "reasoning" parts go anywhere (a provider that did not make them drops them).
M.PART_TYPES = set{ "text", "image", "file", "audio", "document", "reasoning" }

local MEDIA = set{ "image", "file", "audio" }

M.ROLES = set{ "system", "developer", "user", "assistant", "tool" }

-- Levenshtein distance with adjacent transpositions ("temprature" -> 1 from "temperature").
local function distance(a, b)
  local la, lb = #a, #b
  local prev2, prev = {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local cur = { [0] = i }
    local ca = a:byte(i)
    for j = 1, lb do
      local cb = b:byte(j)
      local cost = ca == cb and 0 or 1
      local d = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and ca == b:byte(j - 1) and a:byte(i - 1) == cb then
        d = math.min(d, prev2[j - 2] + 1)
      end
      cur[j] = d
    end
    prev2, prev = prev, cur
  end
  return prev[lb]
end
M.distance = distance

--- The name in the sets `...` closest to `name`, if one is close enough to be a misspelling.
function M.suggest(name, ...)
  if type(name) ~= "string" then return nil end
  local lname = name:lower()
  local best, best_d
  for i = 1, select("#", ...) do
    for cand in each((select(i, ...))) do
      local d = distance(lname, cand)
      if d < (best_d or math.huge) or (d == best_d and cand < best) then best, best_d = cand, d end
    end
  end
  if best and best_d <= math.max(1, math.min(3, math.floor(#name / 3))) then return best end
  return nil
end

local function show(k)
  if type(k) == "string" then return "'" .. k .. "'" end
  return "[" .. tostring(k) .. "]"
end

-- Names from the providers' own APIs, and what this library calls them.
local ALIASES = {
  max_completion_tokens = "max_tokens", max_output_tokens = "max_tokens", num_predict = "max_tokens",
  maxOutputTokens = "max_tokens", stop_sequences = "stop", stopSequences = "stop",
  system_prompt = "system", topP = "top_p", topK = "top_k", candidateCount = "n",
  tool_config = "tool_choice", toolConfig = "tool_choice", apikey = "api_key", key = "api_key",
  base = "base_url", url = "base_url", endpoint = "base_url", retries = "max_retries",
}

local function unknown(what, k, hint, ...)
  if k == "stream" and hint == "field" then
    return what .. ": unknown field 'stream'; to stream, call client:stream(req) instead of client:chat(req)"
  end
  if type(k) == "number" and hint == "option" then   -- llm.client("openai", { "gpt-4.1" })
    return format("%s: options are named (e.g. { model = \"...\" }); found a list item [%s]", what, tostring(k))
  end
  if type(k) == "number" then   -- chat{ "hi" }, chat{ { role = ... } }
    return format("%s: the table has a list item [%s]; messages go in `messages = { ... }` "
      .. "(or pass one user message as a string: client:chat(\"...\"))", what, tostring(k))
  end
  local s = M.suggest(k, ...)
  for i = 1, select("#", ...) do
    if ALIASES[k] and (select(i, ...))[ALIASES[k]] then s = ALIASES[k] end
  end
  return format("%s: unknown %s %s%s%s", what, hint, show(k),
    s and format(" (did you mean '%s'?)", s) or "",
    hint == "field" and "; provider-specific fields go in `extra`" or "")
end

local function is_list(t)
  if type(t) ~= "table" then return false end
  local n = #t
  for k in each(t) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then return false end
  end
  return true
end
M.is_list = is_list

local function check_number(what, k, v, min, integer, above)
  if v == nil then return nil end
  if type(v) ~= "number" or v ~= v then
    return format("%s: %s must be a number, got %s", what, k, type(v))
  end
  if integer and v % 1 ~= 0 then return format("%s: %s must be an integer, got %s", what, k, tostring(v)) end
  if min and (v < min or (above and v == min)) then
    return format("%s: %s must be %s %s, got %s", what, k, above and "above" or "at least", tostring(min), tostring(v))
  end
  return nil
end

local function check_type(what, k, v, ...)
  if v == nil then return nil end
  local t = type(v)
  for i = 1, select("#", ...) do if t == select(i, ...) then return nil end end
  return format("%s: %s must be a %s, got %s", what, k, table.concat({ ... }, " or "), t)
end

--- A header table: names (strings) to values (strings or numbers).
function M.check_headers(what, k, h)
  if h == nil then return nil end
  if type(h) ~= "table" then
    return format("%s: %s must be a table of header names to values (e.g. { [\"x-team\"] = \"a\" }), got %s",
      what, k, type(h) == "string" and format("the string %q", h) or type(h))
  end
  for name, v in each(h) do
    if type(name) ~= "string" then
      return format("%s: %s must map header names to values (e.g. { [\"x-team\"] = \"a\" }); found %s = %s",
        what, k, show(name), tostring(v))
    end
    if type(v) ~= "string" and type(v) ~= "number" then
      return format("%s: %s[%q] must be a string, got %s", what, k, name, type(v))
    end
    if name:find("[%c:%s]") or tostring(v):find("[\r\n]") or tostring(v):find("\0", 1, true) then
      return format("%s: %s[%q]: header names and values must not contain line breaks or colons", what, k, name)
    end
  end
  return nil
end

--- The `hooks` option: a table of known hook names to functions; nil or a message.
function M.check_hooks(what, hooks)
  if hooks == nil then return nil end
  if type(hooks) ~= "table" then
    return format("%s: hooks must be a table such as { on_request = function(info) end }, got %s", what, type(hooks))
  end
  for k, fn in each(hooks) do
    if not M.HOOKS[k] then return unknown(what .. ": hooks", k, "hook", M.HOOKS) end
    if type(fn) ~= "function" then
      return format("%s: hooks.%s must be a function, got %s", what, tostring(k), type(fn))
    end
  end
  return nil
end

--- The `prices` option: model names to `{ input, output, cached_input, cache_write }`, US
--- dollars per million tokens (numbers, at least 0); nil or a message.
function M.check_prices(what, prices)
  if prices == nil then return nil end
  if type(prices) ~= "table" then
    return format("%s: prices must be a table of models to prices, "
      .. "e.g. { [\"gpt-4.1-mini\"] = { input = 0.4, output = 1.6 } }, got %s", what, type(prices))
  end
  for model, price in each(prices) do
    if type(model) ~= "string" then
      return format("%s: prices must be keyed by model name, found %s", what, show(model))
    end
    if type(price) ~= "table" then
      return format("%s: prices[%q] must be a table such as { input = 0.4, output = 1.6 }, got %s",
        what, model, type(price))
    end
    for k, v in each(price) do
      if not M.PRICE_FIELDS[k] then
        return unknown(format("%s: prices[%q]", what, model), k, "price", M.PRICE_FIELDS)
      end
      local e = check_number(what, format("prices[%q].%s", model, k), v, 0)
      if e then return e end
    end
  end
  return nil
end

local TIMEOUTS = { "timeout", "connect_timeout", "idle_timeout", "first_token_timeout" }

-- Options shared by a client and a request: timeouts, retries, api.
local function check_common(what, t)
  for _, k in ipairs(TIMEOUTS) do
    local e = check_number(what, k, t[k], 0, false, true)
    if e then return e end
  end
  local e = check_number(what, "max_retries", t.max_retries, 0, true)
  if e then return e end
  if t.retry ~= nil and type(t.retry) ~= "table" then
    return format("%s: retry must be a retry policy (llm.retry.policy{...}), got %s", what, type(t.retry))
  end
  if t.api ~= nil and t.api ~= "responses" and t.api ~= "chat" then
    return format("%s: api must be \"responses\" or \"chat\", got %s", what, tostring(t.api))
  end
  return check_type(what, "model", t.model, "string")
end

--- The client options `opts` of provider `name`; nil or a message. `what` names the place in
--- the message (default `llm.client("name")`).
function M.client_options(name, opts, what)
  what = what or ("llm.client(\"" .. tostring(name) .. "\")")
  for k in each(opts) do
    if not M.CLIENT_OPTIONS[k] then return unknown(what, k, "option", M.CLIENT_OPTIONS) end
  end
  local e = check_common(what, opts)
    or check_type(what, "api_key", opts.api_key, "string", "boolean")
    or check_type(what, "base_url", opts.base_url, "string")
    or check_type(what, "ca_file", opts.ca_file, "string")
    or check_type(what, "proxy", opts.proxy, "string")
    or check_type(what, "embedding_model", opts.embedding_model, "string")
    or check_number(what, "max_event_size", opts.max_event_size, 1, true)
    or M.check_headers(what, "headers", opts.headers)
    or M.check_hooks(what, opts.hooks)
    or M.check_prices(what, opts.prices)
  if e then return e end
  if opts.api_key == true then return what .. ": api_key must be a string (or false for a server without auth)" end
  if opts.base_url and not opts.base_url:find("^[hH][tT][tT][pP][sS]?://[^/]") then
    return format("%s: base_url must be an http:// or https:// URL, got %q", what, opts.base_url)
  end
  return nil
end

-- One message part (content[j] of messages[i]).
-- Its place, for a message (built only when there is something to say).
local function part_at(mwhere, j) return format("%s.content[%d]", mwhere, j) end

local function check_part(mwhere, j, part, p, pname)
  if type(part) == "string" then return nil end
  if type(part) ~= "table" then
    return format("%s must be a part table ({ type = \"text\", text = ... }) or a string, got %s",
      part_at(mwhere, j), type(part))
  end
  local ty = part.type
  if type(ty) ~= "string" then return part_at(mwhere, j) .. " has no type (e.g. { type = \"text\", text = ... })" end
  local takes = p.part_types or { text = true, image = true }
  if part.cache ~= nil and type(part.cache) ~= "boolean" then
    return part_at(mwhere, j) .. ": cache must be true or false (a cache breakpoint after this part)"
  end
  if ty == "reasoning" or takes[ty] then
    if ty == "text" and type(part.text) ~= "string" then
      return part_at(mwhere, j) .. ": a text part needs a string `text`"
    end
    if MEDIA[ty] then
      local n = (part.url ~= nil and 1 or 0) + (part.data ~= nil and 1 or 0) + (part.path ~= nil and 1 or 0)
      if n ~= 1 then
        return format("%s: %s %s part needs exactly one of `path`, `data` (base64) or `url`", part_at(mwhere, j),
          ty == "image" and "an" or "a", ty)
      end
      for _, k in ipairs({ "url", "data", "path", "mime_type", "name" }) do
        if part[k] ~= nil and type(part[k]) ~= "string" then
          return format("%s: %s must be a string, got %s", part_at(mwhere, j), k, type(part[k]))
        end
      end
    end
    return nil
  end
  if M.PART_TYPES[ty] then return format("%s: %s parts are not supported (%s)", pname, ty, part_at(mwhere, j)) end
  return format("%s: unknown part type %q%s", part_at(mwhere, j), ty,
    M.suggest(ty, M.PART_TYPES) and format(" (did you mean '%s'?)", M.suggest(ty, M.PART_TYPES)) or "")
end

-- One message.
local function check_message(i, m, p, pname)
  local role = type(m) == "table" and m.role
  local c = role and m.content
  if type(c) == "string" and M.ROLES[role] and role ~= "tool" then return nil end  -- the common case
  local where = "messages[" .. i .. "]"      -- built only to check further (or to complain)
  if type(m) ~= "table" then
    return format("%s must be a message table, e.g. { role = \"user\", content = %s }, got %s", where,
      type(m) == "string" and format("%q", m) or "...", type(m))
  end
  role = m.role
  if role == nil then
    if m.type ~= nil and p.wire_items then return nil end  -- an item in the API's own form
    return where .. " has no role (\"user\", \"assistant\", \"system\" or \"tool\")"
  end
  if not M.ROLES[role] then
    local s = M.suggest(role, M.ROLES)
    return format("%s: unknown role %s%s (expected \"user\", \"assistant\", \"system\", \"developer\" or \"tool\")",
      where, type(role) == "string" and format("%q", role) or tostring(role),
      s and format(" (did you mean '%s'?)", s) or "")
  end
  c = m.content
  if role == "tool" then
    if m.tool_call_id == nil and m.name == nil then
      return where .. ": a tool message needs tool_call_id (the id of the call it answers)"
    end
    return nil  -- a tool's result may be any value that encodes as JSON
  end
  if c == nil then
    if role == "assistant" then return nil end  -- a turn of tool calls only
    return where .. " has no content"
  end
  if type(c) == "string" then return nil end
  if type(c) ~= "table" then
    return format("%s.content must be a string or a list of parts, got %s", where, type(c))
  end
  if not is_list(c) then
    return format("%s.content must be a string or a list of parts ({ { type = \"text\", text = ... } }), "
      .. "got a table with named fields", where)
  end
  for j, part in ipairs(c) do
    local e = check_part(where, j, part, p, pname)
    if e then return e end
  end
  if role == "assistant" and m.tool_calls ~= nil and not is_list(m.tool_calls) then
    return where .. ".tool_calls must be a list of calls"
  end
  return nil
end

--- The messages of a request; nil or a message.
function M.messages(msgs, p, pname)
  if msgs == nil then return nil end
  if type(msgs) == "string" then
    return "messages must be a list of messages ({ { role = \"user\", content = \"...\" } }); "
      .. "to send one user message pass the string itself: client:chat(\"...\")"
  end
  if type(msgs) ~= "table" then return "messages must be a list of messages, got " .. type(msgs) end
  if not is_list(msgs) then
    if msgs.role ~= nil or msgs.content ~= nil then
      return "messages must be a list of messages: wrap the message in a list ({ { role = ..., content = ... } })"
    end
    return "messages must be a list of messages, got a table with named fields"
  end
  for i, m in ipairs(msgs) do
    local e = check_message(i, m, p, pname)
    if e then return e end
  end
  return nil
end

local RF_TYPES = { json_schema = true, json_object = true, text = true }

--- A table response_format (API §10, §12); nil or a message. The schema must be well formed,
--- since the reply is checked against it.
function M.response_format(rf)
  if type(rf) ~= "table" then return nil end
  if not RF_TYPES[rf.type] then
    return format("request: response_format.type must be \"json_schema\", \"json_object\" or \"text\", got %s",
      type(rf.type) == "string" and format("%q", rf.type) or tostring(rf.type))
  end
  if rf.type ~= "json_schema" then return nil end
  if rf.name ~= nil and type(rf.name) ~= "string" then return "request: response_format.name must be a string" end
  if type(rf.schema) ~= "table" then
    return "request: a json_schema response_format needs `schema`, a JSON schema table"
  end
  local ok, err = require("llm.schema").check(rf.schema, "response_format.schema")
  if not ok then return "request: " .. err end
  return nil
end

--- The options of client:request(method, path, body, opts); nil or a message.
M.REQUEST_OPTIONS = set{ "headers", "query", "timeout", "raw", "max_retries", "retry" }
function M.request_options(opts)
  if type(opts) ~= "table" then return "client:request: opts must be a table, got " .. type(opts) end
  for k in each(opts) do
    if not M.REQUEST_OPTIONS[k] then return unknown("client:request", k, "option", M.REQUEST_OPTIONS) end
  end
  return check_common("client:request", opts) or M.check_headers("client:request", "headers", opts.headers)
    or check_type("client:request", "query", opts.query, "table")
end

--- The options of client:batch(requests, opts) and client:batch_job(id, opts); nil or a message.
M.BATCH_OPTIONS = set{ "completion_window", "poll_interval", "metadata" }
function M.batch_options(opts, what)
  what = what or "client:batch"
  if type(opts) ~= "table" then return what .. ": opts must be a table, got " .. type(opts) end
  for k in each(opts) do
    if not M.BATCH_OPTIONS[k] then return unknown(what, k, "option", M.BATCH_OPTIONS) end
  end
  return check_number(what, "poll_interval", opts.poll_interval, 0)
    or check_type(what, "completion_window", opts.completion_window, "string")
    or check_type(what, "metadata", opts.metadata, "table")
end

--- The arguments of client:embed(texts, opts); nil or a message.
M.EMBED_OPTIONS = set{ "model", "dimensions", "extra", "headers", "timeout", "max_retries", "retry" }
function M.embed(texts, opts)
  local what = "client:embed"
  if type(texts) == "table" then
    if #texts == 0 or not is_list(texts) then
      return what .. ": texts must be a string or a non-empty list of strings"
    end
    for i, t in ipairs(texts) do
      if type(t) ~= "string" then return format("%s: texts[%d] must be a string, got %s", what, i, type(t)) end
    end
  elseif type(texts) ~= "string" then
    return format("%s: texts must be a string or a list of strings, got %s", what, type(texts))
  end
  if type(opts) ~= "table" then return what .. ": opts must be a table, got " .. type(opts) end
  for k in each(opts) do
    if not M.EMBED_OPTIONS[k] then return unknown(what, k, "option", M.EMBED_OPTIONS) end
  end
  return check_common(what, opts)
    or check_number(what, "dimensions", opts.dimensions, 1, true)
    or check_type(what, "extra", opts.extra, "table")
    or M.check_headers(what, "headers", opts.headers)
end

--- The options of client:stream_response(id, opts); nil or a message.
M.STREAM_RESPONSE_OPTIONS = set{ "starting_after", "timeout", "idle_timeout", "first_token_timeout",
                                 "max_retries", "retry", "headers" }
function M.stream_response(opts)
  local what = "client:stream_response"
  if type(opts) ~= "table" then return what .. ": opts must be a table, got " .. type(opts) end
  for k in each(opts) do
    if not M.STREAM_RESPONSE_OPTIONS[k] then return unknown(what, k, "option", M.STREAM_RESPONSE_OPTIONS) end
  end
  return check_common(what, opts)
    or check_number(what, "starting_after", opts.starting_after, 0, true)
    or M.check_headers(what, "headers", opts.headers)
end

--- tools: a list of tool tables; nil or a message.
function M.tools(what, tools)
  if tools == nil then return nil end
  if type(tools) ~= "table" or not is_list(tools) then
    return format("%s: tools must be a list of tools ({ tool1, tool2 }), got %s", what,
      type(tools) == "table" and "a single tool or a table with named fields" or type(tools))
  end
  for i, t in ipairs(tools) do
    if type(t) ~= "table" then return format("%s: tools[%d] must be a tool table, got %s", what, i, type(t)) end
  end
  return nil
end

-- The checks of a request's fields, in the order their errors are reported (the same order
-- as the client options' check_common first). Each takes the field's value, never nil.
local function num(k, min, integer, above)
  return { k, function(v) return check_number("request", k, v, min, integer, above) end }
end
local function typ(k, a, b)
  if b then return { k, function(v) return check_type("request", k, v, a, b) end } end
  return { k, function(v) return check_type("request", k, v, a) end }
end
local REQUEST_CHECKS = {
  num("timeout", 0, false, true), num("connect_timeout", 0, false, true),
  num("idle_timeout", 0, false, true), num("first_token_timeout", 0, false, true),
  num("max_retries", 0, true),
  { "retry", function(v)
      if type(v) ~= "table" then
        return format("request: retry must be a retry policy (llm.retry.policy{...}), got %s", type(v))
      end
    end },
  { "api", function(v)
      if v ~= "responses" and v ~= "chat" then
        return format("request: api must be \"responses\" or \"chat\", got %s", tostring(v))
      end
    end },
  typ("model", "string"),
  num("max_tokens", 1, true), num("priority"), num("temperature", 0), num("top_p", 0), num("n", 1, true),
  num("seed", nil, true), num("top_k", 1, true), num("presence_penalty"), num("frequency_penalty"),
  num("top_logprobs", 0, true),
  typ("logprobs", "boolean"), typ("user", "string"), typ("metadata", "table"),
  typ("service_tier", "string"), typ("store", "boolean"), typ("cache", "boolean"),
  typ("prompt_cache_key", "string"), typ("background", "boolean"), typ("parallel_tool_calls", "boolean"),
  typ("system", "string", "table"), typ("stop", "string", "table"), typ("extra", "table"),
  typ("extra_query", "table"), typ("reasoning", "table", "boolean"),
  typ("response_format", "table", "string"), typ("tool_choice", "string", "table"),
  typ("input", "string", "table"),
  { "extra_headers", function(v) return M.check_headers("request", "extra_headers", v) end },
  { "tools", function(v) return M.tools("request", v) end },
}
local CHECK_AT = {}   -- field name -> its place in REQUEST_CHECKS
for i = 1, #REQUEST_CHECKS do CHECK_AT[REQUEST_CHECKS[i][1]] = i end
local sort = table.sort

--- The request `req` (already a copy) for provider table `p`, served by client `pname`;
--- nil or a message. `extra_ok` is a set of further field names the caller handles.
function M.request(req, p, pname, extra_ok)
  local takes = p.request_fields or {}
  local present, np = nil, 0   -- the places in REQUEST_CHECKS of the fields req has
  for k in each(req) do
    local at = CHECK_AT[k]
    if at then
      np = np + 1
      if np == 1 then present = at
      elseif np == 2 then present = { present, at }
      else present[np] = at end
    end
    if not (M.REQUEST_FIELDS[k] or (extra_ok and extra_ok[k])) then
      if M.OPTIONAL_FIELDS[k] then
        if not takes[k] then
          local responses = k == "input" or k == "instructions" or k == "previous_response_id" or k == "include"
            or k == "background"
          return format("%s: the request field '%s' is not supported by this API%s", pname, tostring(k),
            responses and " (it belongs to the Responses API: api = \"responses\")"
              or "; provider-specific fields go in `extra`")
        end
      else
        return unknown("request", k, "field", M.REQUEST_FIELDS, takes, extra_ok or {})
      end
    end
  end
  local e
  -- the checks of the fields present, in REQUEST_CHECKS' order (the first complaint wins)
  if np == 1 then
    local c = REQUEST_CHECKS[present]
    e = c[2](req[c[1]])
    if e then return e end
  elseif np > 1 then
    sort(present)
    for i = 1, np do
      local c = REQUEST_CHECKS[present[i]]
      e = c[2](req[c[1]])
      if e then return e end
    end
  end
  e = M.messages(req.messages, p, pname)
  if e then return e end
  e = M.response_format(req.response_format)
  if e then return e end
  if type(req.stop) == "table" then
    for i, s in ipairs(req.stop) do
      if type(s) ~= "string" then return format("request: stop[%d] must be a string, got %s", i, type(s)) end
    end
  end
  if type(req.extra_query) == "table" then
    for k, v in each(req.extra_query) do
      if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean") then
        return "request: extra_query must map names (strings) to strings or numbers"
      end
    end
  end
  return nil
end

return M
