-- lua5.1: yes
-- core.framer: the SSE / NDJSON framers of the C core (csrc/framer.c, csrc/sse.c).
local core = require("llm.core")

-- Feeds `s` cut at the given offsets (sorted), then finishes; returns every event.
local function parse(mode, s, cuts, max)
  local f = core.framer(mode, max)
  local all, at = {}, 0
  local pieces = {}
  for _, c in ipairs(cuts or {}) do
    pieces[#pieces + 1] = s:sub(at + 1, c)
    at = c
  end
  pieces[#pieces + 1] = s:sub(at + 1)
  for _, p in ipairs(pieces) do
    local evs, err = f:feed(p)
    assert(evs, err and err.message)
    for _, e in ipairs(evs) do all[#all + 1] = e end
  end
  for _, e in ipairs(assert(f:finish())) do all[#all + 1] = e end
  local counts = { comments = f.comments, events = f.events, partial = f.partial }
  f:close()
  return all, counts
end

local F = require("support.fixtures")   -- fixture discovery and file reading, shared by the specs
local read = F.read

describe("core.framer", function()
  local STREAM = "\239\187\191: hello\r\nevent: update\r\nid: 7\r\ndata: one\r\ndata: two\r\n\r\n"
    .. "data: {\"t\":\"\194\176\"}\n\nretry: 250\rdata:  x\r\r"

  it("frames SSE events with name, id and data", function()
    local f = core.framer("sse")
    local evs = assert(f:feed(STREAM))
    assert.same({
      { name = "update", id = "7", data = "one\ntwo" },
      { id = "7", data = "{\"t\":\"\194\176\"}" },
      { id = "7", data = " x" },
    }, evs)
    assert.same({}, f:finish())
    assert.equal(1, f.comments)
    assert.equal(3, f.events)
    assert.equal(0, f.partial)
    assert.equal(250, f.retry_ms)
    f:close()
  end)

  it("gives the same events for every split as for the whole stream", function()
    local whole, wc = parse("sse", STREAM)
    for i = 0, #STREAM do
      local got, c = parse("sse", STREAM, { i })
      assert.same(whole, got, "split at " .. i)
      assert.same(wc, c)
    end
    local bytes = {}
    for i = 1, #STREAM - 1 do bytes[i] = i end
    assert.same(whole, (parse("sse", STREAM, bytes)))
  end)

  it("drops an unterminated event at finish and counts its bytes", function()
    local f = core.framer("sse")
    assert.same({ { data = "a" } }, f:feed("data: a\n\ndata: lost\n"))
    assert.same({}, f:finish())
    assert.equal(11, f.partial)
    assert.equal(1, f.events)
  end)

  it("returns nil, err once an event exceeds the cap, and stays failed", function()
    local f = core.framer("sse", 64)
    local evs, err, before = f:feed("data: ok\n\ndata: " .. ("x"):rep(100) .. "\n\n")
    assert.is_nil(evs)
    assert.equal("protocol", err.kind)
    assert.equal("event larger than 64 bytes", err.message)
    assert.same({ { data = "ok" } }, before)       -- dispatched before the failure
    local again, err2 = f:feed("data: y\n\n")
    assert.is_nil(again)
    assert.equal("event larger than 64 bytes", err2.message)
    assert.is_nil((f:finish()))
  end)

  it("applies the cap to a line split over many feeds", function()
    local f = core.framer("ndjson", 1000)
    local evs, err
    for _ = 1, 100 do
      evs, err = f:feed(("y"):rep(100))
      if not evs then break end
    end
    assert.is_nil(evs)
    assert.equal("event larger than 1000 bytes", err.message)
  end)

  it("frames NDJSON lines", function()
    local f = core.framer("ndjson")
    assert.same({ { data = '{"a":1}' }, { data = '{"b":2}' } },
      f:feed('{"a":1}\r\n\n  \n{"b":2}\n{"done":'))
    assert.same({}, f:feed("true}"))
    assert.same({ { data = '{"done":true}' } }, f:finish())
    assert.equal(3, f.events)
    assert.equal(0, f.comments)
    local s = '{"x":"\240\159\140\141"}\r\n\t\n{"y":2}'
    local whole = parse("ndjson", s)
    assert.equal(2, #whole)
    for i = 0, #s do assert.same(whole, (parse("ndjson", s, { i }))) end
  end)

  it("counts comment lines", function()
    local f = core.framer("sse")
    assert.same({}, f:feed(": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\n:\n"))
    assert.equal(3, f.comments)
    assert.equal(0, f.events)
  end)

  it("raises on misuse and closes idempotently", function()
    assert.has_error(function() core.framer("xml") end)
    assert.has_error(function() core.framer() end)
    assert.has_error(function() core.framer("sse", -1) end)
    local f = core.framer("ndjson", 10)
    assert.matches("^llm.Framer %(ndjson%)", tostring(f))
    assert.has_error(function() f:feed({}) end)
    f:close()
    f:close()
    assert.equal("llm.Framer (closed)", tostring(f))
    assert.has_error(function() f:feed("x") end, "attempt to use a closed framer")
    assert.equal(0, f.events)
    assert.equal("llm.Framer", getmetatable(f).__name)
  end)

  it("survives collection with buffered data", function()
    for _ = 1, 200 do
      local f = core.framer("sse")
      f:feed("id: 1\ndata: " .. ("z"):rep(1000))
    end
    collectgarbage()
    collectgarbage()
  end)

  -- Registered only when the shared fixtures are there; the framing rules themselves are
  -- covered above and by tests/transcripts in every clone.
  local fdir = F.dir()
  if not fdir then print("fixtures absent: shared .sse cases not run") end
  if fdir then it("matches stream_facts of every shared .sse fixture, whole and split", function()
    local dir = fdir
    local cjson = require("cjson")
    local list = io.popen("find '" .. dir .. "' -name '*.sse' 2>/dev/null")
    local files = {}
    for line in list:lines() do files[#files + 1] = line end
    list:close()
    table.sort(files)
    assert.is_true(#files > 0)
    print(#files .. " fixtures at " .. dir)
    for _, path in ipairs(files) do
      local body = assert(read(path))
      local expect = read((path:gsub("%.sse$", ".expect.json")))
      local facts = cjson.decode(expect).stream_facts
      local whole, counts = parse("sse", body)
      assert.equal(facts.events, counts.events, path)
      assert.equal(facts.comment_lines, counts.comments, path)
      assert.equal(0, counts.partial, path)
      local step = math.max(1, math.floor(#body / 50))           -- C tests cover every offset
      for i = 0, #body, step do
        assert.same(whole, (parse("sse", body, { i })), path .. " split at " .. i)
      end
    end
  end) end
end)
