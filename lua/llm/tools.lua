--- llm.tools: tool definitions (`llm.tool`) and the tool-call loop (`client:run_tools`).
--
-- The module is a factory: `require("llm.tools")(env, llm)` returns
-- `{ tool = fn, schema = llm.schema, methods = { run_tools = fn } }`; the `llm` instance
-- exposes `tool` and installs `methods` on its Client class. A tool's `run` always runs in
-- a task (llm.spawn), so it may await (llm.sleep, another client call) whether run_tools
-- itself was called inside a task or from plain blocking code.
--
-- What goes back to the model (docs/tools.md):
-- * a string result as is; a table as JSON (kept as a table in the tool message, so Gemini
--   gets it as a structured `functionResponse`); a number or boolean as its text; nothing
--   as the empty string;
-- * `nil, err`, a raise, a timeout, an unknown tool, arguments that are not valid JSON or
--   that fail the tool's schema, and a denied call become a result with `is_error = true`
--   and a one-line message (a raised string loses its "file:line:" prefix; no traceback).
-- Errors raised by the application's own hooks (`before_tool_call`, `on_tool_call`,
-- `on_event`) are not the model's business: they propagate out of run_tools.
-- @module llm.tools
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local each = pairs   -- a name the parser does not specialise: see llm.compat on LuaJIT
local json = require("llm.json")
local schema = require("llm.schema")
local errors = require("llm.errors")
local validate = require("llm.validate")
local compat = require("llm.compat")
local pack = compat.pack

local type, ipairs, tostring = type, ipairs, tostring

-- Names every provider accepts: OpenAI and Anthropic take [a-zA-Z0-9_-], Gemini wants a
-- letter or '_' first and at most 64 characters.
local NAME_PATTERN = "^[%a_][%w_%-]*$"
local MAX_NAME = 64

-- run_tools options that belong to the loop; every other field goes to chat / stream.
local LOOP_KEYS = { max_steps = true, parallel = true, on_tool_call = true,
                    before_tool_call = true, on_event = true, stream = true,
                    tool_timeout = true, messages = true, tools = true, tool_choice = true }

local made = setmetatable({}, { __mode = "k" }) -- tables built by llm.tool (already checked)

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

local function is_hosted(t)
  return t.type ~= nil and t.type ~= "function" and t.run == nil and t.parameters == nil
end

--- A checked copy of a function tool definition; raises (at `level`) on a bad one.
local function define(def, level)
  level = level + 1
  local d = {}
  for k, v in each(def) do d[k] = v end
  if def.type == "function" and type(def["function"]) == "table" then
    -- the OpenAI wire shape { type = "function", function = { name, ... } }
    local fn = def["function"]
    d["function"], d.type = nil, nil
    d.name, d.description = fn.name, fn.description
    d.parameters, d.strict = fn.parameters, fn.strict
  end
  d.type = nil
  local name = d.name
  if type(name) ~= "string" or #name == 0 or #name > MAX_NAME or not name:match(NAME_PATTERN) then
    error(string.format("llm.tool: name must be 1 to %d letters, digits, '_' or '-', starting with "
      .. "a letter or '_' (got %s)", MAX_NAME, type(name) == "string" and string.format("%q", name)
      or tostring(name)), level)
  end
  if d.description ~= nil and type(d.description) ~= "string" then
    error("llm.tool '" .. name .. "': description must be a string", level)
  end
  if d.parameters == nil then
    d.parameters = { type = "object", properties = {} }
  elseif type(d.parameters) ~= "table" or d.parameters == json.null then
    error("llm.tool '" .. name .. "': parameters must be a JSON schema table", level)
  elseif d.parameters.type ~= "object" then
    error("llm.tool '" .. name .. "': parameters must be an object schema"
      .. " ({ type = \"object\", properties = ... }), got type " .. tostring(d.parameters.type), level)
  else
    local ok, err = schema.check(d.parameters, "parameters")
    if not ok then error("llm.tool '" .. name .. "': " .. err, level) end
  end
  if d.run ~= nil and not callable(d.run) then
    error("llm.tool '" .. name .. "': run must be a function", level)
  end
  if d.strict ~= nil and type(d.strict) ~= "boolean" then
    error("llm.tool '" .. name .. "': strict must be a boolean", level)
  end
  if d.timeout ~= nil and (type(d.timeout) ~= "number" or d.timeout <= 0) then
    error("llm.tool '" .. name .. "': timeout must be a positive number of seconds", level)
  end
  made[d] = true
  return d
end

--- A tool the model can call: `llm.tool{ name, description, parameters, run, strict, timeout }`.
-- `parameters` is a JSON schema for the arguments; `run(args, ctx)` runs in a task and may
-- return a string (sent as is) or a table (sent as JSON); `nil, err` or a raise becomes an
-- error result for the model. A hosted tool (a `type` other than "function", and no `run` /
-- `parameters`) is returned unchanged. Raises on a malformed definition.
-- @function tool
---@param def { name: string, description?: string, parameters?: table, run: fun(args: table, ctx: table): any, strict?: boolean, timeout?: number }|table
---@return llm.Tool|table tool the checked tool (a hosted tool unchanged)
local function tool(def)
  if type(def) ~= "table" then error("llm.tool expects a table", 2) end
  if made[def] or is_hosted(def) then return def end
  return define(def, 2)
end

-- The message of a failure, on one line and without the "chunk:line:" position.
local function error_text(e)
  if e == nil then return "unknown error" end
  if type(e) == "string" then
    return (e:gsub("^[^%s:]+:%d+: ", ""))
  end
  if errors.is(e) then return tostring(e) end
  if type(e) == "table" then
    local mt = getmetatable(e)
    if mt and mt.__tostring then return tostring(e) end
    if type(e.message) == "string" then return e.message end
    local ok, s = pcall(json.encode, e)
    if ok then return s end
  end
  return tostring(e)
end

local function snippet(s, n)
  s = tostring(s or ""):gsub("%s+", " ")
  if #s > n then s = s:sub(1, n - 3) .. "..." end
  return s
end

return function(env, llm)
  local async = env.async
  local M = { tool = tool, schema = schema }

  -- The tool message for `call` carrying `value` (run's first result).
  local function result_message(call, value, err, errored)
    local msg = { role = "tool", tool_call_id = call.id, name = call.name, is_error = false }
    if errored or (value == nil and err ~= nil) then
      msg.content = error_text(err)
      msg.is_error = true
    elseif value == nil then
      msg.content = ""
    elseif value == json.null then
      msg.content = "null"
    elseif type(value) == "string" then
      msg.content = value
    elseif type(value) == "table" then
      local ok, e = pcall(json.encode, value)
      if ok then msg.content = value
      else
        msg.content = "the tool's result cannot be sent as JSON: " .. error_text(e)
        msg.is_error = true
      end
    else
      msg.content = tostring(value)
    end
    return msg
  end

  local function error_result(call, text)
    return { role = "tool", tool_call_id = call.id, name = call.name, content = text, is_error = true }
  end

  -- Runs tool.run(args, ctx) protected; returns ok, value, err (never raises).
  local function protected_run(t, args, ctx)
    local res = pack(xpcall(function() return t.run(args, ctx) end, function(e) return e end))
    if not res[1] then return false, nil, res[2] end
    return true, res[2], res[3]
  end

  -- One call, start to finish, inside its own task: hooks, checks, run, result message.
  -- on_tool_call(call, value, message, ctx) gets the tool's own value (nil when it failed).
  local function run_call(call, registry, opts, ctx)
    local result, value
    if opts.before_tool_call then
      local verdict = opts.before_tool_call(call, ctx)
      if verdict == false then
        result = error_result(call, "the application denied this tool call")
      elseif verdict ~= nil and verdict ~= true then
        result = result_message(call, verdict)
        if not result.is_error then value = verdict end
      end
    end
    if not result then
      local t = registry[call.name]
      if not t then
        local names = {}
        for n in each(registry) do names[#names + 1] = n end
        table.sort(names)
        result = error_result(call, string.format("unknown tool %q; the available tools are: %s",
          tostring(call.name), #names > 0 and table.concat(names, ", ") or "(none)"))
      elseif call.arguments == nil then
        result = error_result(call, string.format("invalid arguments for %s: not valid JSON (%s)",
          call.name, snippet(call.arguments_json, 200)))
      else
        local ok, msg = schema.validate(call.arguments, t.parameters, "args")
        if not ok then
          result = error_result(call, "invalid arguments for " .. call.name .. ": " .. msg)
        else
          local limit = t.timeout or opts.tool_timeout
          local okr, err
          if limit then
            local out, terr = async.timeout(limit, function()
              return pack(protected_run(t, call.arguments, ctx))
            end)
            if out then okr, value, err = out[1], out[2], out[3]
            elseif terr and terr.kind == "timeout" then
              okr, err = false, string.format("the tool %s timed out after %g s", call.name, limit)
            else
              okr, err = false, terr
            end
          else
            okr, value, err = protected_run(t, call.arguments, ctx)
          end
          result = result_message(call, value, err, not okr)
          if result.is_error then value = nil end
        end
      end
    end
    if opts.on_tool_call then opts.on_tool_call(call, value, result, ctx) end
    return result
  end

  -- Runs the calls of one round as tasks; returns the tool messages in call order, or
  -- nil, err when the task running the loop is cancelled. A hook's raise re-raises here.
  local function run_round(calls, registry, opts, base_ctx)
    local function task_for(call, i)
      local ctx = { call = call, index = i, round = base_ctx.round, messages = base_ctx.messages,
                    client = base_ctx.client, llm = llm }
      return async.spawn(run_call, call, registry, opts, ctx)
    end
    local results = {}
    if opts.parallel == false then
      for i, call in ipairs(calls) do
        local r, errs, cerr = async.gather(task_for(call, i))
        if cerr then return nil, cerr end
        if errs[1] ~= nil then error(errs[1], 0) end
        results[i] = r[1]
      end
      return results
    end
    local tasks = {}
    for i, call in ipairs(calls) do tasks[i] = task_for(call, i) end
    tasks.n = #calls
    local r, errs, cerr = async.gather(tasks)
    if cerr then return nil, cerr end
    for i = 1, #calls do
      if errs[i] ~= nil then error(errs[i], 0) end
      results[i] = r[i]
    end
    return results
  end

  local function copy_list(l)
    local out = {}
    for i, v in ipairs(l or {}) do out[i] = v end
    return out
  end

  --- Run the tool loop: call the model, run the tools it asks for (each round's calls
  -- concurrently, arguments checked against the schema), send the results back, and repeat
  -- until it answers without tool calls or `max_steps` (8) round trips. A bad call, an
  -- unknown tool or a tool that raises goes back to the model as an error result.
  -- `before_tool_call(call)` may return `false` or a result to deny or answer a call;
  -- `on_tool_call(call, result, message)` fires after each.
  -- @function Client:run_tools
  ---@param self llm.Client
  ---@param req llm.Request|{ max_steps?: integer, parallel?: boolean, tool_timeout?: number, before_tool_call?: fun(call: llm.ToolCall): any, on_tool_call?: fun(call: llm.ToolCall, result: any, message: llm.Message), stream?: boolean, on_event?: fun(ev: llm.Event) }
  ---@return llm.Response? resp the final response, with `steps` and `messages`
  ---@return llm.Error? err
  ---@return { steps: table[], messages: llm.Message[] }? partial what was done before the failure
  local function run_tools(self, req)
    if type(req) ~= "table" then error("client:run_tools expects a request table", 2) end
    local max_steps = req.max_steps or 8
    if compat.math_type(max_steps) ~= "integer" or max_steps < 1 then
      error("run_tools: max_steps must be a positive integer", 2)
    end
    local bad = validate.tools("run_tools", req.tools)
    if bad then error(bad, 2) end
    for _, k in ipairs{ "before_tool_call", "on_tool_call", "on_event" } do
      if req[k] ~= nil and not callable(req[k]) then error("run_tools: " .. k .. " must be a function", 2) end
    end
    if req.tool_timeout ~= nil and (type(req.tool_timeout) ~= "number" or req.tool_timeout <= 0) then
      error("run_tools: tool_timeout must be a positive number of seconds", 2)
    end

    local registry, wire = {}, {}
    for i, t in ipairs(req.tools or {}) do
      if type(t) ~= "table" then error("run_tools: tools[" .. i .. "] is not a table", 2) end
      if not made[t] and not is_hosted(t) then t = define(t, 2) end
      if not is_hosted(t) then
        if registry[t.name] then error("run_tools: two tools are named '" .. t.name .. "'", 2) end
        registry[t.name] = t
      end
      wire[i] = t
    end

    local messages
    if req.messages ~= nil then
      messages = copy_list(req.messages)
    elseif type(req.input) == "string" then
      messages = { { role = "user", content = req.input } }
    elseif type(req.input) == "table" then
      messages = copy_list(req.input)
    else
      messages = {}
    end

    local base = {}
    for k, v in each(req) do
      if not LOOP_KEYS[k] and k ~= "input" then base[k] = v end
    end
    base.tools = wire
    base.messages = messages
    do -- the request the rounds send must be valid before the first is sent
      local r = {}
      for k, v in each(base) do r[k] = v end
      r.tool_choice = req.tool_choice
      self:normalize(r, 2)
    end

    -- A choice that forces a call applies to the first round only: forcing it every round
    -- would never let the model answer.
    local tc = req.tool_choice
    local forcing = tc == "required" or tc == "any" or type(tc) == "table"

    local opts = { before_tool_call = req.before_tool_call, on_tool_call = req.on_tool_call,
                   parallel = req.parallel, tool_timeout = req.tool_timeout }
    local steps = {}

    local function call_model(round)
      local r = {}
      for k, v in each(base) do r[k] = v end
      if tc ~= nil and (round == 1 or not forcing) then r.tool_choice = tc end
      if not req.stream then return self:chat(r) end
      local s, err = self:stream(r)
      if not s then return nil, err end
      local on_event = req.on_event
      local ok, perr = pcall(function()
        for ev in s:events() do
          if on_event then on_event(ev, round) end
        end
      end)
      if not ok then s:close(); error(perr, 0) end
      return s:final()
    end

    for round = 1, max_steps do
      local resp, err = call_model(round)
      if not resp then return nil, err, { steps = steps, messages = messages } end
      messages[#messages + 1] = resp.message
      local calls = resp.tool_calls or {}
      local step = { response = resp, calls = calls, results = {} }
      steps[#steps + 1] = step
      resp.steps, resp.messages = steps, messages
      if #calls == 0 then return resp end
      -- A call to a tool that has no `run` is the application's to answer: hand it back.
      for _, c in ipairs(calls) do
        local t = registry[c.name]
        if t and t.run == nil then return resp end
      end
      local results, cerr = run_round(calls, registry, opts,
                                      { round = round, messages = messages, client = self })
      if not results then return nil, cerr, { steps = steps, messages = messages } end
      step.results = results
      for _, m in ipairs(results) do messages[#messages + 1] = m end
      if round == max_steps then
        resp.finish_reason = "max_steps"
        return resp
      end
    end
  end

  M.methods = { run_tools = run_tools }
  return M
end
