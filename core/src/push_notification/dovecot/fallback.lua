-- push-notification bridge: what the loader Dovecot loads (dovecot-bridge.lua, installed by
-- `push-notification dovecot-config` beside this file) runs when the bridge's bytecode
-- (dovecot-bridge.luac) does not load: no Lua library when dovecot-config ran (no .luac, said
-- nothing of), or a Dovecot built on another Lua since (one warning per script load). Runs the
-- bridge's source instead, dovecot-bridge-source.lua. The loader stays this small because
-- Dovecot parses it for every mail user (see README.md, "Where the bridge's time goes").
local dir = ...
local _, why = loadfile(dir .. "dovecot-bridge.luac", "b")
if not tostring(why):find("No such file", 1, true) then
  pcall(dovecot.i_warning, "push-notification-bridge: " .. tostring(why)
    .. "; running the source instead (rerun push-notification dovecot-config)")
end
assert(loadfile(dir .. "dovecot-bridge-source.lua", "t"))(dir)
