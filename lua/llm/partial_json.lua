--- llm.partial_json: a best-effort, incremental and tolerant JSON parser for structured output
-- as it streams (API §12 `partial` events). Text is fed in deltas; each byte is read once.
-- `p:value()` is the object so far: containers that have begun, keys whose value has begun,
-- strings as far as they came; numbers, `true`, `false` and `null` appear once complete. The
-- root is the first `{` or `[` (a code fence or prose before it is skipped); anything that
-- is not JSON after that stops the parse, and the value stays what it was.
-- @module llm.partial_json
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local json = require("llm.json")
local compat = require("llm.compat")

local M = {}

local type, setmetatable, getmetatable = type, setmetatable, getmetatable
local sub, byte, find, concat = string.sub, string.byte, string.find, table.concat
local null = json.null

local Parser = { __name = "llm.PartialJSON" }
Parser.__index = Parser

--- A new parser with nothing fed.
---@return table parser
function M.new()
  -- stack[i] = { t = container, arr = bool, key = pending key (objects) }
  -- mode: "root" | "value" | "key" | "colon" | "next" | "string" | "token" | "done" | "error"
  return setmetatable({ stack = {}, mode = "root", buf = nil, str_for = nil, esc = nil,
                        token = nil, root = nil, frozen = setmetatable({}, { __mode = "k" }) }, Parser)
end

local ESC = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
local WS = { [32] = true, [9] = true, [10] = true, [13] = true }
local TOKEN_END = "[%s,%]}]"
local LITERAL = { ["true"] = true, ["false"] = false, ["null"] = null }

-- Puts v in the current container (or as the root); returns the container and the slot.
local function place(self, v)
  local top = self.stack[#self.stack]
  if not top then self.root = v; return nil, nil end
  local slot = top.arr and (#top.t + 1) or top.key
  top.t[slot] = v
  return top.t, slot
end

-- Sets the slot a value string began in.
local function set_string(self, text)
  if self.str_t then self.str_t[self.str_slot] = text else self.root = text end
end

-- After a value ends: the container's next separator, or done at the root.
local function after_value(self)
  self.mode = #self.stack == 0 and "done" or "next"
end

local function open(self, arr)
  local t = arr and json.array() or json.object()
  place(self, t)
  self.stack[#self.stack + 1] = { t = t, arr = arr }
  self.mode = arr and "value" or "key"
  self.first = true
  self.changed = true
end

-- The copy handed out for a container: a finished one is copied once, when it closes (its
-- finished children are already), and shared by every later value(); an open one is copied
-- again each time, over its children's copies.
local function snapshot(frozen, v)
  if type(v) ~= "table" or v == null then return v end
  local f = frozen[v]
  if f then return f end
  local out = {}
  for k, x in each(v) do out[k] = snapshot(frozen, x) end
  return setmetatable(out, getmetatable(v))
end

local function close(self)
  local t = self.stack[#self.stack].t
  self.frozen[t] = snapshot(self.frozen, t)
  self.stack[#self.stack] = nil
  after_value(self)
end

-- The text of the string being read, as far as it came.
local function string_so_far(self)
  return concat(self.buf)
end

-- \uXXXX (with a following low surrogate when it is a high one) as UTF-8; nil when more
-- text is needed, false when it is not a valid escape.
local function unicode(s, i)
  local hex = sub(s, i, i + 3)
  if #hex < 4 then return nil end
  local cp = tonumber(hex, 16)
  if not cp or not hex:find("^%x%x%x%x$") then return false end
  if cp >= 0xD800 and cp <= 0xDBFF then
    local lo = sub(s, i + 4, i + 9)
    if #lo < 6 then return nil end
    local l = lo:match("^\\u(%x%x%x%x)$")
    local lcp = l and tonumber(l, 16)
    if lcp and lcp >= 0xDC00 and lcp <= 0xDFFF then
      return compat.utf8.char(0x10000 + (cp - 0xD800) * 0x400 + (lcp - 0xDC00)), 10
    end
    return "\239\191\189", 4
  elseif cp >= 0xDC00 and cp <= 0xDFFF then
    return "\239\191\189", 4
  end
  return compat.utf8.char(cp), 4
end

--- Feed the next delta of text. Returns true when the best-effort value changed.
---@param chunk string
---@return boolean changed
function Parser:feed(chunk)
  if self.mode == "done" or self.mode == "error" or type(chunk) ~= "string" or chunk == "" then
    return false
  end
  if self.pending then chunk = self.pending .. chunk; self.pending = nil end
  self.changed = false
  local s, i, n = chunk, 1, #chunk
  local grew = false   -- a value string grew: its slot is updated once, at the end
  while i <= n do
    local mode = self.mode
    local c = byte(s, i)
    if mode == "string" then
      local j = find(s, '["\\]', i)
      if not j then
        self.buf[#self.buf + 1] = sub(s, i)
        grew = grew or self.str_for == "value"
        i = n + 1
      else
        if j > i then self.buf[#self.buf + 1] = sub(s, i, j - 1); grew = grew or self.str_for == "value" end
        if byte(s, j) == 34 then   -- the closing quote
          local text = string_so_far(self)
          self.buf = nil
          if self.str_for == "key" then
            self.stack[#self.stack].key = text
            self.mode = "colon"
          else
            set_string(self, text)   -- its slot already held the prefix: the final text
            self.changed = true
            grew = false
            after_value(self)
          end
          i = j + 1
        else   -- an escape
          local e = sub(s, j + 1, j + 1)
          if e == "" then self.pending = "\\"; i = n + 1
          elseif ESC[e] then
            self.buf[#self.buf + 1] = ESC[e]
            grew = grew or self.str_for == "value"
            i = j + 2
          elseif e == "u" then
            local ch, len = unicode(s, j + 2)
            if ch == nil then self.pending = sub(s, j); i = n + 1
            elseif ch == false then self.mode = "error"; break
            else
              self.buf[#self.buf + 1] = ch
              grew = grew or self.str_for == "value"
              i = j + 2 + len
            end
          else
            self.mode = "error"; break
          end
        end
      end
    elseif mode == "token" then
      local j = find(s, TOKEN_END, i)
      self.token[#self.token + 1] = sub(s, i, (j or n + 1) - 1)
      if not j then i = n + 1
      else
        local t = concat(self.token)
        self.token = nil
        local v = LITERAL[t]
        if v == nil then v = tonumber(t) end
        if v == nil or (type(v) == "number" and not t:find("^%-?%d")) then self.mode = "error"; break end
        if type(v) == "number" and not t:find("[.eE]") then v = compat.tointeger(v) or v end   -- as llm.json
        place(self, v)
        self.changed = true
        after_value(self)
        i = j
      end
    elseif WS[c] then
      i = i + 1
    elseif mode == "root" then
      if c == 123 then open(self, false) elseif c == 91 then open(self, true) end
      i = i + 1
    elseif mode == "value" then
      if c == 93 and self.first and self.stack[#self.stack].arr then close(self); i = i + 1
      elseif c == 123 then open(self, false); i = i + 1
      elseif c == 91 then open(self, true); i = i + 1
      elseif c == 34 then
        self.str_t, self.str_slot = place(self, "")
        self.changed = true
        self.mode, self.buf, self.str_for = "string", {}, "value"
        i = i + 1
      elseif find(sub(s, i, i), "[%-%dtfn]") then
        self.mode, self.token = "token", {}
      else
        self.mode = "error"; break
      end
    elseif mode == "key" then
      if c == 34 then self.mode, self.buf, self.str_for = "string", {}, "key"; i = i + 1
      elseif c == 125 and self.first then close(self); i = i + 1
      else self.mode = "error"; break end
    elseif mode == "colon" then
      if c == 58 then self.mode, self.first = "value", false; i = i + 1
      else self.mode = "error"; break end
    elseif mode == "next" then
      local top = self.stack[#self.stack]
      if c == 44 then
        self.mode, self.first = top.arr and "value" or "key", false
        i = i + 1
      elseif (c == 93 and top.arr) or (c == 125 and not top.arr) then
        close(self); i = i + 1
      else
        self.mode = "error"; break
      end
    else   -- done
      i = n + 1
    end
  end
  if grew and self.mode == "string" then
    set_string(self, string_so_far(self))
    self.changed = true
  end
  return self.changed
end

--- The value parsed so far, or nil before the first `{` or `[`. The containers still open
--- are fresh copies; finished ones are copied once and shared by later values (read them,
--- do not change them), so a long stream costs what is still open, not the whole object.
---@return any
function Parser:value()
  return snapshot(self.frozen, self.root)
end

--- Whether the root value is complete.
---@return boolean
function Parser:done()
  return self.mode == "done"
end

return M
