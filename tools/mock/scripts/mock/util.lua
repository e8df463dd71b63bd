-- Helpers shared by the provider behaviours.
local M = {}

-- Splits text into word-sized deltas ("Hello", " world", ...). With n, exactly n deltas:
-- the word list is cycled, so the streamed text is the words repeated.
function M.pieces(text, n)
  local words = {}
  for w in text:gmatch("%s*%S+") do words[#words + 1] = w end
  local tail = text:match("%s+$")
  if tail then
    if #words > 0 then words[#words] = words[#words] .. tail else words[1] = tail end
  end
  if n == nil then return words end
  if #words == 0 then words = { "x" } end
  local out, k = {}, #words
  for i = 1, n do out[i] = words[(i - 1) % k + 1] end
  return out
end

-- Cuts a string into fragments of at most size bytes (tool-call argument deltas).
function M.fragments(s, size)
  size = size or 8
  local out = {}
  for i = 1, #s, size do out[#out + 1] = s:sub(i, i + size - 1) end
  if #out == 0 then out[1] = "" end
  return out
end

-- Text of an OpenAI/Anthropic/Ollama-style content value: a string or a list of parts.
function M.content_text(content, part_types)
  if type(content) == "string" then return content end
  if type(content) ~= "table" then return nil end
  local out = {}
  for _, part in ipairs(content) do
    if type(part) == "table" and type(part.text) == "string"
       and (part.type == nil or part_types[part.type]) then
      out[#out + 1] = part.text
    end
  end
  if #out == 0 then return nil end
  return table.concat(out)
end

-- The last user text in a list of {role, content} messages.
function M.last_user(messages, part_types, role_field, content_field)
  if type(messages) ~= "table" then return nil end
  for i = #messages, 1, -1 do
    local m = messages[i]
    if type(m) == "table" and (m[role_field or "role"] or "user") == "user" then
      local t = M.content_text(m[content_field or "content"], part_types)
      if t then return t end
    end
  end
  return nil
end

-- Calls check(item) for each table in list; the first message it returns, or nil.
function M.each_item(list, check)
  if type(list) ~= "table" then return nil end
  for _, item in ipairs(list) do
    if type(item) == "table" then
      local e = check(item)
      if e then return e end
    end
  end
  return nil
end

-- Calls check(part) for each part table of each message's `field` list (content, parts);
-- the first message it returns, or nil.
function M.each_part(messages, field, check)
  if type(messages) ~= "table" then return nil end
  for _, m in ipairs(messages) do
    if type(m) == "table" then
      local e = M.each_item(m[field], check)
      if e then return e end
    end
  end
  return nil
end

-- A rough token count, so usage numbers move with the input.
function M.count_tokens(s)
  local n = 0
  for _ in (s or ""):gmatch("%S+") do n = n + 1 end
  return math.max(n, 1)
end

-- Arguments as a JSON string, whether the script gave a table or a raw string.
function M.arguments_json(json, args)
  if type(args) == "string" then return args end
  return json.encode(args or {})
end

function M.arguments_table(json, args)
  if type(args) == "table" then return args end
  return json.decode(args or "{}") or {}
end

-- Looks up a header in an ordered {name, value} list, case-insensitively.
function M.has_header(list, name)
  name = name:lower()
  for _, h in ipairs(list) do
    if h[1]:lower() == name then return true end
  end
  return false
end

-- gzip with stored (uncompressed) deflate blocks: a valid gzip member that any client
-- must inflate, without a compression library in the mock.
local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do c = (c & 1 == 1) and (0xEDB88320 ~ (c >> 1)) or (c >> 1) end
  crc_table[i] = c
end

local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = crc_table[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end

function M.gzip(s)
  local out = { "\31\139\8\0\0\0\0\0\0\255" }   -- magic, deflate, no flags, no mtime, unknown OS
  local pos = 1
  repeat
    local piece = s:sub(pos, pos + 65534)
    pos = pos + #piece
    local final = pos > #s and 1 or 0
    out[#out + 1] = string.pack("<BI2I2", final, #piece, (~#piece) & 0xFFFF) .. piece
  until final == 1
  out[#out + 1] = string.pack("<I4I4", crc32(s), #s & 0xFFFFFFFF)
  return table.concat(out)
end

return M
