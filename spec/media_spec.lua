-- Media parts (API §12): an image, a PDF and an audio clip through every route that takes
-- them, checked on the bodies the mock received and on the normalized replies (the mock
-- lists the media it got in its echo), and the refusals before anything is sent.
local media = require("llm.media")
local mockmod = require("support.mock")

-- A 1x1 PNG, a one-page PDF and a short WAV clip, written to temporary files.
local PNG = "\137PNG\r\n\26\n\0\0\0\rIHDR\0\0\0\1\0\0\0\1\8\6\0\0\0\31\21\196\137\0\0\0\rIDATx\156c"
  .. "\248\15\4\0\9\251\3\253\227U\242\156\0\0\0\0IEND\174B`\130"
local PDF = "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]"
  .. "/Count 1>>endobj\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 72 72]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
local function wav()
  local samples = string.rep("\0\0", 800)
  local function u32(n) return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, 0) end
  return "RIFF" .. u32(36 + #samples) .. "WAVEfmt " .. u32(16) .. "\1\0\1\0" .. u32(8000) .. u32(16000)
    .. "\2\0\16\0data" .. u32(#samples) .. samples
end
local WAV = wav()

local dir
local function write(name, bytes)
  local path = dir .. "/" .. name
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  return path
end

local mock, files
setup(function()
  mock = mockmod.start()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  files = { png = write("cat.png", PNG), pdf = write("report.pdf", PDF), wav = write("q.wav", WAV),
            odd = write("notes.xyz", "?") }
end)
teardown(function()
  if mock then mock:stop() end
  if dir then os.execute("rm -rf " .. dir) end
end)

local function client(provider, opts)
  local o = mockmod.merge({ max_retries = 0 }, opts)
  return mock.server:client(provider, o)
end

local function ask(parts)
  local content = { { type = "text", text = "What is this?" } }
  for _, p in ipairs(parts) do content[#content + 1] = p end
  return { messages = { { role = "user", content = content } } }
end

local function last_body()
  local reqs = mock.server:requests()
  return reqs[#reqs].json, #reqs
end

local B64_PNG, B64_PDF, B64_WAV = media.base64_encode(PNG), media.base64_encode(PDF), media.base64_encode(WAV)

describe("media: base64 and mime types", function()
  it("encodes and decodes in C and in Lua alike", function()
    for _, s in ipairs({ "", "f", "fo", "foo", "foob", "fooba", "foobar", PNG, WAV }) do
      local c = media.base64_encode(s)
      assert.are.equal(c, media._lua_encode(s))
      assert.are.equal(s, media.base64_decode(c))
      assert.are.equal(s, media._lua_decode(c))
    end
    assert.are.equal("Zm9vYmFy", media.base64_encode("foobar"))
    assert.are.equal("Zm8=", media.base64_encode("fo"))
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local all = table.concat(bytes)
    assert.are.equal(all, media.base64_decode(media.base64_encode(all)))
    assert.is_nil(media.base64_decode("ab$d"))
    assert.is_nil(media._lua_decode("ab$d"))
  end)

  it("takes the mime type from the extension", function()
    assert.are.equal("image/png", media.mime_of("a/b/cat.PNG"))
    assert.are.equal("application/pdf", media.mime_of("report.pdf"))
    assert.are.equal("audio/wav", media.mime_of("q.wav"))
    assert.are.equal("audio/mpeg", media.mime_of("q.mp3"))
    assert.are.equal("image/jpeg", media.mime_of("https://x.test/a.jpg?size=2"))
    assert.is_nil(media.mime_of("notes.xyz"))
  end)
end)

describe("media: an image through every route", function()
  it("OpenAI Chat: image_url with a data URL", function()
    local c = client("openai")
    local resp = assert(c:chat(ask{ { type = "image", path = files.png } }))
    local body = last_body()
    local part = body.messages[1].content[2]
    assert.are.equal("image_url", part.type)
    assert.are.equal("data:image/png;base64," .. B64_PNG, part.image_url.url)
    assert.matches("%[image image/png " .. #PNG .. " bytes%]", resp.text)
  end)

  it("OpenAI Responses: input_image", function()
    local c = client("openai", { api = "responses" })
    local resp = assert(c:chat(ask{ { type = "image", path = files.png } }))
    local part = last_body().input[1].content[2]
    assert.are.equal("input_image", part.type)
    assert.are.equal("data:image/png;base64," .. B64_PNG, part.image_url)
    assert.matches("%[image image/png " .. #PNG .. " bytes%]", resp.text)
  end)

  it("Anthropic: an image block with a base64 source", function()
    local c = client("anthropic")
    local resp = assert(c:chat(ask{ { type = "image", path = files.png } }))
    local block = last_body().messages[1].content[2]
    assert.are.same({ type = "image", source = { type = "base64", media_type = "image/png", data = B64_PNG } }, block)
    assert.matches("%[image image/png " .. #PNG .. " bytes%]", resp.text)
  end)

  it("Gemini: inline_data, and file_data for a URL", function()
    local c = client("gemini")
    local resp = assert(c:chat(ask{ { type = "image", path = files.png },
                                    { type = "image", url = "https://example.test/dog.webp" } }))
    local parts = last_body().contents[1].parts
    assert.are.same({ inline_data = { mime_type = "image/png", data = B64_PNG } }, parts[2])
    assert.are.same({ file_data = { mime_type = "image/webp", file_uri = "https://example.test/dog.webp" } }, parts[3])
    assert.matches("%[image image/png " .. #PNG .. " bytes%] %[image image/webp https://example.test/dog.webp%]", resp.text)
  end)

  it("Ollama: the message's images list, also from a data: URL", function()
    local c = client("ollama")
    local resp = assert(c:chat(ask{ { type = "image", path = files.png },
                                    { type = "image", url = "data:image/png;base64," .. B64_PNG } }))
    local msg = last_body().messages[1]
    assert.are.equal("What is this?", msg.content)
    assert.are.same({ B64_PNG, B64_PNG }, msg.images)
    assert.matches("%[image %? " .. #PNG .. " bytes%] %[image %? " .. #PNG .. " bytes%]", resp.text)
  end)
end)

describe("media: a PDF through every route that takes one", function()
  it("OpenAI Chat: a file part with file_data and filename", function()
    local resp = assert(client("openai"):chat(ask{ { type = "file", path = files.pdf } }))
    local part = last_body().messages[1].content[2]
    assert.are.same({ type = "file", file = { filename = "report.pdf",
      file_data = "data:application/pdf;base64," .. B64_PDF } }, part)
    assert.matches("%[file application/pdf " .. #PDF .. " bytes%]", resp.text)
  end)

  it("OpenAI Responses: input_file from data and from a URL", function()
    local c = client("openai", { api = "responses" })
    local resp = assert(c:chat(ask{ { type = "file", path = files.pdf, name = "q3.pdf" },
                                    { type = "file", url = "https://example.test/a.pdf" } }))
    local content = last_body().input[1].content
    assert.are.same({ type = "input_file", filename = "q3.pdf",
      file_data = "data:application/pdf;base64," .. B64_PDF }, content[2])
    assert.are.same({ type = "input_file", file_url = "https://example.test/a.pdf" }, content[3])
    assert.matches("%[file application/pdf " .. #PDF .. " bytes%] %[file %? https://example.test/a.pdf%]", resp.text)
  end)

  it("OpenAI Responses: media parts in `input` messages are read too", function()
    local c = client("openai", { api = "responses" })
    assert(c:chat{ input = { { role = "user", content = { { type = "text", text = "Read" },
                                                          { type = "file", path = files.pdf } } } } })
    assert.are.equal("data:application/pdf;base64," .. B64_PDF, last_body().input[1].content[2].file_data)
    local ok, err = pcall(c.chat, c, { input = { { role = "user", content = { { type = "audio", path = files.wav } } } } })
    assert.is_false(ok)
    assert.matches("openai %(Responses API%): audio parts are not supported %(input%[1%]%.content%[1%]%)", err)
  end)

  it("Anthropic: a document block (base64 PDF; plain text as text)", function()
    local txt = write("notes.txt", "plain notes")
    local resp = assert(client("anthropic"):chat(ask{ { type = "file", path = files.pdf },
                                                       { type = "file", path = txt } }))
    local content = last_body().messages[1].content
    assert.are.same({ type = "document", title = "report.pdf",
      source = { type = "base64", media_type = "application/pdf", data = B64_PDF } }, content[2])
    assert.are.same({ type = "document", title = "notes.txt",
      source = { type = "text", media_type = "text/plain", data = "plain notes" } }, content[3])
    assert.matches("%[file application/pdf " .. #PDF .. " bytes%] %[file text/plain 11 bytes%]", resp.text)
  end)

  it("Gemini: inline_data with the PDF's mime type", function()
    local resp = assert(client("gemini"):chat(ask{ { type = "file", data = B64_PDF, mime_type = "application/pdf" } }))
    assert.are.same({ inline_data = { mime_type = "application/pdf", data = B64_PDF } },
      last_body().contents[1].parts[2])
    assert.matches("%[file application/pdf " .. #PDF .. " bytes%]", resp.text)
  end)

  it("Ollama refuses before sending", function()
    mock.server:reset()
    local c = client("ollama")
    assert.has_error(function() c:chat(ask{ { type = "file", path = files.pdf } }) end,
      "ollama: file parts are not supported (messages[1].content[2])")
    assert.are.equal(0, #mock.server:requests())
  end)
end)

describe("media: an audio clip through every route that takes one", function()
  it("OpenAI Chat: input_audio with its format", function()
    local resp = assert(client("openai"):chat(ask{ { type = "audio", path = files.wav } }))
    assert.are.same({ type = "input_audio", input_audio = { data = B64_WAV, format = "wav" } },
      last_body().messages[1].content[2])
    assert.matches("%[audio audio/wav " .. #WAV .. " bytes%]", resp.text)
    local mp3 = assert(client("openai"):chat(ask{ { type = "audio", data = "SUQz", mime_type = "audio/mpeg" } }))
    assert.are.equal("mp3", last_body().messages[1].content[2].input_audio.format)
    assert.matches("%[audio audio/mpeg 3 bytes%]", mp3.text)
  end)

  it("Gemini: inline_data with the audio's mime type", function()
    local resp = assert(client("gemini"):chat(ask{ { type = "audio", path = files.wav } }))
    assert.are.same({ inline_data = { mime_type = "audio/wav", data = B64_WAV } }, last_body().contents[1].parts[2])
    assert.matches("%[audio audio/wav " .. #WAV .. " bytes%]", resp.text)
  end)

  it("Anthropic, Responses and Ollama refuse before sending", function()
    mock.server:reset()
    local part = { type = "audio", path = files.wav }
    assert.has_error(function() client("anthropic"):chat(ask{ part }) end,
      "anthropic: audio parts are not supported (messages[1].content[2])")
    assert.has_error(function() client("openai", { api = "responses" }):chat(ask{ part }) end,
      "openai (Responses API): audio parts are not supported (messages[1].content[2])")
    assert.has_error(function() client("ollama"):stream(ask{ part }) end,
      "ollama: audio parts are not supported (messages[1].content[2])")
    assert.are.equal(0, #mock.server:requests())
  end)
end)

describe("media: checks before sending", function()
  before_each(function() mock.server:reset() end)

  it("refuses a source or a type a route does not take", function()
    assert.has_error(function() client("openai"):chat(ask{ { type = "file", url = "https://x.test/a.pdf" } }) end,
      "openai: file parts by url are not supported (messages[1].content[2]); pass `data` or `path`")
    assert.has_error(function() client("ollama"):chat(ask{ { type = "image", url = "https://x.test/a.png" } }) end,
      "ollama: image parts by url are not supported (messages[1].content[2]); pass `data` or `path`")
    local ok, err = pcall(client("openai").chat, client("openai"), ask{ { type = "audio", data = "AAAA", mime_type = "audio/ogg" } })
    assert.is_false(ok)
    assert.matches("openai: audio parts of type audio/ogg are not supported", err)
    ok, err = pcall(client("openai").chat, client("openai"), ask{ { type = "file", path = files.odd, mime_type = "text/csv" } })
    assert.is_false(ok)
    assert.matches("openai: file parts of type text/csv are not supported .*; it takes application/pdf", err)
    ok, err = pcall(client("anthropic").chat, client("anthropic"), ask{ { type = "image", data = "AAAA", mime_type = "image/bmp" } })
    assert.is_false(ok)
    assert.matches("anthropic: image parts of type image/bmp are not supported", err)
    assert.are.equal(0, #mock.server:requests())
  end)

  it("raises for a part with no source, two sources, a missing file or an unknown extension", function()
    local c = client("openai")
    assert.has_error(function() c:chat(ask{ { type = "image" } }) end,
      "messages[1].content[2]: an image part needs exactly one of `path`, `data` (base64) or `url`")
    assert.has_error(function() c:chat(ask{ { type = "file", data = "AAAA", path = files.pdf } }) end,
      "messages[1].content[2]: a file part needs exactly one of `path`, `data` (base64) or `url`")
    local ok, err = pcall(c.chat, c, ask{ { type = "image", path = dir .. "/missing.png" } })
    assert.is_false(ok)
    assert.matches("messages%[1%]%.content%[2%]: cannot read .*missing%.png", err)
    ok, err = pcall(c.chat, c, ask{ { type = "file", path = files.odd } })
    assert.is_false(ok)
    assert.matches("cannot tell the mime type of .*notes%.xyz; pass mime_type", err)
    assert.is_truthy(c:chat(ask{ { type = "file", path = files.odd, mime_type = "application/pdf" } }))
  end)

  it("raises for a file over the provider's documented limit, before sending", function()
    -- Anthropic: 5 MB per image, counted on the base64 text (4 MB of bytes is 5.3 MB of it)
    local big = write("big.png", string.rep("x", 4 * 1048576))
    local ok, err = pcall(client("anthropic").chat, client("anthropic"), ask{ { type = "image", path = big } })
    assert.is_false(ok)
    assert.matches("anthropic: messages%[1%]%.content%[2%] %(big%.png%) is 5%.3 MB, over the 5%.0 MB limit for image parts", err)
    -- OpenAI Chat: 32 MB of PDF
    local huge = write("huge.pdf", string.rep("x", 33 * 1048576))
    ok, err = pcall(client("openai").chat, client("openai"), ask{ { type = "file", path = huge } })
    assert.is_false(ok)
    assert.matches("openai: messages%[1%]%.content%[2%] %(huge%.pdf%) is 33%.0 MB, over the 32%.0 MB limit for file parts", err)
    os.remove(huge)
    assert.are.equal(0, #mock.server:requests())
    -- the same image goes to Gemini, whose inline limit is larger
    assert.is_truthy(client("gemini"):chat(ask{ { type = "image", path = big } }))
    os.remove(big)
  end)

  it("reads a file once: the same part sent again is not read again", function()
    local path = write("once.png", PNG)
    local part = { type = "image", path = path }
    local conv = client("anthropic"):conversation{}
    assert.is_truthy(conv:send({ role = "user", content = { { type = "text", text = "look" }, part } }))
    os.remove(path)   -- the history resends the part: it comes from what was read
    assert.is_truthy(conv:send("and now?"))
    local reqs = mock.server:requests()
    assert.are.equal(B64_PNG, reqs[2].json.messages[1].content[2].source.data)
    assert.are.equal(path, part.path)   -- the user's part is left as it was
    assert.is_nil(part.data)
    -- the same table pointed at another file is read again
    part.path = files.png
    assert.is_truthy(client("openai"):chat(ask{ part }))
    assert.are.equal("data:image/png;base64," .. B64_PNG, last_body().messages[1].content[2].image_url.url)
    part.path = write("two.png", "\137PNG-other")
    assert.is_truthy(client("openai"):chat(ask{ part }))
    assert.are.equal("data:image/png;base64," .. media.base64_encode("\137PNG-other"),
      last_body().messages[1].content[2].image_url.url)
  end)

  it("the mock refuses a malformed part as the API would (400 in the provider's shape)", function()
    -- a bare wire-shaped part passes the client through the Responses API's own item form
    local c = client("openai", { api = "responses" })
    local resp, err = c:chat{ input = { { role = "user", content = {
      { type = "input_file", file_data = "data:application/pdf;base64,%%%" } } } } }
    assert.is_nil(resp)
    assert.are.equal("bad_request", err.kind)
    assert.matches("file_data", err.message)
  end)
end)

describe("media: streams", function()
  it("a streamed reply about an image, on every route that takes images", function()
    for _, route in ipairs({ { "openai" }, { "openai", "responses" }, { "anthropic" }, { "gemini" }, { "ollama" } }) do
      local s = assert(client(route[1], { api = route[2] }):stream(ask{ { type = "image", path = files.png } }))
      local resp = assert(s:final())
      assert.matches("%[image [^ ]+ " .. #PNG .. " bytes%]", resp.text)
    end
  end)
end)

