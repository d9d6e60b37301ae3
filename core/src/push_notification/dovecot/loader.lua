-- push-notification bridge for Dovecot's push_notification_lua driver: the file Dovecot loads.
-- Installed by `push-notification dovecot-config` beside dovecot-bridge.luac (the bridge
-- precompiled with the Lua library Dovecot links) and dovecot-bridge-source.lua (its source).
-- Dovecot loads this file for every mail user, so it stays tiny: loading the bytecode costs a
-- tenth of parsing the source. When the bytecode does not load (no Lua library at install
-- time, or a Dovecot built on another Lua since), the source runs instead: rerun dovecot-config.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local chunk, why = loadfile(dir .. "dovecot-bridge.luac", "b")
if chunk == nil then
  if not tostring(why):find("No such file", 1, true) then
    pcall(dovecot.i_warning, "push-notification-bridge: " .. tostring(why)
      .. "; running the source instead (rerun push-notification dovecot-config)")
  end
  chunk = assert(loadfile(dir .. "dovecot-bridge-source.lua", "t"))
end
chunk()
