--- llm.media: image, file and audio parts (API §12). A part given by `path` is read and
-- base64-encoded once, before the provider sees it, so a provider only ever maps `data`
-- (base64 with `mime_type`) or `url`. The checks here run before anything is sent: which
-- sources and types a route takes (the provider table's `part_types`) and the provider's
-- documented size limits (`media_limits`).
--
-- `part_types[ty]` is `true` (any source) or a table `{ url = true, data = true,
-- mime = { ["audio/wav"] = true, ... } }`; `path` is allowed wherever `data` is, since a
-- file becomes data. `media_limits = { image = bytes, file = bytes, audio = bytes,
-- request = bytes, encoded = bool }`: per part and for all media of one request together,
-- in decoded bytes, or in base64 bytes when `encoded` (as Anthropic counts them).
-- @module llm.media
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local M = {}

local type, ipairs, format = type, ipairs, string.format

--- Mime types by file extension (lower case).
M.MIME = {
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  webp = "image/webp", heic = "image/heic", heif = "image/heif", bmp = "image/bmp",
  pdf = "application/pdf", txt = "text/plain", md = "text/markdown", csv = "text/csv",
  html = "text/html", htm = "text/html", xml = "text/xml", json = "application/json",
  rtf = "text/rtf", docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  wav = "audio/wav", mp3 = "audio/mpeg", ogg = "audio/ogg", flac = "audio/flac",
  aac = "audio/aac", aiff = "audio/aiff", m4a = "audio/mp4", webm = "audio/webm",
}

-- base64: in C when the core is there (one pass over the file), else in Lua.

local core_enc, core_dec
do
  local ok, core = pcall(require, "llm.core")
  if ok and type(core) == "table" and type(core.base64_encode) == "function" then
    core_enc, core_dec = core.base64_encode, core.base64_decode
  end
end

local ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Lua fallback: three bytes at a time through a precomputed table of 4096 pairs.
local PAIR
local function lua_encode(s)
  if not PAIR then
    PAIR = {}
    for i = 0, 4095 do
      local a, b = math.floor(i / 64) + 1, i % 64 + 1
      PAIR[i] = ALPHA:sub(a, a) .. ALPHA:sub(b, b)
    end
  end
  local out, n = {}, 0
  local len = #s
  local full = len - len % 3
  for i = 1, full, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + b * 256 + c
    n = n + 1
    out[n] = PAIR[math.floor(v / 4096)] .. PAIR[v % 4096]
  end
  local rest = len - full
  if rest > 0 then
    local a, b = s:byte(full + 1, full + 2)
    local v = a * 65536 + (b or 0) * 256
    local q = PAIR[math.floor(v / 4096)] .. PAIR[v % 4096]
    n = n + 1
    out[n] = rest == 1 and (q:sub(1, 2) .. "==") or (q:sub(1, 3) .. "=")
  end
  return table.concat(out)
end

local VALUE
local function lua_decode(s)
  if not VALUE then
    VALUE = {}
    for i = 1, 64 do VALUE[ALPHA:byte(i)] = i - 1 end
    VALUE[("-"):byte()], VALUE[("_"):byte()] = 62, 63
  end
  s = s:gsub("[%s=]", "")
  local out, n, acc, bits = {}, 0, 0, 0
  for i = 1, #s do
    local v = VALUE[s:byte(i)]
    if not v then return nil, "not base64: unexpected byte at offset " .. (i - 1) end
    acc = (acc % 65536) * 64 + v
    bits = bits + 6
    if bits >= 8 then
      bits = bits - 8
      n = n + 1
      out[n] = string.char(math.floor(acc / 2 ^ bits) % 256)
    end
  end
  if bits >= 6 then return nil, "not base64: truncated input" end
  return table.concat(out)
end

--- Standard padded base64 of a string.
---@param s string
---@return string
function M.base64_encode(s)
  if core_enc then return core_enc(s) end
  return lua_encode(s)
end

--- The bytes of a base64 text (whitespace and padding are skipped), or nil, message.
---@param s string
---@return string? bytes
---@return string? err
function M.base64_decode(s)
  if core_dec then return core_dec(s) end
  return lua_decode(s)
end

M._lua_encode, M._lua_decode = lua_encode, lua_decode   -- for the specs

-- Parts

M.MEDIA = { image = true, file = true, audio = true }

--- The mime type for a file name or URL, from its extension; nil when unknown.
---@param name? string
---@return string?
function M.mime_of(name)
  if type(name) ~= "string" then return nil end
  local ext = name:match("%.(%w+)$") or name:match("%.(%w+)[?#]")
  return ext and M.MIME[ext:lower()] or nil
end

-- Decoded byte count of a base64 text (without reading it).
local function decoded_size(data)
  local n = #data
  local pad = data:sub(-2) == "==" and 2 or (data:sub(-1) == "=" and 1 or 0)
  return math.floor(n / 4) * 3 - pad + (n % 4 > 1 and (n % 4 - 1) or 0)
end

-- Resolved files, by part table: the same part sent again (a conversation resends its
-- history; a retry reuses the request) is read and encoded once.
local resolved = setmetatable({}, { __mode = "k" })

local function base_name(path)
  return (path:match("([^/\\]+)$")) or path
end

local function mb(n)
  return format("%.1f MB", n / 1048576)
end

--- The part as a provider maps it: `path` read into `data` (base64) with `mime_type` and
--- `name`; other parts get `mime_type` from their `name` or URL when missing. Raises (at
--- `level`) when the file cannot be read or the part has no mime type a route needs.
---@param part table an image, file or audio part
---@param where string where the part is (for messages)
---@param level integer the caller's stack level for errors
---@return table part a new table (the user's part is not changed)
function M.resolve(part, where, level)
  local hit = resolved[part]
  -- a part table reused with another file or payload is read again
  if hit and hit.src_path == part.path and hit.src_data == part.data and hit.src_url == part.url
     and hit.src_mime == part.mime_type then
    return hit.part
  end
  local out = {}
  for k, v in each(part) do out[k] = v end
  if part.path ~= nil then
    if type(part.path) ~= "string" then error(where .. ": path must be a string", level) end
    if not io or not io.open then
      error(where .. ": cannot read files here (no io library); pass base64 `data`", level)
    end
    local f, ferr = io.open(part.path, "rb")
    if not f then error(where .. ": cannot read " .. tostring(ferr), level) end
    local bytes = f:read("*a")
    f:close()
    out.path = nil
    out.data = M.base64_encode(bytes or "")
    out.size = #(bytes or "")
    out.name = part.name or base_name(part.path)
    out.mime_type = part.mime_type or M.mime_of(part.path)
    if not out.mime_type then
      error(format("%s: cannot tell the mime type of %s; pass mime_type", where, part.path), level)
    end
  else
    local dmime, b64
    if type(part.url) == "string" then dmime, b64 = part.url:match("^data:([^;,]*);base64,(.*)$") end
    if dmime then   -- a data: URL is data
      out.url, out.data = nil, b64
      out.mime_type = part.mime_type or (dmime ~= "" and dmime or nil)
    end
    out.mime_type = out.mime_type or M.mime_of(part.name) or M.mime_of(part.url)
    if type(out.data) == "string" then out.size = decoded_size(out.data) end
  end
  if out.mime_type == nil and out.data ~= nil and part.type == "image" then out.mime_type = "image/png" end
  resolved[part] = { part = out, src_path = part.path, src_data = part.data, src_url = part.url,
                     src_mime = part.mime_type }
  return out
end

local function copy(t)
  local out = {}
  for k, v in each(t) do out[k] = v end
  return out
end

-- What a route takes for one part: nil when it takes it, else the message.
local function refusal(pname, part, takes, where)
  local ty = part.type
  local rule = takes[ty]
  if not rule then return format("%s: %s parts are not supported (%s)", pname, ty, where) end
  if rule == true then return nil end
  local source = part.url ~= nil and "url" or "data"
  if not rule[source] then
    local alt = source == "url" and "pass `data` or `path`" or "pass a `url`"
    return format("%s: %s parts by %s are not supported (%s); %s", pname, ty,
      source == "url" and "url" or "data or path", where, alt)
  end
  if rule.mime and part.mime_type and not rule.mime[part.mime_type] then
    local names = {}
    for m in each(rule.mime) do names[#names + 1] = m end
    table.sort(names)
    return format("%s: %s parts of type %s are not supported (%s); it takes %s", pname, ty,
      part.mime_type, where, table.concat(names, ", "))
  end
  return nil
end

-- Whether any message of the list has a list of parts (only those can hold media).
local function has_part_lists(msgs)
  for _, m in ipairs(msgs) do
    if type(m) == "table" and type(m.content) == "table" then return true end
  end
  return false
end

--- The request with its media parts resolved (a copy where anything changed), after the
--- route's checks: sources, types and size limits. Raises at `level` naming the provider
--- `pname` and the part. Requests without media parts come back unchanged.
---@param req table the normalized request
---@param p table the provider table (part_types, media_limits)
---@param pname string the provider's name in messages
---@param level integer the caller's stack level for errors
---@return table req
function M.prepare(req, p, pname, level)
  local messages, input = req.messages, req.input
  if not (type(messages) == "table" and has_part_lists(messages))
    and not (type(input) == "table" and has_part_lists(input)) then
    return req   -- text only (the common case): nothing to resolve, nothing to add up
  end
  level = level + 1
  local takes = p.part_types or {}
  local limits = p.media_limits or {}
  local total = 0
  -- The messages of `field` ("messages", or the Responses API's `input` list) with their
  -- media parts resolved; nil when nothing changed.
  local function resolve_list(msgs, field)
    local new_msgs
    for i, m in ipairs(msgs) do
      local c = type(m) == "table" and m.content
      if type(c) == "table" then
        local new_c
        for j, part in ipairs(c) do
          if type(part) == "table" and M.MEDIA[part.type] then
            local where = format("%s[%d].content[%d]", field, i, j)
            local r = M.resolve(part, where, level + 2)
            local why = refusal(pname, r, takes, where)
            if why then error(why, level + 1) end
            local size = (limits.encoded and r.data and #r.data) or r.size or 0   -- url parts: 0
            local cap = limits[r.type]
            if cap and size > cap then
              error(format("%s: %s%s is %s, over the %s limit for %s parts", pname, where,
                r.name and (" (" .. r.name .. ")") or "", mb(size), mb(cap), r.type), level + 1)
            end
            total = total + size
            new_c = new_c or copy(c)
            new_c[j] = r
          end
        end
        if new_c then
          new_msgs = new_msgs or copy(msgs)
          local nm = copy(m)
          nm.content = new_c
          new_msgs[i] = nm
        end
      end
    end
    return new_msgs
  end
  local new_msgs = type(req.messages) == "table" and resolve_list(req.messages, "messages") or nil
  local new_input = type(req.input) == "table" and resolve_list(req.input, "input") or nil
  if limits.request and total > limits.request then
    error(format("%s: the media of this request add up to %s, over the %s limit per request",
      pname, mb(total), mb(limits.request)), level)
  end
  if not new_msgs and not new_input then return req end
  local out = copy(req)
  out.messages = new_msgs or req.messages
  out.input = new_input or req.input
  return out
end

--- A `data:` URL for a resolved part.
---@param p table a part with `data` and `mime_type`
---@return string
function M.data_url(p)
  return "data:" .. (p.mime_type or "application/octet-stream") .. ";base64," .. p.data
end

return M
