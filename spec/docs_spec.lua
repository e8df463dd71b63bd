-- The documentation: every link in the Markdown pages resolves, and the LDoc reference
-- (`make docs`) builds without a single warning.
local ROOT = os.getenv("LLM_ROOT") or "."
local V = require("support.version")

local F = require("support.fixtures")
local function read(path) return F.read(ROOT .. "/" .. path) end

local function sh(cmd)
  local out, code = V.run(cmd)
  return code == 0, out
end

local function pages()
  local list = { "README.md", "CHANGELOG.md", "bench/README.md", "tools/mock/README.md" }
  local p = assert(io.popen('ls "' .. ROOT .. '/docs"'))
  for name in p:lines() do
    if name:match("%.md$") then list[#list + 1] = "docs/" .. name end
  end
  p:close()
  return list
end

-- GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes.
local function slug(heading)
  return (heading:lower():gsub("[^%w%- _]", ""):gsub(" ", "-"))
end

local function anchors(text)
  local out = {}
  local fenced = false
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if line:match("^```") then fenced = not fenced end
    local h = not fenced and line:match("^#+%s+(.-)%s*$")
    if h then out[slug(h)] = true end
  end
  return out
end

local function dirname(path) return path:match("^(.*)/") or "." end

local function normalize(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then parts[#parts] = nil
    elseif seg ~= "." then parts[#parts + 1] = seg end
  end
  return table.concat(parts, "/")
end

describe("documentation", function()
  it("every relative link in the Markdown pages points to a file (and heading) that exists", function()
    local broken = {}
    local checked = 0
    for _, page in ipairs(pages()) do
      local text = read(page)
      if text then
        for target in text:gmatch("%]%(([^)%s]+)%)") do
          if not target:match("^%a[%w+.-]*:") then          -- http:, https:, mailto: are not checked
            checked = checked + 1
            local file, anchor = target:match("^([^#]*)#?(.*)$")
            local path = file == "" and page or normalize(dirname(page) .. "/" .. file)
            local body = read(path)
            if not body then
              broken[#broken + 1] = page .. ": " .. target .. " (no file " .. path .. ")"
            elseif anchor ~= "" and path:match("%.md$") and not anchors(body)[anchor] then
              broken[#broken + 1] = page .. ": " .. target .. " (no heading #" .. anchor .. ")"
            end
          end
        end
      end
    end
    assert.are.same({}, broken)
    assert.is_true(checked > 0)
  end)

  it("no page refers to design notes that are not in the repository", function()
    local found = {}
    for _, page in ipairs(pages()) do
      local text = read(page) or ""
      for _, name in ipairs{ "API.md", "DESIGN.md", "STYLE.md" } do
        if text:find(name, 1, true) then found[#found + 1] = page .. " mentions " .. name end
      end
    end
    assert.are.same({}, found)
  end)

  it("docs/reference.md describes the request fields, messages, parts, responses, events and errors", function()
    local text = assert(read("docs/reference.md"))
    local h = anchors(text)
    for _, section in ipairs{ "requests", "messages", "parts", "responses", "stream-events", "errors" } do
      assert.is_true(h[section] == true, "no section #" .. section)
    end
    -- Every field the request check accepts has a row (the check is the contract's list).
    local validate = require("llm.validate")
    local missing = {}
    for _, set in ipairs{ validate.REQUEST_FIELDS, validate.OPTIONAL_FIELDS } do
      for field in pairs(set) do
        if not (text:find("\n| `" .. field .. "`", 1, true) or text:find(", `" .. field .. "` |", 1, true)
                or text:find("`" .. field .. "` (", 1, true)) then
          missing[#missing + 1] = field
        end
      end
    end
    table.sort(missing)
    assert.are.same({}, missing)
  end)

  it("docs/client.md has a row for every client option", function()
    local text = assert(read("docs/client.md"))
    local missing = {}
    for opt in pairs(require("llm.validate").CLIENT_OPTIONS) do
      if not (text:find("\n| `" .. opt .. "`", 1, true) or text:find(", `" .. opt .. "` |", 1, true)) then
        missing[#missing + 1] = opt
      end
    end
    table.sort(missing)
    assert.are.same({}, missing)
  end)

  it("every page in docs/ is a topic of the LDoc reference", function()
    local config = assert(read("config.ld"))
    local missing = {}
    for _, page in ipairs(pages()) do
      if page:match("^docs/") and not config:find('"' .. page .. '"', 1, true) then missing[#missing + 1] = page end
    end
    assert.are.same({}, missing)
  end)

  it("make docs builds the LDoc reference with no warning", function()
    local dir = os.tmpname()
    os.remove(dir)
    local ok, out = sh(string.format('cd "%s" && ldoc --fatalwarnings -d "%s" .', ROOT, dir))
    local index = io.open(dir .. "/index.html", "rb")
    local _, pages_out = sh('ls "' .. dir .. '/modules"')
    -- Every relative link of the HTML reaches a page, and a heading when it names one.
    local _, html_files = sh('cd "' .. dir .. '" && find . -name "*.html"')
    local function html(path)
      local f = io.open(dir .. "/" .. path, "rb")
      if not f then return nil end
      local t = f:read("*a")
      f:close()
      return t
    end
    local dead, links = {}, 0
    for file in html_files:gmatch("%./([^\n]+)") do
      for href in html(file):gmatch('href="([^"]*)"') do
        if not href:match("^%a[%w+.-]*:") then
          links = links + 1
          local target, anchor = href:match("^([^#]*)#?(.*)$")
          local path = target == "" and file or normalize(dirname(file) .. "/" .. target)
          local body = html(path)
          if not body then
            dead[#dead + 1] = file .. ": " .. href
          elseif anchor ~= "" and not body:find('name%s*=%s*"' .. anchor:gsub("%p", "%%%0") .. '"') then
            dead[#dead + 1] = file .. ": " .. href .. " (no anchor)"
          end
        end
      end
    end
    sh('rm -rf "' .. dir .. '"')
    table.sort(dead)
    assert.are.same({}, dead)
    assert.is_true(links > 100)
    -- Each module page is named as a user requires it (an `@module llm.x` line in the file).
    for page in pages_out:gmatch("[^\n]+") do
      assert.truthy(page:match("^llm[%w_.]*%.html$"), "module page " .. page .. " is not named llm.*")
    end
    assert.is_true(ok, out)
    local noise = out:gsub("reading configuration from config%.ld\n", ""):gsub("output written to [^\n]*\n", "")
    assert.equal("", noise)
    assert.is_not_nil(index)
    index:close()
  end)
end)
