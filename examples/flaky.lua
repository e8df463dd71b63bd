-- A function that fails two times in three, made reliable with a retry policy.
-- Run: lua5.4 examples/flaky.lua (from any folder)
local llm = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua").llm
local R = llm.retry

-- LLM_EXAMPLE_SEED makes a run repeatable (the examples spec uses it).
math.randomseed(tonumber(os.getenv("LLM_EXAMPLE_SEED")) or os.time())

local calls = 0
local function flaky(x)
  calls = calls + 1
  if math.random() < 2 / 3 then
    return nil, "transient failure on call " .. calls   -- a `nil, err` return counts as failure
  end
  return x * 2
end

local policy = R.policy{
  stop = R.stop_after_attempt(25),                          -- (2/3)^25: giving up is very rare
  wait = R.wait_exponential{ multiplier = 0.05, max = 0.2 },
  retry = R.if_error(),
  before_sleep = function(state)
    print(("attempt %d failed (%s); retrying in %.2f s"):format(state.attempt, tostring(state.error), state.wait))
  end,
}

local value, err = policy:call(flaky, 21)
if value then
  print(("got %s after %d attempt(s), %.2f s asleep"):format(value, policy.statistics.attempts, policy.statistics.idle))
else
  print("gave up: " .. tostring(err))
end

-- The same, wrapped once and called like the original function.
local reliable = policy:wrap(flaky)
print("wrapped:", reliable(5))
