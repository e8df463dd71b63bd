-- Shared set-up for every spec: make the repository's modules and the built core findable
-- no matter where busted was started from. LLM_BUILD selects the build (e.g. build-asan).
local root = os.getenv("LLM_ROOT") or "."
local build = os.getenv("LLM_BUILD") or (root .. "/build")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/spec/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath
-- LLM_GC_AGGRESSIVE=1: collect continuously (pause 0), so lifetimes bugs show under
-- valgrind and the sanitizers instead of hiding behind a lazy collector.
if os.getenv("LLM_GC_AGGRESSIVE") then collectgarbage("incremental", 0, 100) end
