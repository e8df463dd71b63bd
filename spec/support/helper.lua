-- Shared set-up for every spec: make the repository's modules and the built core findable
-- no matter where busted was started from.
local root = os.getenv("LLM_ROOT") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/spec/?.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath
