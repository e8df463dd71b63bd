-- lua5.1: yes
-- TLS is verified by default: a self-signed server on 127.0.0.1 (openssl s_server with a
-- certificate made for this run) fails verification, is trusted through ca_file, and is
-- reached with insecure = true.
local llm = require("llm")

local server, port

setup(function()
  server = require("support.net").tls_server({ ["hello.txt"] = "hello over tls" }, function(p)
    return ("openssl s_server -quiet -accept 127.0.0.1:%d -cert cert.pem -key key.pem -WWW"):format(p)
  end)
  port = server.port
end)

teardown(function() if server then server.stop() end end)

local function get(opts)
  local spec = { url = ("https://127.0.0.1:%d/hello.txt"):format(port), timeout = 10 }
  for k, v in pairs(opts or {}) do spec[k] = v end
  return llm.http.request(spec)
end

describe("TLS", function()
  it("refuses a certificate it cannot verify: a connection error that is not retryable", function()
    local res, err = get()
    assert.is_nil(res)
    assert.equal("connection", err.kind)
    assert.is_true(err.tls)
    assert.is_false(err.retryable)
  end)

  it("trusts a server through ca_file", function()
    local res = assert(get{ ca_file = server.dir .. "/cert.pem" })
    assert.equal(200, res.status)
    assert.equal("hello over tls", res.body)
  end)

  it("skips verification only with insecure = true", function()
    local res = assert(get{ insecure = true })
    assert.equal("hello over tls", res.body)
  end)

  it("a client with insecure = true warns once on stderr", function()
    local lib = llm.new()
    local written = {}
    local real = io.stderr
    io.stderr = { write = function(_, ...) for _, s in ipairs({ ... }) do written[#written + 1] = s end end }
    local ok = pcall(function()
      lib.client("openai", { model = "m", api_key = "k", insecure = true })
      lib.client("openai", { model = "m", api_key = "k", insecure = true })
    end)
    io.stderr = real
    assert.is_true(ok)
    local text = table.concat(written)
    local _, n = text:gsub("TLS verification is off", "")
    assert.equal(1, n)
  end)
end)
