-- The fuzz corpus as a permanent regression suite: every kept input of each fuzz target
-- (tests/fuzz/corpus/<target>/, minimized with `make fuzz-merge`) and every crasher found
-- so far (tests/fuzz/regress/<target>/) goes through the target's one-input entry point,
-- tests/fuzz/driver.lua, with the real core. The driver raises when a decoder raises or an
-- oracle fails (see its header). 5.4-only: the driver uses math.type and utf8.
local F = require("support.fixtures")

local root = os.getenv("LLM_ROOT") or "."
package.path = root .. "/tests/fuzz/?.lua;" .. package.path
local driver = require("driver")

local targets = {}
for name in pairs(driver.targets) do targets[#targets + 1] = name end
table.sort(targets)

describe("fuzz corpus", function()
  for _, target in ipairs(targets) do
    it(target .. ": every kept input passes the oracles", function()
      local dir = root .. "/tests/fuzz/corpus"
      local names = F.list(dir, target)
      assert.is_true(#names > 0, "no corpus for " .. target)
      local failed = {}
      for _, name in ipairs(names) do
        local data = assert(F.read(dir .. "/" .. target .. "/" .. name))
        local ok, err = pcall(driver.run, target, data)
        if not ok then failed[#failed + 1] = name .. ": " .. tostring(err) end
      end
      assert.are.same({}, failed)
    end)
  end
end)

describe("fuzz crashers", function()
  for _, target in ipairs(targets) do
    local dir = root .. "/tests/fuzz/regress"
    for _, name in ipairs(F.list(dir, target)) do
      it(target .. ": " .. name, function()
        local data = assert(F.read(dir .. "/" .. target .. "/" .. name))
        driver.run(target, data)
      end)
    end
  end
end)
