-- A sentiment labeller for examples/bulk.lua: the label follows the words of the last user
-- text, so a run's tally is repeatable.
local POS = { great = true, love = true, good = true, excellent = true, happy = true }
local NEG = { bad = true, hate = true, awful = true, broken = true, sad = true }
return function(_, _, ctx)
  local text = (ctx.user_text or ""):lower()
  local score = 0
  for w in text:gmatch("%a+") do
    if POS[w] then score = score + 1 elseif NEG[w] then score = score - 1 end
  end
  return { text = score > 0 and "positive" or score < 0 and "negative" or "neutral" }
end
