-- Errors are values: `nil, err` with err.kind, err.status, err.retry_after, err.request_id.
-- Against the mock server the faults are chosen with x-mock-* headers.
local common = dofile((arg[0]:match("^(.*[/\\])") or "") .. "common.lua")
local llm = common.llm

local client, mocked = common.client("openai", { max_retries = 0 })
if not mocked then print("(this example shows mock faults; run it with make demo's mock server)") end

local cases = {
  { "rate limited", { ["x-mock-fault"] = "status=429;retry-after=2" } },
  { "out of quota", { ["x-mock-fault"] = "quota" } },
  { "bad request", { ["x-mock-fault"] = "status=400" } },
  { "proxy page", { ["x-mock-fault"] = "html-error" } },
}
for _, case in ipairs(cases) do
  local resp, err = client:chat{ messages = { { role = "user", content = "hi" } }, extra_headers = case[2] }
  if resp then
    print(case[1] .. ": ok")
  else
    print(("%-13s kind=%-11s status=%s retryable=%s retry_after=%s"):format(case[1] .. ":", err.kind,
      tostring(err.status), tostring(err.retryable), tostring(err.retry_after)))
    assert(llm.is_error(err))
  end
end

-- A stream cut off mid-way ends with an "error" event, never with a silently short text.
local stream = assert(client:stream{ messages = { { role = "user", content = "one two three four five" } },
                                     extra_headers = { ["x-mock-fault"] = "reset-after-events=3" } })
for ev in stream:events() do
  if ev.type == "error" then print("stream ended with: " .. tostring(ev.error)) end
end
