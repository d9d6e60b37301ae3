-- The `dovecot` global as Dovecot 2.3.19 builds it (dlua-dovecot.c, dlua-dovecot-http.c,
-- mail-storage-lua.c, mail-user-lua.c, mailbox-lua.c), backed by the Python `host`.
-- Errors raised here use level 2 so the script's file and line appear in the message.
local host, constants, bits, wire = ...
local unpack = table.unpack or unpack

-- As dlua_dovecot_register builds it: an empty table whose metatable (named "dovecot", its
-- __index pointing to itself) holds the functions; `storage` and `http` are fields of the table.
local methods = {__name = "dovecot"}
methods.__index = methods
local dovecot = setmetatable({}, methods)

-- ------------------------------------------------------------------ logging
function methods.i_debug(msg) host.log("debug", tostring(msg), nil, nil) end
function methods.i_info(msg) host.log("info", tostring(msg), nil, nil) end
function methods.i_warning(msg) host.log("warning", tostring(msg), nil, nil) end
function methods.i_error(msg) host.log("error", tostring(msg), nil, nil) end

-- ------------------------------------------------------------------ events
local Event = {}
Event.__index = Event

function methods.event(parent)
  local fields = {}
  local prefix = ""
  if parent ~= nil then
    if getmetatable(parent) ~= Event then
      error("Bad argument #1, expected struct event got " .. type(parent), 2)
    end
    for k, v in pairs(parent.fields) do fields[k] = v end
    prefix = parent.prefix
  end
  return setmetatable({fields = fields, prefix = prefix, name = nil}, Event)
end

function Event:append_log_prefix(p) self.prefix = self.prefix .. tostring(p); return self end
function Event:replace_log_prefix(p) self.prefix = tostring(p); return self end
function Event:set_always_log_source() return self end
function Event:set_name(name) self.name = tostring(name); return self end
function Event:add_str(k, v) self.fields[k] = tostring(v); return self end
function Event:add_int(k, v)
  if type(v) ~= "number" then error("bad argument #2 to 'add_int' (number expected)", 2) end
  self.fields[k] = v
  return self
end
function Event:add_timeval(k, v) self.fields[k] = v; return self end
function Event:inc_int(k, v) self.fields[k] = (self.fields[k] or 0) + v; return self end
local function event_log(level)
  return function(self, msg) host.log(level, self.prefix .. tostring(msg), self.fields, self.name) end
end
Event.log_debug = event_log("debug")
Event.log_info = event_log("info")
Event.log_warning = event_log("warning")
Event.log_error = event_log("error")
function Event:passthrough_event()
  local copy = dovecot.event(self)
  copy.name = self.name
  return copy
end

-- ------------------------------------------------------------------ flags helpers
function methods.has_flag(value, flag) return bits.band(value, flag) == flag end
function methods.set_flag(value, flag) return bits.bor(value, flag) end
function methods.clear_flag(value, flag) return bits.band(value, bits.bnot(flag)) end

function methods.restrict_global_variables(on)
  if on then
    setmetatable(_G, {
      __index = function(_, k) error("attempt to read undeclared global variable " .. tostring(k), 2) end,
      __newindex = function(_, k) error("attempt to write undeclared global variable " .. tostring(k), 2) end,
    })
  else
    setmetatable(_G, nil)
  end
end

-- ------------------------------------------------------------------ storage constants
local storage_meta = {__name = "storage"}
storage_meta.__index = storage_meta
dovecot.storage = setmetatable({}, storage_meta)
for k, v in pairs(constants) do dovecot.storage[k] = v end

-- ------------------------------------------------------------------ mailbox object
local Mailbox = {__name = "struct mailbox"}
Mailbox.__index = Mailbox
-- What mbox:sync() fetched, per mailbox object (weak: freed with the object).
local synced = setmetatable({}, {__mode = "k"})
Mailbox.__tostring = function(self) return self.vname end
Mailbox.__eq = function(a, b) return a.vname == b.vname and a.user.username == b.user.username end
Mailbox.__lt = function(a, b) return a.vname < b.vname end
Mailbox.__le = function(a, b) return a.vname <= b.vname end

local function check_box(self)
  if getmetatable(self) ~= Mailbox then
    error("Bad argument #1, expected struct mailbox got " .. type(self), 3)
  end
end

function Mailbox:open() check_box(self) end
function Mailbox:close() check_box(self) end
function Mailbox:free() check_box(self) end
function Mailbox:sync(flags)
  check_box(self)
  if flags ~= nil and type(flags) ~= "number" then
    error("bad argument #2 to 'sync' (number expected, got " .. type(flags) .. ")", 2)
  end
  local status, err = host.mailbox_sync(self.user.username, self.vname)
  if err ~= nil then error(err, 2) end
  synced[self] = status
end

function Mailbox:status(...)
  check_box(self)
  if select("#", ...) < 1 then error("expecting at least 1 parameter", 2) end
  local items = 0
  for i = 1, select("#", ...) do
    local item = select(i, ...)
    if type(item) ~= "number" then error("bad argument #" .. (i + 1) .. " to 'status' (number expected)", 2) end
    items = bits.bor(items, item)
  end
  local status, err = host.mailbox_status(self.user.username, self.vname, items, synced[self])
  if status == nil then error(err, 2) end
  return status
end

local function metadata_get(username, mailbox, ...)
  local n = select("#", ...)
  if n < 1 then error("expecting at least 1 parameter", 3) end
  local values = {}
  for i = 1, n do
    local key = select(i, ...)
    if type(key) ~= "string" then error("expected string at #" .. (i + 1), 3) end
    local ok, value = host.metadata_get(username, mailbox, key)
    if not ok then error(value, 3) end
    values[i] = value
  end
  return unpack(values, 1, n)
end

local function metadata_set(username, mailbox, key, value, what)
  if type(key) ~= "string" then error("bad argument #2 (string expected, got " .. type(key) .. ")", 3) end
  if value ~= nil then value = tostring(value) end
  local ok, err = host.metadata_set(username, mailbox, key, value)
  if not ok then error("Cannot " .. what .. " attribute: " .. err, 3) end
end

local function metadata_list(username, mailbox, ...)
  if select("#", ...) < 1 then error("expecting at least 1 parameter", 3) end
  local result = {}
  for i = 1, select("#", ...) do
    local prefix = select(i, ...)
    if type(prefix) ~= "string" then error("expected string at #" .. (i + 1), 3) end
    local ok, items = host.metadata_list(username, mailbox, prefix)
    if not ok then error(items, 3) end
    for k, v in pairs(items) do result[k] = v end
  end
  return result
end

function Mailbox:metadata_get(...) check_box(self); return metadata_get(self.user.username, self.vname, ...) end
function Mailbox:metadata_set(k, v) check_box(self); metadata_set(self.user.username, self.vname, k, v, "set") end
function Mailbox:metadata_unset(k) check_box(self); metadata_set(self.user.username, self.vname, k, nil, "unset") end
function Mailbox:metadata_list(...) check_box(self); return metadata_list(self.user.username, self.vname, ...) end

-- ------------------------------------------------------------------ user object
local User = {__name = "struct mail_user"}
User.__index = User
User.__tostring = function(self) return self.username end
User.__eq = function(a, b) return a.username == b.username end
User.__lt = function(a, b) return a.username < b.username end
User.__le = function(a, b) return a.username <= b.username end

local function check_user(self)
  if getmetatable(self) ~= User then
    error("Bad argument #1, expected struct mail_user got " .. type(self), 3)
  end
end

function User:plugin_getenv(key)
  check_user(self)
  return host.plugin_getenv(tostring(key))
end

function User:var_expand(template)
  check_user(self)
  local value, err = host.var_expand(self.username, tostring(template))
  if value == nil then error(err, 2) end
  return value
end

function User:mailbox(name, flags)
  check_user(self)
  if type(name) ~= "string" then error("bad argument #2 to 'mailbox' (string expected, got " .. type(name) .. ")", 2) end
  -- Dovecot's vname and storage name are the same for the default namespace separator.
  return setmetatable({item = host.item, vname = name, name = name, user = self}, Mailbox)
end

function User:metadata_get(...) check_user(self); return metadata_get(self.username, "", ...) end
function User:metadata_set(k, v) check_user(self); metadata_set(self.username, "", k, v, "set") end
function User:metadata_unset(k) check_user(self); metadata_set(self.username, "", k, nil, "unset") end
function User:metadata_list(...) check_user(self); return metadata_list(self.username, "", ...) end

local function make_user(fields)
  fields.item = host.item -- Dovecot's userdata holding the C struct; opaque to scripts
  return setmetatable(fields, User)
end

-- ------------------------------------------------------------------ dovecot.http
local http = {}
dovecot.http = http

local Client, Request, Response = {}, {}, {}
Client.__index, Request.__index, Response.__index = Client, Request, Response

function http.client(settings)
  settings = settings or {}
  if type(settings) ~= "table" then error("bad argument #1 to 'client' (table expected)", 2) end
  -- 2.3.19 takes a fixed list of keys and silently ignores others (the docs' `timeout`).
  local timeout = tonumber(settings.request_timeout_msecs) or tonumber(settings.request_absolute_timeout_msecs)
  return setmetatable({
    timeout_msecs = timeout or 0,
    connect_timeout_msecs = tonumber(settings.connect_timeout_msecs) or 0,
    max_attempts = tonumber(settings.max_attempts) or 1,
    user_agent = settings.user_agent,
  }, Client)
end

function Client:request(t)
  if type(t) ~= "table" then error("bad argument #1 to 'request' (table expected)", 2) end
  if t.url == nil then error("cannot create request: url not specified", 2) end
  return setmetatable({client = self, url = tostring(t.url), method = t.method or "GET", headers = {}, payload = nil}, Request)
end

function Request:add_header(name, value) table.insert(self.headers, {tostring(name), tostring(value)}) end
function Request:remove_header(name)
  local lname = string.lower(tostring(name))
  for i = #self.headers, 1, -1 do
    if string.lower(self.headers[i][1]) == lname then table.remove(self.headers, i) end
  end
end
function Request:set_payload(payload) self.payload = tostring(payload) end

function Request:submit()
  local c = self.client
  local body, body_hex = wire(self.payload)
  local r = host.http_request(self.method, self.url, self.headers, body, body_hex, c.timeout_msecs,
    c.connect_timeout_msecs, c.max_attempts, c.user_agent, true)
  return setmetatable({r = r}, Response)
end

function Response:status() return self.r.status end
function Response:reason() return self.r.reason end
function Response:payload() return self.r.payload end
function Response:header(name)
  return self.r.headers[string.lower(tostring(name))] or ""
end

return dovecot, make_user
