-- Shared set-up for every spec: make the repository's modules and the built core findable
-- no matter where busted was started from. LLM_BUILD selects the build (e.g. build-asan).
local root = os.getenv("LLM_ROOT") or "."
local build = os.getenv("LLM_BUILD") or (root .. "/build")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/spec/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath
