--- Usage totals and cost: the running `client.usage` of a client (API §12 "Accounting").
--
-- A response's `usage.input_tokens` is what its provider counts as input: OpenAI (Chat and
-- Responses) and Gemini include the tokens read from a cache in it, Anthropic reports cache
-- reads (`cache_read_input_tokens`) and writes (`cache_creation_input_tokens`) beside it. The
-- totals here count every input token once on every provider, so `input_tokens` of
-- `client.usage` is all input, cached and cache-written tokens included; a provider table
-- says which convention it reports with `usage_input_excludes_cache = true`.
-- @module llm.accounting
if jit and jit.version == "LuaJIT 2.1.0-beta3" then jit.off(true, true) end   -- see llm.compat
local M = {}

local COUNTS = { "input_tokens", "output_tokens", "cached_input_tokens",
                 "cache_creation_input_tokens", "reasoning_tokens" }
M.COUNTS = COUNTS

local function num(x) return type(x) == "number" and x or 0 end
local NO_USAGE = {}

--- Fresh totals: counts at 0, `cost` nil until a priced call, `by_model` empty.
---@return llm.UsageTotals
function M.new()
  return { requests = 0, input_tokens = 0, output_tokens = 0, cached_input_tokens = 0,
           cache_creation_input_tokens = 0, reasoning_tokens = 0, cost = nil, by_model = {} }
end

--- A response's usage in the totals' convention: `input_tokens` is all input.
---@param usage? llm.Usage a normalized usage table
---@param excludes_cache? boolean the provider reports cache reads and writes beside input_tokens
---@return table counts every field of COUNTS, a number (0 when not reported)
function M.counts(usage, excludes_cache)
  local u = type(usage) == "table" and usage or NO_USAGE
  -- the fields of COUNTS, written out: this runs for every call
  local c = { input_tokens = num(u.input_tokens), output_tokens = num(u.output_tokens),
              cached_input_tokens = num(u.cached_input_tokens),
              cache_creation_input_tokens = num(u.cache_creation_input_tokens),
              reasoning_tokens = num(u.reasoning_tokens) }
  if excludes_cache then
    c.input_tokens = c.input_tokens + c.cached_input_tokens + c.cache_creation_input_tokens
  end
  return c
end

--- The cost in US dollars of `counts` (from `M.counts`) at `price` (US dollars per million
-- tokens): uncached input at `input`, cached input at `cached_input` (else `input`),
-- cache writes at `cache_write` (else `input`), output at `output`. nil without a price.
---@param counts table
---@param price? { input?: number, output?: number, cached_input?: number, cache_write?: number }
---@return number? usd
function M.cost(counts, price)
  if type(price) ~= "table" then return nil end
  local input = num(price.input)
  local cached = price.cached_input or input
  local write = price.cache_write or input
  local uncached = math.max(0, num(counts.input_tokens) - num(counts.cached_input_tokens)
    - num(counts.cache_creation_input_tokens))
  return (uncached * input + num(counts.cached_input_tokens) * cached
    + num(counts.cache_creation_input_tokens) * write + num(counts.output_tokens) * num(price.output)) / 1e6
end

local function add_to(t, counts, cost)
  t.requests = t.requests + 1
  t.input_tokens = t.input_tokens + counts.input_tokens                 -- the fields of COUNTS
  t.output_tokens = t.output_tokens + counts.output_tokens
  t.cached_input_tokens = t.cached_input_tokens + counts.cached_input_tokens
  t.cache_creation_input_tokens = t.cache_creation_input_tokens + counts.cache_creation_input_tokens
  t.reasoning_tokens = t.reasoning_tokens + counts.reasoning_tokens
  if cost then t.cost = (t.cost or 0) + cost end
end

--- Add one call that returned a response to `totals` (and to its model's entry).
---@param totals llm.UsageTotals
---@param model string the model the request named
---@param usage? llm.Usage the call's usage (nil when the server sent none)
---@param price? table the model's price, if any
---@param excludes_cache? boolean the provider's input_tokens leaves out cache reads and writes
---@return table counts the call's counts in the totals' convention
---@return number? cost the call's cost, nil without a price
function M.add(totals, model, usage, price, excludes_cache)
  local counts = M.counts(usage, excludes_cache)
  local cost = M.cost(counts, price)
  add_to(totals, counts, cost)
  local key = model or "?"
  local m = totals.by_model[key]
  if not m then
    m = M.new()
    m.by_model = nil
    totals.by_model[key] = m
  end
  add_to(m, counts, cost)
  return counts, cost
end

return M
