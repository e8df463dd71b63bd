-- Usage and cost across providers: a chat that reads a prompt cache, a stream, a tool loop
-- and a reasoning model's answer, added up per client by `client.usage` with `prices`, and
-- watched by hooks.
--   lua5.4 examples/costs.lua
-- Uses the mock server at LLM_MOCK_URL when set, else the real API for each provider whose
-- key is set, else a mock server started for the run. Against the mock, the usage each
-- reply reports is set with the x-mock-usage header.
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")
local llm = common.llm

-- US dollars per million tokens. Example figures: check your provider's price list.
local PRICES = {
  ["gpt-4.1-mini"] = { input = 0.40, cached_input = 0.10, output = 1.60 },
  ["claude-sonnet-4-5"] = { input = 3.00, cached_input = 0.30, cache_write = 3.75, output = 15.00 },
  ["gemini-2.5-flash"] = { input = 0.30, cached_input = 0.075, output = 2.50 },
}

local responses = 0
local hooks = {
  on_response = function(info)
    responses = responses + 1
    print(("  <- %-9s %-17s %s attempt %d, %.3f s"):format(info.provider, info.model, tostring(info.status),
      info.attempt, info.elapsed))
  end,
  on_retry = function(info)
    print(("  retrying %s in %.2f s: %s"):format(info.provider, info.wait, info.error.kind))
  end,
  on_error = function(info) print(("  %s failed: %s"):format(info.provider, tostring(info.error))) end,
}

local key = tostring(os.time()) .. tostring(os.clock())
local function client(provider, mock_headers)
  return (common.client(provider, { prices = PRICES, hooks = hooks }, mock_headers))
end
-- What the mock reports for a reply (normalized names; ignored by the real APIs).
local function usage(t)
  local parts = {}
  for _, k in ipairs{ "input_tokens", "cached_input_tokens", "cache_creation_input_tokens", "output_tokens",
                      "reasoning_tokens" } do
    if t[k] then parts[#parts + 1] = k .. "=" .. t[k] end
  end
  return { ["x-mock-usage"] = table.concat(parts, ",") }
end

local manual = ("This is the product manual. "):rep(200)   -- a long, stable prefix worth caching

-- OpenAI caches long prompt prefixes on its own: the second call reads most of it from the cache.
local gpt = client("openai")
print("openai: the same long system prompt twice")
for i, cached in ipairs{ 0, 1280 } do
  assert(gpt:chat{ system = manual, messages = { { role = "user", content = "Question " .. i } },
                   extra_headers = common.offline("openai") and usage{ input_tokens = 1412,
                     cached_input_tokens = cached, output_tokens = 35 } or nil })
end

-- Anthropic: a stream, then a tool loop (two model calls).
local claude = client("anthropic")
print("anthropic: a stream and a tool loop")
local s = assert(claude:stream{ system = manual, messages = { { role = "user", content = "Summarize it." } },
  extra_headers = common.offline("anthropic") and usage{ input_tokens = 12, cached_input_tokens = 1400,
    cache_creation_input_tokens = 0, output_tokens = 60 } or nil })
for _ in s:text() do end
local add = llm.tool{
  name = "add", description = "Adds two numbers",
  parameters = { type = "object", properties = { a = { type = "number" }, b = { type = "number" } },
                 required = { "a", "b" } },
  run = function(args) return { sum = args.a + args.b } end,
}
-- its own client, since the mock plays the loop from a script (the real API ignores the headers)
local tools_client = client("anthropic", { ["x-mock-script"] = "add", ["x-mock-key"] = key,
                                           ["x-mock-usage"] = "input_tokens=420,output_tokens=25" })
local r = assert(tools_client:run_tools{ messages = { { role = "user", content = "What is 2 + 3?" } },
                                         tools = { add } })
print("  answer: " .. r.text)

-- Gemini: a thinking model; its thoughts are output tokens too.
local gemini = client("gemini")
print("gemini: a reasoning answer")
assert(gemini:chat{ messages = { { role = "user", content = "Why is the sky blue? One sentence." } },
  extra_headers = common.offline("gemini") and usage{ input_tokens = 11, output_tokens = 180,
    reasoning_tokens = 150 } or nil })

print()
print(("%-10s %8s %8s %8s %8s %9s %11s"):format("client", "requests", "input", "cached", "output", "reasoning",
  "cost (USD)"))
local total = 0
for _, c in ipairs{ { "openai", gpt }, { "anthropic", claude }, { "tool loop", tools_client }, { "gemini", gemini } } do
  local u = c[2].usage
  print(("%-10s %8d %8d %8d %8d %9d %11.6f"):format(c[1], u.requests, u.input_tokens, u.cached_input_tokens,
    u.output_tokens, u.reasoning_tokens, u.cost or 0))
  total = total + (u.cost or 0)
end
print(("total cost: $%.6f over %d HTTP responses"):format(total, responses))
