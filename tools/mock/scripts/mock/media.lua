-- Media parts as each API reference describes them, checked the way the real servers check
-- them: a malformed part is a 400 in the provider's error shape; a good one is noted, and
-- the echo reply lists what arrived ("[image image/png 67 bytes]"), so a test sees through
-- the normalized result what the server received. Written from the API references, apart
-- from the client's providers.
local M = {}

local B64 = "^[A-Za-z0-9+/]*=?=?$"

-- Decoded size of base64 text, or nil when it is not base64.
function M.b64_size(s)
  if type(s) ~= "string" or #s % 4 ~= 0 or not s:find(B64) then return nil end
  local pad = s:sub(-2) == "==" and 2 or (s:sub(-1) == "=" and 1 or 0)
  return #s // 4 * 3 - pad
end

-- A data: URL's mime type and decoded size, or nil.
function M.data_url(u)
  if type(u) ~= "string" then return nil end
  local mime, b64 = u:match("^data:([%w%.%+%-]+/[%w%.%+%-]+);base64,(.*)$")
  if not mime then return nil end
  local n = M.b64_size(b64)
  if not n then return nil end
  return mime, n
end

local function is_http(u) return type(u) == "string" and u:find("^https?://[^/]") ~= nil end

-- One entry of ctx.media: kind ("image", "file", "audio"), mime, bytes or url.
function M.note(ctx, kind, mime, bytes, url)
  ctx.media = ctx.media or {}
  ctx.media[#ctx.media + 1] = { kind = kind, mime = mime, bytes = bytes, url = url }
end

-- The text the echo reply appends for the media of a request.
function M.summary(ctx)
  if not ctx.media then return "" end
  local out = {}
  for _, m in ipairs(ctx.media) do
    if m.url then out[#out + 1] = string.format(" [%s %s %s]", m.kind, m.mime or "?", m.url)
    else out[#out + 1] = string.format(" [%s %s %d bytes]", m.kind, m.mime or "?", m.bytes or 0) end
  end
  return table.concat(out)
end

local IMAGE = { ["image/png"] = true, ["image/jpeg"] = true, ["image/gif"] = true, ["image/webp"] = true }

---------------------------------------------------------------- OpenAI Chat Completions
-- image_url { url (http(s) or a data: URL), detail }, input_audio { data, format wav|mp3 },
-- file { file_data (a data: URL), file_id, filename }.
function M.openai_chat(part, ctx)
  local t = part.type
  if t == "image_url" then
    local iu = part.image_url
    local u = type(iu) == "table" and iu.url
    local mime, n = M.data_url(u)
    if mime then
      if not IMAGE[mime] then return "Invalid image_url: unsupported image type " .. mime end
      M.note(ctx, "image", mime, n)
    elseif is_http(u) then M.note(ctx, "image", nil, nil, u)
    else return "Invalid 'image_url.url': expected a URL or a base64 data URL." end
  elseif t == "input_audio" then
    local a = part.input_audio
    if type(a) ~= "table" then return "Missing required parameter: 'input_audio'." end
    local n = M.b64_size(a.data)
    if not n then return "Invalid 'input_audio.data': expected base64-encoded audio." end
    if a.format ~= "wav" and a.format ~= "mp3" then
      return "Invalid value for 'input_audio.format': expected 'wav' or 'mp3'."
    end
    M.note(ctx, "audio", a.format == "wav" and "audio/wav" or "audio/mpeg", n)
  elseif t == "file" then
    local f = part.file
    if type(f) ~= "table" then return "Missing required parameter: 'file'." end
    if f.file_id then M.note(ctx, "file", nil, nil, "file_id:" .. tostring(f.file_id)); return nil end
    local mime, n = M.data_url(f.file_data)
    if not mime then return "Invalid 'file.file_data': expected a base64 data URL." end
    if mime ~= "application/pdf" then return "Invalid file data: only PDF files are supported." end
    if type(f.filename) ~= "string" then return "Missing required parameter: 'file.filename'." end
    M.note(ctx, "file", mime, n)
  elseif t ~= "text" then
    return "Invalid value for 'type': " .. tostring(t)
  end
  return nil
end

---------------------------------------------------------------- OpenAI Responses
-- input_image { image_url | file_id, detail }, input_file { file_data (data: URL) + filename
-- | file_url | file_id }.
function M.openai_responses(part, ctx)
  local t = part.type
  if t == "input_image" then
    local mime, n = M.data_url(part.image_url)
    if mime then M.note(ctx, "image", mime, n)
    elseif is_http(part.image_url) then M.note(ctx, "image", nil, nil, part.image_url)
    elseif part.file_id then M.note(ctx, "image", nil, nil, "file_id:" .. tostring(part.file_id))
    else return "Invalid 'input_image': expected image_url (a URL or a data URL) or file_id." end
  elseif t == "input_file" then
    if part.file_data ~= nil then
      local mime, n = M.data_url(part.file_data)
      if not mime then return "Invalid 'input_file.file_data': expected a base64 data URL." end
      if type(part.filename) ~= "string" then return "Missing required parameter: 'filename'." end
      M.note(ctx, "file", mime, n)
    elseif is_http(part.file_url) then M.note(ctx, "file", nil, nil, part.file_url)
    elseif part.file_id then M.note(ctx, "file", nil, nil, "file_id:" .. tostring(part.file_id))
    else return "Invalid 'input_file': expected file_data, file_url or file_id." end
  elseif t ~= "input_text" and t ~= "output_text" and t ~= "text" then
    return "Invalid value for 'type': " .. tostring(t)
  end
  return nil
end

---------------------------------------------------------------- Anthropic Messages
-- image { source: base64 (media_type jpeg/png/gif/webp, data) | url }, document { source:
-- base64 (application/pdf) | text (text/plain, data) | url }; any block may carry
-- cache_control { type = "ephemeral", ttl = "5m" | "1h" }, at most 4 per request.
local IMAGE_MAX = 5 * 1024 * 1024   -- on the base64 text

function M.cache_control(cc, ctx)
  if cc == nil then return nil end
  if type(cc) ~= "table" or cc.type ~= "ephemeral" then
    return "cache_control.type: Input should be 'ephemeral'"
  end
  if cc.ttl ~= nil and cc.ttl ~= "5m" and cc.ttl ~= "1h" then
    return "cache_control.ttl: Input should be '5m' or '1h'"
  end
  ctx.breakpoints = (ctx.breakpoints or 0) + 1
  if ctx.breakpoints > 4 then
    return "A maximum of 4 blocks with cache_control may be provided. Found " .. ctx.breakpoints .. "."
  end
  return nil
end

function M.anthropic(block, ctx)
  local t = block.type
  local e = M.cache_control(block.cache_control, ctx)
  if e then return e end
  if t == "image" or t == "document" then
    local src = block.source
    if type(src) ~= "table" then return t .. ".source: Field required" end
    if src.type == "url" then
      if not is_http(src.url) then return t .. ".source.url: Input should be a valid URL" end
      M.note(ctx, t == "image" and "image" or "file", nil, nil, src.url)
    elseif src.type == "base64" then
      local n = M.b64_size(src.data)
      if not n then return t .. ".source.base64.data: invalid base64 data" end
      if t == "image" then
        if not IMAGE[src.media_type] then
          return "image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
        end
        if #src.data > IMAGE_MAX then
          return string.format("messages: image exceeds 5 MB maximum: %d bytes > %d bytes", #src.data, IMAGE_MAX)
        end
        M.note(ctx, "image", src.media_type, n)
      else
        if src.media_type ~= "application/pdf" then
          return "document.source.base64.media_type: Input should be 'application/pdf'"
        end
        M.note(ctx, "file", "application/pdf", n)
      end
    elseif src.type == "text" and t == "document" then
      if src.media_type ~= "text/plain" or type(src.data) ~= "string" then
        return "document.source.text: media_type 'text/plain' and a string data are required"
      end
      M.note(ctx, "file", "text/plain", #src.data)
    else
      return t .. ".source.type: Input tag '" .. tostring(src.type) .. "' is not one of the expected tags"
    end
  elseif t == "text" and block.cache_control and block.text == "" then
    return "cache_control cannot be set for empty text blocks"
  end
  return nil
end

---------------------------------------------------------------- Gemini
-- Part { text | inline_data / inlineData { mime_type / mimeType, data } | file_data /
-- fileData { mime_type / mimeType, file_uri / fileUri } }; the proto JSON mapping takes both
-- spellings.
local function kind_of(mime)
  if type(mime) ~= "string" then return "file" end
  if mime:find("^image/") then return "image" end
  if mime:find("^audio/") then return "audio" end
  return "file"
end

function M.gemini(part, ctx)
  local inline = part.inline_data or part.inlineData
  local fdata = part.file_data or part.fileData
  if inline ~= nil then
    if type(inline) ~= "table" then return "Invalid value at 'contents.parts.inline_data'" end
    local mime = inline.mime_type or inline.mimeType
    local n = M.b64_size(inline.data)
    if type(mime) ~= "string" or mime == "" then return "Invalid value at 'inline_data.mime_type': required" end
    if not n then return "Invalid value at 'inline_data.data' (TYPE_BYTES), Base64 decoding failed" end
    M.note(ctx, kind_of(mime), mime, n)
  elseif fdata ~= nil then
    if type(fdata) ~= "table" then return "Invalid value at 'contents.parts.file_data'" end
    local uri = fdata.file_uri or fdata.fileUri
    if type(uri) ~= "string" or uri == "" then return "Invalid value at 'file_data.file_uri': required" end
    local mime = fdata.mime_type or fdata.mimeType
    M.note(ctx, kind_of(mime), mime, nil, uri)
  end
  return nil
end

---------------------------------------------------------------- Ollama
-- message.images: a list of base64-encoded images.
function M.ollama(images, ctx)
  if type(images) ~= "table" then return "images: expected a list of base64 strings" end
  for _, img in ipairs(images) do
    local n = M.b64_size(img)
    if not n then return "illegal base64 data in images" end
    M.note(ctx, "image", nil, n)
  end
  return nil
end

---------------------------------------------------------------- structured output
-- OpenAI Chat response_format { type = "json_schema", json_schema = { name, schema, strict } };
-- Responses text.format { type = "json_schema", name, schema, strict }; Anthropic a
-- tool_choice { type = "tool", name } naming one of the tools; Gemini responseSchema only
-- with responseMimeType "application/json".
local NAME = "^[%w_%-]+$"

function M.openai_format(rf)
  if type(rf) ~= "table" or rf.type ~= "json_schema" then return nil end
  local js = rf.json_schema
  if type(js) ~= "table" then return "Missing required parameter: 'response_format.json_schema'." end
  if type(js.name) ~= "string" or not js.name:find(NAME) then
    return "Invalid 'response_format.json_schema.name': expected a string of letters, digits, '_' or '-'."
  end
  if js.schema ~= nil and type(js.schema) ~= "table" then return "Invalid 'response_format.json_schema.schema'." end
  return nil
end

function M.responses_format(text)
  local f = type(text) == "table" and text.format or nil
  if type(f) ~= "table" or f.type ~= "json_schema" then return nil end
  if type(f.name) ~= "string" or not f.name:find(NAME) then
    return "Missing required parameter: 'text.format.name'."
  end
  if type(f.schema) ~= "table" then return "Missing required parameter: 'text.format.schema'." end
  return nil
end

function M.anthropic_tool_choice(body)
  local tc = body.tool_choice
  if type(tc) ~= "table" or tc.type ~= "tool" then return nil end
  for _, t in ipairs(type(body.tools) == "table" and body.tools or {}) do
    if type(t) == "table" and t.name == tc.name then
      if type(t.input_schema) ~= "table" or t.input_schema.type ~= "object" then
        return "tools: input_schema.type: Input should be 'object'"
      end
      return nil
    end
  end
  return "tool_choice: tool '" .. tostring(tc.name) .. "' not found in tools"
end

function M.gemini_config(gc)
  if type(gc) ~= "table" then return nil end
  if gc.responseSchema ~= nil and gc.responseMimeType ~= "application/json" then
    return "Invalid argument: response_schema is only supported with response_mime_type application/json."
  end
  return nil
end

return M
