-- Build hygiene: tools/deps.sh (make deps / make build / make test) installs only what is
-- missing, never runs sudo except for `make deps`, and off Debian names what is needed.
-- dpkg-query, apt-get, sudo and id are played by small fake commands that log their calls.
local ROOT = os.getenv("LLM_ROOT") or "."
local V = require("support.version")

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd) return V.run(cmd) end

local F = require("support.fixtures")
local function read(path) return F.read(path) or "" end

-- A folder of fake commands. installed: the packages dpkg-query reports as installed.
local function fakes(opts)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. q(dir)))
  local function put(name, body)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write("#!/bin/sh\n", body, "\n")
    f:close()
    assert(os.execute("chmod +x " .. q(dir .. "/" .. name)))
  end
  for _, tool in ipairs({ "grep", "cat" }) do
    assert(os.execute(("ln -s $(command -v %s) %s/%s"):format(tool, q(dir), tool)))
  end
  put("id", "echo " .. (opts.uid or 0))
  put("sudo", 'echo "sudo $*" >> ' .. q(dir .. "/calls") .. '; exec "$@"')
  if opts.debian then
    local installed = table.concat(opts.installed or {}, " ")
    put("dpkg-query", 'for a; do last=$a; done; for p in ' .. installed
      .. '; do [ "$p" = "$last" ] && printf "install ok installed" && exit 0; done; exit 1')
    put("apt-get", 'echo "apt-get $*" >> ' .. q(dir .. "/calls"))
  end
  return dir
end

local function run(dir, args)
  return sh(("PATH=%s /bin/sh %s/tools/deps.sh %s"):format(q(dir), q(ROOT), args))
end

describe("tools/deps.sh", function()
  local dirs = {}
  local function new(opts) local d = fakes(opts); dirs[#dirs + 1] = d; return d end
  teardown(function() for _, d in ipairs(dirs) do os.execute("rm -rf " .. q(d)) end end)

  it("does nothing, silently, when every package is installed", function()
    local d = new{ debian = true, installed = { "cmake", "lua5.4" } }
    local out, code = run(d, "ensure cmake lua5.4")
    assert.equal(0, code)
    assert.equal("", out)
    assert.equal("", read(d .. "/calls"))
  end)

  it("as root, installs only what is missing and says what", function()
    local d = new{ debian = true, installed = { "cmake" } }
    local out, code = run(d, "ensure cmake lua5.4 liblua5.4-dev")
    assert.equal(0, code, out)
    assert.matches("installing missing Debian packages: lua5.4 liblua5.4-dev", out, 1, true)
    local calls = read(d .. "/calls")
    assert.matches("apt-get install -y -qq lua5.4 liblua5.4-dev", calls, 1, true)
    assert.not_matches("sudo", calls)
  end)

  it("as a user, make build / make test name what is missing and never run sudo", function()
    local d = new{ debian = true, uid = 1000, installed = {} }
    local out, code = run(d, "ensure cmake")
    assert.is_not.equal(0, code)
    assert.matches("missing Debian packages: cmake", out, 1, true)
    assert.matches("make deps", out, 1, true)
    assert.equal("", read(d .. "/calls"))
  end)

  it("as a user, make deps installs through sudo", function()
    local d = new{ debian = true, uid = 1000, installed = {} }
    local out, code = run(d, "install cmake")
    assert.equal(0, code, out)
    assert.matches("sudo apt-get install -y -qq cmake", read(d .. "/calls"), 1, true)
  end)

  it("off Debian, prints what is needed instead of calling apt-get", function()
    local d = new{ debian = false }
    local out, code = run(d, "ensure cmake libcurl4-openssl-dev")
    assert.equal(0, code, out)   -- the build goes on; CMake says what it cannot find
    assert.matches("not a Debian system", out, 1, true)
    assert.matches("cmake libcurl4-openssl-dev", out, 1, true)
    local _, icode = run(d, "install cmake")
    assert.is_not.equal(0, icode)   -- make deps cannot do its job there
  end)

  it("make build and make test call no sudo and no apt-get themselves", function()
    for _, target in ipairs({ "build", "test", "demo" }) do
      local out = sh(("make -n -C %s %s"):format(q(ROOT), target))
      assert.not_matches("sudo", out, 1, true)
      assert.not_matches("apt%-get", out)
      assert.matches("tools/deps.sh ensure", out, 1, true)
    end
  end)

  it("make mock listens on a free port by default, or on PORT", function()
    local out = sh(("make -n -C %s mock"):format(q(ROOT)))
    assert.matches("llm%-mock %-%-port 0", out)
    out = sh(("make -n -C %s mock PORT=8123"):format(q(ROOT)))
    assert.matches("llm%-mock %-%-port 8123", out)
  end)
end)
