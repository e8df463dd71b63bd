--- A Neovim plugin in miniature: stream a model's reply into a buffer while the editor stays
-- responsive. Neovim runs LuaJIT 2.1, so this loads the LuaJIT build of the module.
--
--   local plugin = require("llm_stream")      -- examples/nvim/ on package.path
--   plugin.setup(llm)                         -- hook llm's loop into Neovim's (once)
--   plugin.stream_into(buf, client, "prompt", function(ok, err) end)
--
-- How it waits: llm.pollfd() is a descriptor that is readable whenever llm.step has work;
-- vim.loop.new_poll watches it inside Neovim's own libuv loop, and a libuv timer covers the
-- timed work llm.next_timeout() announces. Nothing polls on a fixed period, and the editor
-- never blocks: llm.step(0) runs on the main loop through vim.schedule, where buffers may be
-- changed (a libuv callback may not touch them).
local M = {}

local llm
local poll, timer
local scheduled = false
M.wakeups = 0

local function pump()
  scheduled = false
  M.wakeups = M.wakeups + 1
  local live = llm.step(0)
  -- The fd shows I/O and due timers; next_timeout() says when timed work is due.
  -- next_timeout() counts timers only; sockets show on the fd. A backend without an fd
  -- ("poll", llm.backend()) cannot wake us on I/O: step it at 60 Hz while tasks live.
  local t = llm.next_timeout()
  if not poll and live > 0 then t = math.min(t or 1 / 60, 1 / 60) end
  timer:stop()
  if t then timer:start(math.ceil(t * 1000), 0, M.wake) end
end

--- Ask for a step on Neovim's main loop (at most one pending at a time).
function M.wake()
  if not scheduled then
    scheduled = true
    vim.schedule(pump)
  end
end

function M.setup(llm_module)
  if llm then return end
  llm = llm_module
  local uv = vim.loop
  timer = uv.new_timer()
  local fd = llm.pollfd()
  if fd then
    poll = uv.new_poll(fd)
    poll:start("r", function(err)
      if not err then M.wake() end
    end)
  end
end

--- Stop watching llm's descriptor (for example on VimLeavePre).
function M.teardown()
  if poll then poll:stop(); poll:close(); poll = nil end
  if timer then timer:stop(); timer:close(); timer = nil end
  llm = nil
end

--- Stream the reply to `prompt` into buffer `buf`, appending text as it arrives (a newline in
-- the text starts a new line). `done(ok, err)` is called on the main loop at the end.
function M.stream_into(buf, client, prompt, done)
  llm.spawn(function()
    local s, err = client:stream(prompt)
    if not s then return done(false, err) end
    for ev in s:events() do
      if ev.type == "text" then
        local last = vim.api.nvim_buf_line_count(buf) - 1
        local col = #vim.api.nvim_buf_get_lines(buf, last, last + 1, false)[1]
        local lines = vim.split(ev.text, "\n", { plain = true })
        vim.api.nvim_buf_set_text(buf, last, col, last, col, lines)
      elseif ev.type == "error" then
        return done(false, ev.error)
      end
    end
    done(true)
  end)
  M.wake()   -- the spawned task starts at the next step
end

return M
