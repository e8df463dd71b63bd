-- LÖVE 11 configuration: a small window, no audio (the example makes no sound, and a
-- headless machine has no sound card).
function love.conf(t)
  t.window.title = "llm: streaming into a LÖVE game"
  t.window.width, t.window.height = 640, 240
  t.window.vsync = 1
  t.modules.audio = false
  t.modules.sound = false
  t.modules.joystick = false
  t.modules.physics = false
end
