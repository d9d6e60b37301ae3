-- push-notification bridge (dovecot-config): its bytecode, else dovecot-bridge-fallback.lua
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local chunk = loadfile(dir .. "dovecot-bridge.luac", "b") or assert(loadfile(dir .. "dovecot-bridge-fallback.lua", "t"))
chunk(dir)
