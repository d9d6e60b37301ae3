-- Sets up one Lua state the way Dovecot's lib-lua does (the `dovecot` global, the modules
-- scripts require), applies the sandbox, and returns the functions the driver calls.
local host, constants, bits, dovecot_src, modules_src, sandbox = ...
-- captured now, so a script redefining these globals cannot break error handling
local type, tostring, rawget, xpcall, load, concat = type, tostring, rawget, xpcall, load, table.concat
local debug_traceback = debug.traceback

-- Strings reach Python decoded as UTF-8; a binary body travels as hex instead.
local utf8_len = utf8 and utf8.len
local function wire(s)
  if s == nil then return nil, false end
  if utf8_len and utf8_len(s) then return s, false end
  return (string.gsub(s, ".", function(c) return string.format("%02x", string.byte(c)) end)), true
end

local dovecot, make_user = load(dovecot_src, "=dovecot", "t")(host, constants, bits, wire)
local modules, provided = load(modules_src, "=modules", "t")(host, wire)
_G.dovecot = dovecot

-- lupa's own bridge to Python is not part of Dovecot's API: scripts reach Python only
-- through the functions above.
python = nil
package.loaded.python = nil

local searchers = package.searchers or package.loaders
for name, module in pairs(modules) do
  package.preload[name] = function() return module end
end

if sandbox then
  -- No process spawning, no native code, no exiting the daemon.
  os.execute = nil
  os.exit = nil
  io.popen = nil
  package.loadlib = nil
  package.cpath = ""
  -- debug keeps what error reporting needs; no registry or metatable surgery
  debug = {traceback = debug.traceback, getinfo = debug.getinfo}
  package.loaded.debug = debug
  for i = #searchers, 3, -1 do table.remove(searchers, i) end
  if _VERSION ~= "Lua 5.1" then
    -- text chunks only: precompiled bytecode can crash the VM
    local real_load, real_loadfile, real_dofile = load, loadfile, dofile
    load = function(chunk, name, mode, env)
      if env == nil then return real_load(chunk, name, "t") end
      return real_load(chunk, name, "t", env)
    end
    loadfile = function(file, mode, env)
      if env == nil then return real_loadfile(file, "t") end
      return real_loadfile(file, "t", env)
    end
    dofile = function(file)
      local f, err = real_loadfile(file, "t")
      if not f then error(err, 2) end
      return f()
    end
  end
end

table.insert(searchers, function(name)
  error("module '" .. tostring(name) .. "' is not available: the lua driver provides " .. provided
    .. " and .lua files on package.path; install it as a .lua file there or remove the require", 3)
end)

local api = {provided = provided}

local function traceback(err)
  if type(err) ~= "string" then err = tostring(err) end
  return debug_traceback(err, 2)
end

-- Compile the script (a syntax error comes back as (false, message)); run() executes it.
local main_chunk = nil
function api.compile(source, chunkname)
  local chunk, err = load(source, chunkname, "t")
  if not chunk then return false, err end
  main_chunk = chunk
  return true
end

function api.run()
  local ok, err = xpcall(main_chunk, traceback)
  if not ok then return false, err end
  return true
end

-- A static look for `require "name"` of modules that cannot load, so a config check catches
-- them before the script runs: (line, name) of the first, or nil. Scripts that change where
-- modules come from (package.path, preload, searchers) are left to the check at run time.
function api.missing_require(source)
  if source:find("package%s*%.") or source:find("package%s*%[") then return nil end
  local n = 0
  for line in (source .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local code = line:gsub("%-%-.*$", "")
    for name, after in code:gmatch("require%s*%(?%s*[\"']([%w_%.%-]+)[\"']%s*(%.?)") do
      if after == "" and package.preload[name] == nil and package.loaded[name] == nil
          and package.searchpath(name, package.path) == nil then
        return n, name
      end
    end
  end
  return nil
end

-- Whether a global is a function (bypassing restrict_global_variables).
function api.is_function(name)
  return type(rawget(_G, name)) == "function"
end

-- Which of the given names are global functions, as one space-separated string (one call
-- per transaction instead of one per name).
function api.defined(names)
  local found = {}
  for i = 1, #names do
    if type(rawget(_G, names[i])) == "function" then found[#found + 1] = names[i] end
  end
  return concat(found, " ")
end

-- Call a global function: (true, results...) or (false, message with traceback).
function api.call(name, ...)
  local fn = rawget(_G, name)
  if type(fn) ~= "function" then return false, "'" .. name .. "' is not a function" end
  return xpcall(fn, traceback, ...)
end

api.make_user = make_user
return api
