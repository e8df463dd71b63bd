-- llm-lua, the command line: streamed replies, --json, attached files, the mock, and an exit
-- code per error kind. Runs bin/llm-lua under the build's Lua against a mock started here (through
-- LLM_MOCK_URL, so the replies can be pushed) or one it starts itself.
local json = require("llm.json")
local mock = require("llm.mock")
local V = require("support.version")

local ROOT = os.getenv("LLM_ROOT") or "."

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function tmpfile(content)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path
end

-- Runs llm-lua with args; returns stdout, stderr, exit code. env: extra "K=V" words.
-- LD_PRELOAD stays: an ASan build of the module loads only with it (llm.mock keeps it
-- away from the mock server).
local function cli(args, env, stdin)
  local out, err = os.tmpname(), os.tmpname()
  local cmd = ("cd / && env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u GEMINI_API_KEY %s %s %s %s >%s 2>%s")
    :format(env or "", V.lua, q(ROOT .. "/bin/llm-lua"), args, q(out), q(err))
  if stdin then cmd = "printf %s " .. q(stdin) .. " | (" .. cmd .. ")" end
  local ok, _, code = V.execute(cmd)
  local function slurp(p)
    local f = assert(io.open(p, "rb"))
    local s = f:read("*a")
    f:close()
    os.remove(p)
    return s
  end
  return slurp(out), slurp(err), ok == true and 0 or code
end

describe("llm-lua", function()
  local m, env
  setup(function()
    m = assert(mock.start())
    env = "LLM_MOCK_URL=" .. m.url
  end)
  teardown(function() m:stop() end)
  before_each(function() m:reset() end)

  it("--mock chat streams a reply from a mock it starts itself", function()
    local out, err, code = cli("--mock chat 'hi'", "-u LLM_MOCK_URL")
    assert.equal(0, code, err)
    assert.equal("echo: hi\n", out)
  end)

  it("streams: the request asks for a stream and the deltas are printed as they come", function()
    m:push{ text = { "Hel", "lo", ", world" } }
    local out, err, code = cli("--mock chat -p anthropic 'hi'", env)
    assert.equal(0, code, err)
    assert.equal("Hello, world\n", out)
    local req = m:requests()[1]
    assert.equal("/v1/messages", req.path)
    assert.is_true(req.json.stream)
  end)

  it("--json prints the normalized response as JSON that decodes", function()
    m:push{ text = "Forty-two.", usage = { input_tokens = 5, output_tokens = 3 } }
    local out, err, code = cli("--mock --json chat -p gemini 'the answer?'", env)
    assert.equal(0, code, err)
    local resp = assert(json.decode(out))
    assert.equal("Forty-two.", resp.text)
    assert.equal("stop", resp.finish_reason)
    assert.equal(5, resp.usage.input_tokens)
    assert.same({}, resp.tool_calls)
    assert.is_true(json.is_array(resp.tool_calls))
  end)

  it("takes the question from stdin, with a system prompt and a model", function()
    local out, err, code = cli("--mock chat -p openai -m my-model -s 'Be brief.'", env, "from stdin")
    assert.equal(0, code, err)
    assert.equal("echo: from stdin\n", out)
    local body = m:requests()[1].json
    assert.equal("my-model", body.model)
    assert.equal("system", body.messages[1].role)
    assert.equal("Be brief.", body.messages[1].content)
  end)

  it("-f attaches a text file as a text part and an image as an image part", function()
    local txt = tmpfile("alpha\nbeta\n")
    local png = tmpfile("\137PNG\r\n\26\n\0\0\0\rIHDR")
    local _, err, code = cli(("--mock chat -p anthropic -f %s -f %s 'describe'"):format(q(txt), q(png)), env)
    os.remove(txt)
    os.remove(png)
    assert.equal(0, code, err)
    local content = m:requests()[1].json.messages[1].content
    assert.equal("text", content[1].type)
    assert.matches("alpha\nbeta\n", content[1].text, 1, true)
    assert.equal("image", content[2].type)
    assert.equal("image/png", content[2].source.media_type)
    assert.equal("iVBORw0KGgoAAAANSUhEUg==", content[2].source.data)
    assert.equal("describe", content[3].text)
  end)

  it("refuses a file that is neither text nor known media, with the usage code", function()
    local bin = tmpfile("\0\1\2\3binary")
    local _, err, code = cli(("--mock chat -f %s 'x'"):format(q(bin)), env)
    os.remove(bin)
    assert.equal(2, code)
    assert.matches("is neither text, an image (png, jpeg, gif, webp), a PDF nor audio (wav, mp3)", err, 1, true)
    assert.equal(0, #m:requests())
  end)

  it("-f attaches a PDF as a document and audio where the provider takes it", function()
    local pdf = tmpfile("%PDF-1.4\n%%EOF\n")
    local wav = tmpfile("RIFF\36\0\0\0WAVEfmt ")
    local _, err, code = cli(("--mock chat -p anthropic -f %s 'summarize'"):format(q(pdf)), env)
    assert.equal(0, code, err)
    local block = m:requests()[1].json.messages[1].content[1]
    assert.equal("document", block.type)
    assert.equal("application/pdf", block.source.media_type)
    assert.equal("JVBERi0xLjQKJSVFT0YK", block.source.data)
    _, err, code = cli(("--mock chat -p gemini -f %s 'transcribe'"):format(q(wav)), env)
    assert.equal(0, code, err)
    assert.equal("audio/wav", m:requests()[2].json.contents[1].parts[1].inline_data.mime_type)
    -- Anthropic takes no audio: refused before sending, with the usage code
    _, err, code = cli(("--mock chat -p anthropic -f %s 'transcribe'"):format(q(wav)), env)
    os.remove(pdf)
    os.remove(wav)
    assert.equal(2, code)
    assert.matches("anthropic: audio parts are not supported", err, 1, true)
    assert.equal(2, #m:requests())
  end)

  it("exits with the auth code on a 401, and says why on stderr", function()
    m:push{ status = 401, error = { type = "authentication_error", message = "invalid x-api-key" } }
    local out, err, code = cli("--mock chat -p anthropic 'hi'", env)
    assert.equal(3, code)
    assert.equal("", out)
    assert.matches("invalid x-api-key", err, 1, true)
  end)

  it("exits with the auth code when no key is set", function()
    local _, err, code = cli("chat -p anthropic 'hi'")
    assert.equal(3, code)
    assert.matches("ANTHROPIC_API_KEY", err, 1, true)
  end)

  it("has one exit code per error kind", function()
    local cases = {
      { { status = 429, error = { message = "slow" } }, 4 },
      { { status = 400, error = { message = "bad" } }, 5 },
      { { status = 500, error = { message = "down" } }, 6 },
      { { text = { "a", "b", "c", "d" }, cut_after = 2 }, 8 },
    }
    for _, c in ipairs(cases) do
      m:push(c[1])
      local _, err, code = cli("--mock chat -p openai --max-tokens 50 --max-retries 0 'hi'", env)
      assert.equal(c[2], code, err)
    end
  end)

  it("exits with the usage code on a bad option or command", function()
    local _, err, code = cli("--nope chat hi")
    assert.equal(2, code)
    assert.matches("unknown option --nope", err, 1, true)
    _, _, code = cli("frobnicate")
    assert.equal(2, code)
    local out
    out, _, code = cli("--help")
    assert.equal(0, code)
    assert.matches("exit codes:", out, 1, true)
  end)
end)
