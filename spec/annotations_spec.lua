-- Every public function carries its documentation: a `---` summary for the reference (LDoc)
-- and LuaLS annotations for editors: `---@param` for each parameter, `---@return` when it
-- returns values. The functions are found at run time, from `require("llm")` and the
-- metatables of the objects it hands out, then located in the sources with debug.getinfo.
local llm = require("llm")
local mockmod = require("llm.mock")

local ROOT = os.getenv("LLM_ROOT") or "."


---------------------------------------------------------------------------------------
-- Sources

local files = {}
local function lines_of(source)
  local path = source:gsub("^@", "")
  if files[path] then return files[path] end
  local f = assert(io.open(path, "rb"), "cannot read " .. path)
  local text = f:read("*a")
  f:close()
  local lines, starts = {}, {}
  local pos = 1
  while pos <= #text do
    local e = text:find("\n", pos, true) or (#text + 1)
    lines[#lines + 1] = text:sub(pos, e - 1)
    starts[#starts + 1] = pos
    pos = e + 1
  end
  files[path] = { text = text, lines = lines, starts = starts, path = path }
  return files[path]
end

-- A small Lua tokenizer: names, strings, numbers and punctuation; comments are skipped.
local function tokens(text, pos)
  local out = {}
  local n = #text
  while pos <= n do
    local c = text:sub(pos, pos)
    if c:match("%s") then
      pos = pos + 1
    elseif text:sub(pos, pos + 1) == "--" then
      local level = text:match("^%[(=*)%[", pos + 2)
      if level then
        local _, e = text:find("]" .. level .. "]", pos, true)
        pos = (e or n) + 1
      else
        pos = (text:find("\n", pos, true) or n) + 1
      end
    elseif c == "[" and text:match("^%[=*%[", pos) then
      local level = text:match("^%[(=*)%[", pos)
      local _, e = text:find("]" .. level .. "]", pos, true)
      out[#out + 1] = "<string>"
      pos = (e or n) + 1
    elseif c == '"' or c == "'" then
      local i = pos + 1
      while i <= n do
        local d = text:sub(i, i)
        if d == "\\" then i = i + 2
        elseif d == c then break
        else i = i + 1 end
      end
      out[#out + 1] = "<string>"
      pos = i + 1
    elseif c:match("[%a_]") then
      local word = text:match("^[%w_]+", pos)
      out[#out + 1] = word
      pos = pos + #word
    elseif c:match("%d") then
      local num = text:match("^[%w%.]+", pos)
      out[#out + 1] = "<number>"
      pos = pos + #num
    else
      out[#out + 1] = c
      pos = pos + 1
    end
  end
  return out
end

local NO_VALUE = { ["end"] = true, ["else"] = true, ["elseif"] = true, ["until"] = true, [";"] = true }

-- The parameters of the function whose header starts on line `line`, whether it is a method,
-- and whether its own body (not a nested function) returns a value.
local function shape(src, line)
  local toks = tokens(src.text, src.starts[line])
  local i = 1
  while toks[i] and toks[i] ~= "function" do i = i + 1 end
  assert(toks[i], src.path .. ":" .. line .. ": no function header")
  local method = false
  i = i + 1
  while toks[i] ~= "(" do
    if toks[i] == ":" then method = true end
    i = i + 1
  end
  local params = {}
  i = i + 1
  while toks[i] ~= ")" do
    if toks[i] == "." then            -- "..." arrives as three "." tokens
      params[#params + 1] = "..."
      i = i + 3
    else
      if toks[i] ~= "," then params[#params + 1] = toks[i] end
      i = i + 1
    end
  end
  -- Walk the body: blocks open with function / if / do / repeat and close with end / until.
  local stack = { "function" }
  local returns = false
  i = i + 1
  while #stack > 0 and toks[i] do
    local t = toks[i]
    if t == "function" or t == "if" or t == "do" or t == "repeat" then
      stack[#stack + 1] = t
    elseif t == "end" or t == "until" then
      stack[#stack] = nil
    elseif t == "return" then
      local depth = 0
      for _, b in ipairs(stack) do if b == "function" then depth = depth + 1 end end
      if depth == 1 and toks[i + 1] and not NO_VALUE[toks[i + 1]] then returns = true end
    end
    i = i + 1
  end
  return params, method, returns
end

-- The comment lines right above line `line`.
local function comment_above(src, line)
  local block = {}
  local l = line - 1
  while l >= 1 and src.lines[l]:match("^%s*%-%-") do
    table.insert(block, 1, src.lines[l])
    l = l - 1
  end
  return block
end

-- What is missing from the documentation of function `fn` (a list of messages).
local function problems(name, fn)
  local info = debug.getinfo(fn, "S")
  if info.what ~= "Lua" or info.source:sub(1, 1) ~= "@" then return {} end
  local src = lines_of(info.source)
  local rel = src.path:gsub("^" .. ROOT:gsub("%p", "%%%0") .. "/", "")
  local where = rel .. ":" .. info.linedefined
  local out = {}
  local function missing(msg) out[#out + 1] = where .. ": " .. name .. ": " .. msg end
  local block = comment_above(src, info.linedefined)
  if not (block[1] and block[1]:match("^%s*%-%-%-%s*[^@%s%-]")) then
    missing("no `---` summary line above the function")
  end
  local params, _, returns = shape(src, info.linedefined)
  local documented, has_return = {}, false
  for _, l in ipairs(block) do
    local p = l:match("^%s*%-%-%-%s*@param%s+([%w_%.]+)%??%s+%S")
    if p then documented[p] = true end
    if l:match("^%s*%-%-%-%s*@return%s+%S") then has_return = true end
  end
  local real = {}
  for _, p in ipairs(params) do
    real[p] = true
    if p ~= "self" and not documented[p] then missing("no `---@param " .. p .. " <type>`") end
  end
  for p in pairs(documented) do
    if not real[p] then missing("`---@param " .. p .. "` names no parameter") end
  end
  if returns and not has_return then missing("returns values but has no `---@return <type>`") end
  return out
end

-- The functions of a table, by name (metamethods and private `_names` excluded).
local function functions_of(prefix, t, sep)
  local out = {}
  for k, v in pairs(t) do
    if type(k) == "string" and type(v) == "function" and not k:match("^_") then
      out[#out + 1] = { prefix .. sep .. k, v }
    end
  end
  table.sort(out, function(a, b) return a[1] < b[1] end)
  return out
end

local function methods_of(name, obj)
  local mt = getmetatable(obj)
  local idx = type(mt.__index) == "table" and mt.__index or mt
  return functions_of(name, idx, ":")
end

---------------------------------------------------------------------------------------
-- The public surface

local mock
setup(function() mock = assert(mockmod.start()) end)
teardown(function() if mock then mock:stop() end end)

local function surface()
  local all = {}
  local function add(list) for _, e in ipairs(list) do all[#all + 1] = e end end
  add(functions_of("llm", llm, "."))
  add(functions_of("llm.retry", llm.retry, "."))
  add(functions_of("llm.json", llm.json, "."))
  add(functions_of("llm.errors", llm.errors, "."))
  add(functions_of("llm.schema", llm.schema, "."))
  add(functions_of("llm.mock", mockmod, "."))
  add(methods_of("Mock", mock))

  local client = mock:client("openai", { max_retries = 0 })
  add(methods_of("Client", client))
  local stream = assert(client:stream("hello"))
  add(methods_of("Stream", stream))
  stream:close()
  add(methods_of("Conversation", client:conversation{}))
  add(methods_of("BatchJob", assert(client:batch_job("batch_annotations"))))
  local task = llm.spawn(function() end)
  add(methods_of("Task", task))
  llm.await(task)
  local policy = llm.retry.policy{}
  add(methods_of("Policy", policy))
  add(methods_of("Limiter", llm.limiter{ rpm = 60 }))
  add(methods_of("Fallback", llm.fallback{ client }))
  for attempt in policy:attempts() do
    add(methods_of("Attempt", attempt))
    attempt:succeed(true)
  end
  return all
end

describe("annotations", function()
  it("finds the public surface at run time", function()
    local names = {}
    for _, e in ipairs(surface()) do names[e[1]] = true end
    for _, n in ipairs{ "llm.client", "llm.run", "llm.retry.policy", "llm.json.encode", "Client:chat",
                        "Stream:events", "Conversation:send", "Task:cancel", "Policy:call", "llm.mock.start",
                        "Mock:push", "Client:batch", "BatchJob:wait" } do
      assert.is_true(names[n] == true, n .. " not found")
    end
  end)

  it("every public function has a summary, ---@param for each parameter and ---@return", function()
    local report = {}
    local seen = {}
    for _, e in ipairs(surface()) do
      if not seen[e[2]] then
        seen[e[2]] = true
        for _, msg in ipairs(problems(e[1], e[2])) do report[#report + 1] = msg end
      end
    end
    table.sort(report)
    assert.are.same({}, report, "\n" .. table.concat(report, "\n"))
  end)

  it("the checker sees a missing annotation", function()
    local src = "--- Adds.\n---@param a number\nlocal function f(a, b) return a + b end\nreturn f\n"
    local path = os.tmpname()
    local fh = assert(io.open(path, "wb"))
    fh:write(src)
    fh:close()
    local f = assert(loadfile(path))()
    local report = problems("f", f)
    os.remove(path)
    assert.are.same({ path .. ":3: f: no `---@param b <type>`",
                      path .. ":3: f: returns values but has no `---@return <type>`" }, report)
  end)
end)
