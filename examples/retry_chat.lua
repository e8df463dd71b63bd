-- A chat call made reliable with a retry policy. Against the mock server (make demo's, via
-- LLM_MOCK_URL) the first two attempts fail with 503 and 429, then the call succeeds.
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")
local llm = common.llm
local R = llm.retry

-- R.stop_any(a, b) is `a | b` on Lua 5.3 and 5.4; the function form runs on LuaJIT too.
local policy = R.policy{
  stop = R.stop_any(R.stop_after_attempt(5), R.stop_after_delay(30)),
  wait = R.wait_retry_after(R.wait_exponential{ multiplier = 0.2, max = 4 }),   -- honour retry-after
  retry = R.if_error("rate_limit", "server", "overloaded", "connection", "timeout"),
  before_sleep = function(s)
    print(("attempt %d failed (%s); waiting %.2f s"):format(s.attempt, s.error.kind, s.wait))
  end,
}

local client, mocked = common.client("openai", { retry = policy })
local resp, err = client:chat{
  messages = { { role = "user", content = "Say hello after a rough start." } },
  extra_headers = mocked and { ["x-mock-sequence"] = "status=503|status=429;retry-after-ms=300|ok",
                               ["x-mock-key"] = "retry-chat-" .. os.time() } or nil,
}
if not resp then
  print("gave up: " .. tostring(err))
  os.exit(1)
end
print(("reply: %s (after %d attempts, %.2f s asleep)"):format(resp.text, policy.statistics.attempts,
  policy.statistics.idle))
