--- Fallbacks (API §13): `llm.fallback{ gpt, claude, on = {...}, cooldown = 30 }` is a client
-- over several clients. A call goes to the first client that is not cooling down; when it
-- fails with a listed kind before any content reached the caller, that client cools down for
-- `cooldown` seconds and the call moves to the next one. `resp.provider` names the answering
-- client's provider.
-- @module llm.fallback
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local errors = require("llm.errors")

local DEFAULT_ON = { "overloaded", "server", "rate_limit", "timeout", "connection" }
local OPTIONS = { on = true, cooldown = true }

--- The fallback factory of one `llm` instance.
---@private
---@param env { clock: table, Client: table, run_tools: function }
---@return table
return function(env)
  local clock = env.clock
  local F = {}

  ---@class llm.Fallback
  ---@field clients llm.Client[] the clients, in order
  ---@field on table<string, boolean> the error kinds that move a call on
  ---@field cooldown number seconds a failed client is skipped
  local Fallback = { __name = "llm.Fallback" }
  Fallback.__index = Fallback
  F.Fallback = Fallback

  local function is_client(x)
    local mt = getmetatable(x)
    return mt == env.Client or mt == Fallback
  end

  --- A fallback over `opts[1..n]` (clients, or other fallbacks): `on` lists the error kinds
  -- that move a call to the next client (default overloaded, server, rate_limit, timeout,
  -- connection), `cooldown` the seconds a client that failed is skipped (30).
  ---@param opts { [integer]: llm.Client, on?: string[], cooldown?: number }
  ---@return llm.Fallback
  function F.new(opts)
    if type(opts) ~= "table" then error("llm.fallback expects a table { client1, client2, ..., on, cooldown }", 3) end
    local clients = {}
    for k, v in each(opts) do
      if type(k) == "number" then
        if not is_client(v) then
          error("llm.fallback: item [" .. tostring(k) .. "] is not a client (llm.client(...)), got " .. type(v), 3)
        end
      elseif not OPTIONS[k] then
        local s = require("llm.validate").suggest(k, OPTIONS)
        error("llm.fallback: unknown option " .. tostring(k) .. (s and (" (did you mean '" .. s .. "'?)") or ""), 3)
      end
    end
    for i = 1, #opts do clients[i] = opts[i] end
    if #clients == 0 then error("llm.fallback: give at least one client", 3) end
    local on = opts.on or DEFAULT_ON
    if type(on) ~= "table" then error("llm.fallback: on must be a list of error kinds", 3) end
    local kinds = {}
    for _, k in ipairs(on) do
      if type(k) ~= "string" then error("llm.fallback: on must be a list of error kinds (strings)", 3) end
      kinds[k] = true
    end
    local cooldown = opts.cooldown == nil and 30 or opts.cooldown
    if type(cooldown) ~= "number" or cooldown < 0 or cooldown ~= cooldown then
      error("llm.fallback: cooldown must be a number of seconds >= 0, got " .. tostring(cooldown), 3)
    end
    local until_ = {}
    for i = 1, #clients do until_[i] = -math.huge end
    return setmetatable({ clients = clients, on = kinds, cooldown = cooldown, cool_until = until_,
                          name = "fallback", model = clients[1].model, api = clients[1].api }, Fallback)
  end

  --- A short description: the clients' providers.
  ---@return string
  function Fallback:__tostring()
    local names = {}
    for i, c in ipairs(self.clients) do names[i] = tostring(c.name) end
    return "llm.Fallback(" .. table.concat(names, ", ") .. ")"
  end

  --- The clients to try now, in order: those not cooling down, or, when all are, the one
  -- whose cooldown ends first.
  ---@private
  ---@return integer[] indexes
  function Fallback:order()
    local now = clock:now()
    local list, first = {}, nil
    for i = 1, #self.clients do
      if self.cool_until[i] <= now then list[#list + 1] = i
      elseif not first or self.cool_until[i] < self.cool_until[first] then first = i end
    end
    if #list == 0 then list[1] = first end
    return list
  end

  --- Whether `err` moves a call on (a listed kind; retries that ran out count by their last error).
  ---@private
  ---@param err any
  ---@return boolean
  function Fallback:moves_on(err)
    if errors.is(err) and err.kind == "retry" and err.last ~= nil then err = err.last end
    return type(err) == "table" and err.kind ~= nil and self.on[err.kind] == true
  end

  --- Skip client `i` for `cooldown` seconds.
  ---@private
  ---@param i integer
  function Fallback:cool(i)
    self.cool_until[i] = clock:now() + self.cooldown
  end

  --- The request checked as the first client would check it (conversations and run_tools
  -- validate before their first call).
  ---@private
  ---@param req string|llm.Request
  ---@param level? integer
  ---@return llm.Request
  function Fallback:normalize(req, level)
    return self.clients[1]:normalize(req, (level or 2) + 1)
  end

  --- `chat` on the first client that answers; a listed failure moves to the next one.
  ---@param req string|llm.Request
  ---@return llm.Response? resp with `provider`, the answering client's provider
  ---@return llm.Error? err the last failure
  function Fallback:chat(req)
    local last
    for _, i in ipairs(self:order()) do
      local resp, err = self.clients[i]:chat(req)
      if resp then return resp end
      last = err
      if not self:moves_on(err) then return nil, err end
      self:cool(i)
    end
    return nil, last
  end

  --- `stream` on the first client whose stream starts; a listed failure before any content
  -- (an HTTP error, or an error event ahead of the first content) moves to the next one.
  -- After content has reached the caller a failure is the stream's `"error"` event.
  ---@param req string|llm.Request
  ---@return llm.Stream? stream
  ---@return llm.Error? err the last failure
  function Fallback:stream(req)
    local last
    for _, i in ipairs(self:order()) do
      local s, err = self.clients[i]:stream(req)
      if s and not s.failed_before_content then return s end
      if s then err = s.error end
      last = err
      if not self:moves_on(err) then
        if s then return s end
        return nil, err
      end
      if s then s:close() end
      self:cool(i)
    end
    return nil, last
  end

  --- A conversation whose turns go through the fallback (checked as the first client would).
  ---@param opts? table as for `client:conversation`
  ---@return llm.Conversation
  function Fallback:conversation(opts)
    local conv = self.clients[1]:conversation(opts)
    conv.client = self
    return conv
  end

  Fallback.run_tools = env.run_tools

  return F
end
