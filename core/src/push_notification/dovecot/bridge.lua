-- push-notification bridge for Dovecot's own push_notification_lua driver (2.3.19+ and 2.4;
-- tested end to end on 2.3.19 and 2.4.1).
--
-- Gathers one Dovecot push-notification transaction (user, mailbox, every event with every
-- field, the user's http-notify METADATA, optionally a status snapshot of the mailbox) and
-- hands it to the push-notification daemon as one JSON object (the schema of
-- push_notification.transaction.transaction_from_dict):
--
--   spool  (default): written to SPOOL/tmp/, renamed into SPOOL/new/ (as Maildir does);
--                     the daemon picks it up. No network round trip inside Dovecot.
--   http:             POSTed to the daemon's ingress with a bearer token and a short timeout;
--                     on any failure the transaction goes to the spool instead.
--
-- Dovecot's LMTP answer to DATA waits for this script, so it does as little as it can and
-- never raises: every step runs under pcall and failures are logged, never passed on.
--
-- Settings, Dovecot 2.3 (plugin { }):         Dovecot 2.4 (push_notification lua { lua_settings { } }):
--   push_notification_bridge_transport = spool   transport = spool
--   push_notification_bridge_spool = DIR         spool = DIR
--   push_notification_bridge_url = URL           url = URL   (http://127.0.0.1:8425/v1/transactions)
--   push_notification_bridge_token = TOKEN       token = TOKEN
--   push_notification_bridge_timeout_msecs = 1000 timeout_msecs = 1000
--   push_notification_bridge_http_pause_secs = 10   http_pause_secs = 10 (spool only, after a failure)
--   push_notification_bridge_status = yes        status = yes   (mailbox status snapshot; opens it)
--   push_notification_bridge_metadata = yes      metadata = yes (read the http-notify and device METADATA)
-- `push-notification dovecot-config` prints these for you, and installs this file as
-- dovecot-bridge-source.lua beside its bytecode (dovecot-bridge.luac), the loader Dovecot loads
-- (dovecot-bridge.lua, loader.lua here), the loader's fallback (fallback.lua) and the http
-- transport (bridge_http.lua, loaded only when a transaction goes over http). Dovecot loads
-- the script into a fresh Lua state for every mail user (every delivery), so what this file
-- holds costs on every delivery: loading its bytecode, and what the main chunk builds. See
-- README.md, "Where the bridge's time goes".

local BRIDGE = "push-notification-bridge"
local OX_METADATA_KEY = "/private/vendor/vendor.dovecot/http-notify"
-- Server METADATA forwarded with each transaction: OX's activation, and a device to wake
-- (ours: a JSON registration; chatmail's: a gateway token).
local DEVICE_KEY = "/private/vendor/vendor.dovecot/push-device"
local TOKEN_KEY = "/private/devicetoken"
-- The same keys as attributes of INBOX, where Dovecot keeps server METADATA (what
-- user:metadata_get reads; it opens INBOX once per key).
local SERVER_OX_KEY = "/private/vendor/vendor.dovecot/pvt/server/vendor/vendor.dovecot/http-notify"
local SERVER_DEVICE_KEY = "/private/vendor/vendor.dovecot/pvt/server/vendor/vendor.dovecot/push-device"
local SERVER_TOKEN_KEY = "/private/vendor/vendor.dovecot/pvt/server/devicetoken"

-- The directory the bridge is installed in (the loader passes it; run as the source alone, it
-- is this file's own).
local DIR = ... or debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local init_args = nil -- 2.4 passes lua_settings to script_init
local config = nil -- read once per script state (Dovecot loads the script per mail user)
local counter = 0

-- ------------------------------------------------------------------ logging
local function log(level, message)
  pcall(function()
    local fn = dovecot[level] or dovecot.i_error
    fn(BRIDGE .. ": " .. message)
  end)
end

-- --------------------------------------------------------------------- JSON
local ESCAPES = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
local function escape_char(c)
  return ESCAPES[c] or string.format("\\u%04x", c:byte())
end

-- Invalid UTF-8 bytes (8-bit headers) become U+FFFD each, as Dovecot's own JSON writer does.
local function valid_utf8(s)
  if utf8.len(s) then
    return s
  end
  local out, i, n = {}, 1, #s
  while i <= n do
    local ok, bad = utf8.len(s, i)
    if ok then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, bad - 1)
    out[#out + 1] = "\239\191\189"
    i = bad + 1
  end
  return table.concat(out)
end

local format, gsub, utf8_len = string.format, string.gsub, utf8.len

-- Most values need no escaping: %q (a tight C loop) escapes exactly the quote, the backslash and
-- the control characters, so when it adds nothing and the bytes are valid UTF-8, its output is
-- the JSON string. Pattern matching scanned every string at ten times the cost.
-- A C function call costs Lua more than the few operators around it, so the common path of
-- jstr, jnum and jarr makes as few as it can (numbers become strings by concatenation).
local function jstr(s)
  if s == nil then
    s = "nil"
  else
    s = s .. ""
  end
  local quoted = format("%q", s)
  if #quoted == #s + 2 and utf8_len(s) then
    return quoted
  end
  return '"' .. gsub(valid_utf8(s), '[%c"\\]', escape_char) .. '"'
end

-- Dovecot hands numbers to Lua as floats (uid = 42.0); JSON gets them as integers.
local function jnum(n)
  if n ~= nil and n == n and n % 1 == 0 and n + 0 >= -0x1p63 and n + 0 < 0x1p63 then
    return format("%d", n)
  end
  n = tonumber(n)
  if n == nil or n ~= n or n == math.huge or n == -math.huge then
    return "null"
  end
  return format("%.17g", n)
end

-- Repeated entries are dropped: with a second driver beside this one (e.g. dlog), Dovecot
-- appends each keyword once per registering driver (["$Work","$Work"]); we do not copy that.
local function jarr(t)
  if t == nil or t[1] == nil then
    return "[]"
  end
  if t[2] == nil then
    return "[" .. jstr(t[1]) .. "]"
  end
  local parts, seen = {}, {}
  do
    for _, v in ipairs(t) do
      if not seen[v] then
        seen[v] = true
        parts[#parts + 1] = jstr(v)
      end
    end
  end
  return "[" .. table.concat(parts, ",") .. "]"
end

-- ------------------------------------------------------------------ settings
local function truthy(v)
  v = v:lower()
  return v == "yes" or v == "y" or v == "true" or v == "1"
end

-- Only the settings the transport uses are looked up (each is a plugin_getenv on 2.3).
local function read_config(user)
  local args, getenv = init_args, nil
  if type(args) ~= "table" then
    args = nil
    local ok, fn = pcall(function()
      return user.plugin_getenv
    end)
    getenv = ok and fn or nil
  end
  local function get(key, default)
    local value = nil
    if args ~= nil then
      value = args[key]
      value = value ~= nil and tostring(value) or nil
    elseif getenv ~= nil then
      local ok, v = pcall(getenv, user, "push_notification_bridge_" .. key)
      value = ok and v or nil
    end
    if value == nil or value == "" then
      return default
    end
    return value
  end
  local c = {
    transport = get("transport", "spool"),
    spool = (get("spool", "/var/spool/push-notification"):gsub("/+$", "")),
    status = truthy(get("status", "yes")),
    metadata = truthy(get("metadata", "yes")),
  }
  if c.transport == "http" then
    c.url = get("url", "http://127.0.0.1:8425/v1/transactions")
    c.token = get("token", "")
    c.timeout_msecs = math.tointeger(tonumber(get("timeout_msecs", "1000")) or 1000) or 1000
    c.http_pause_secs = math.tointeger(tonumber(get("http_pause_secs", "10")) or 10) or 10
  end
  return c
end

-- --------------------------------------------------------------- event data
-- Event table keys as Dovecot's Lua driver fills them, the same keys in our event JSON. Dovecot's
-- Lua `subject` is already RFC 2047-decoded, so it travels as subject_utf8 (the raw header is not
-- available to Lua). Strings Dovecot reports as "" for a missing header are left out.
local OPTIONAL_STRINGS = {
  "from", "to", "message_id", "snippet", "from_address", "from_display_name", "to_address", "to_display_name",
}
local ARRAYS = { "flags", "keywords", "flags_old", "keywords_old" }
local SAVED = { MessageNew = true, MessageAppend = true }

local function encode_event(e)
  local f = { '{"name":', jstr(e.name), ',"mailbox":', jstr(e.mailbox) }
  local n = 4
  if e.uid ~= nil then
    f[n + 1], f[n + 2], f[n + 3], f[n + 4] = ',"uid":', jnum(e.uid), ',"uid_validity":', jnum(e.uid_validity)
    n = n + 4
  end
  if e.mailbox_old ~= nil then
    f[n + 1], f[n + 2] = ',"mailbox_old":', jstr(e.mailbox_old)
    n = n + 2
  end
  if SAVED[e.name] then
    for i = 1, #OPTIONAL_STRINGS do
      local key = OPTIONAL_STRINGS[i]
      local v = e[key]
      if v ~= nil and v ~= "" then
        f[n + 1], f[n + 2], f[n + 3], f[n + 4] = ',"', key, '":', jstr(v)
        n = n + 4
      end
    end
    if e.subject ~= nil then
      f[n + 1], f[n + 2] = ',"subject_utf8":', jstr(e.subject)
      n = n + 2
    end
    if e.date ~= nil then
      f[n + 1], f[n + 2], f[n + 3], f[n + 4] = ',"date":', jnum(e.date), ',"tz":', jnum(e.tz or 0)
      n = n + 4
    end
  end
  for i = 1, 4 do
    local key = ARRAYS[i]
    local v = e[key]
    if v ~= nil then
      f[n + 1], f[n + 2], f[n + 3], f[n + 4] = ',"', key, '":', jarr(v)
      n = n + 4
    end
  end
  f[n + 1] = "}"
  return table.concat(f)
end

local USER_STRINGS = { "service", "session_id", "home" }
local USER_NUMBERS = { "uid", "gid", "session_create_time" }
local USER_BOOLS = {
  "nonexistent", "anonymous", "autocreated", "mail_debug", "fuzzy_search", "dsyncing", "admin", "session_restored",
}

local function encode_user(user)
  local f, n = { '{"username":', jstr(user.username) }, 2
  for i = 1, 3 do
    local key = USER_STRINGS[i]
    local v = user[key]
    if v ~= nil then
      f[n + 1], f[n + 2], f[n + 3], f[n + 4] = ',"', key, '":', jstr(v)
      n = n + 4
    end
  end
  for i = 1, 3 do
    local key = USER_NUMBERS[i]
    local v = user[key]
    if v ~= nil then
      f[n + 1], f[n + 2], f[n + 3], f[n + 4] = ',"', key, '":', jnum(math.floor(tonumber(v) or 0))
      n = n + 4
    end
  end
  for i = 1, 8 do
    local key = USER_BOOLS[i]
    local v = user[key]
    if v == true or v == false then
      f[n + 1], f[n + 2], f[n + 3], f[n + 4] = ',"', key, '":', v and "true" or "false"
      n = n + 4
    end
  end
  f[n + 1] = "}"
  return table.concat(f)
end

-- What a transaction reads from one mailbox instance, opened read-only as the OX driver opens
-- its own: the bridge only looks.
--
-- The status snapshot is the mailbox after the change. Saves and flag changes are in the index
-- the moment they commit, so reading it suffices; expunges are only requests in the index log
-- until a sync applies them, so a transaction that expunged (or empties a mailbox being
-- deleted) syncs first, as Dovecot's OX driver does for every delivery and as a script that
-- calls mbox:sync() before mbox:status() sees it.
--
-- The METADATA values are attributes of INBOX, read in one call (nil for a key not set): from
-- the snapshot's instance when the mailbox is INBOX, else from INBOX opened for them alone.
-- chatmail clients set their token as METADATA of the INBOX mailbox (SETMETADATA INBOX
-- (/private/devicetoken ...)), not of the server: it goes under the same key when the server
-- METADATA has none.
local function read_mailbox(box, sync, with_status, with_metadata)
  box:open()
  if sync then
    box:sync()
  end
  local status = nil
  if with_status then
    local s = dovecot.storage
    local st = box:status(s.STATUS_MESSAGES, s.STATUS_RECENT, s.STATUS_UNSEEN, s.STATUS_UIDVALIDITY, s.STATUS_UIDNEXT)
    status = string.format('{"messages":%s,"recent":%s,"unseen":%s,"uidvalidity":%s,"uidnext":%s}',
      jnum(st.messages or 0), jnum(st.recent or 0), jnum(st.unseen or 0), jnum(st.uidvalidity or 0),
      jnum(st.uidnext or 0))
  end
  if with_metadata then
    local ox, device, token, inbox_token =
      box:metadata_get(SERVER_OX_KEY, SERVER_DEVICE_KEY, SERVER_TOKEN_KEY, TOKEN_KEY)
    if token == nil then
      token = inbox_token
    end
    return status, true, ox, device, token
  end
  return status, false
end

-- One mailbox instance, freed whatever happens: pcall's results (ok, status, metadata read, the
-- three values, or ok = false and the error).
local function with_mailbox(user, name, sync, with_status, with_metadata)
  local box = user:mailbox(name, dovecot.storage.MAILBOX_FLAG_READONLY)
  local ok, status, read, ox, device, token = pcall(read_mailbox, box, sync, with_status, with_metadata)
  pcall(box.free, box)
  return ok, status, read, ox, device, token
end

-- Dovecot's METADATA is the truth: the OX key unset goes as "" so the daemon's own store (for
-- senders that forward none) cannot keep push on after doveadm ... unset.
local function metadata_json(ox, device, token)
  local f = { '"metadata":{"', OX_METADATA_KEY, '":', jstr(ox or "") }
  if device ~= nil then
    f[#f + 1] = ',"' .. DEVICE_KEY .. '":' .. jstr(device)
  end
  if token ~= nil then
    f[#f + 1] = ',"' .. TOKEN_KEY .. '":' .. jstr(token)
  end
  f[#f + 1] = "}"
  return table.concat(f)
end

-- ---------------------------------------------------------------- transports
local function new_id(session)
  counter = counter + 1
  return string.format("%d.%s.%d.%08x", os.time(), session, counter, math.random(0, 0x7fffffff))
end

local function write_spool(id, body)
  local name = id .. ".json"
  local tmp = config.spool .. "/tmp/" .. name
  local file, err = io.open(tmp, "wb")
  if not file then
    return false, "cannot write " .. tmp .. ": " .. tostring(err)
  end
  -- Unbuffered: the body goes out in one write(2), and the C library never fstat(2)s the file
  -- to size a buffer it would not need.
  file:setvbuf("no")
  local ok, werr = file:write(body)
  file:close()
  if not ok then
    os.remove(tmp)
    return false, "cannot write " .. tmp .. ": " .. tostring(werr)
  end
  local renamed, rerr = os.rename(tmp, config.spool .. "/new/" .. name)
  if not renamed then
    os.remove(tmp)
    return false, "cannot move " .. name .. " into " .. config.spool .. "/new: " .. tostring(rerr)
  end
  return true
end

local function spool_or_log(id, body, prefix)
  local spooled, err = write_spool(id, body)
  if not spooled then
    log("i_error", prefix .. err .. "; transaction " .. id .. " lost (run push-notification dovecot-config"
      .. " for the spool directory's owner and mode)")
  end
  return spooled
end

-- The http transport lives in its own file (bridge_http.lua here, installed as
-- dovecot-bridge-http.luac and dovecot-bridge-http-source.lua), loaded the first time a
-- transaction goes over http: a spool setup never pays for loading it.
local http_hand_over = nil

local function load_http()
  local chunk = loadfile(DIR .. "dovecot-bridge-http.luac", "b")
    or assert(loadfile(DIR .. "dovecot-bridge-http-source.lua", "t"))
  return chunk(config, spool_or_log, log)
end

local function hand_over(id, body)
  if config.transport == "http" then
    if http_hand_over == nil then
      local ok, result = pcall(load_http)
      http_hand_over = ok and result or false
      if not ok then
        log("i_error", "cannot load the http transport (" .. tostring(result) .. "); spooling instead"
          .. " (rerun push-notification dovecot-config)")
      end
    end
    if http_hand_over then
      return http_hand_over(id, body)
    end
  end
  spool_or_log(id, body, "")
end

-- --------------------------------------------------------- Dovecot callbacks
function script_init(args)
  init_args = args
  return 0
end

function dovecot_lua_notify_begin_txn(user)
  if config == nil then
    local ok, result = pcall(read_config, user)
    if ok then
      config = result
    else
      log("i_error", "cannot read settings: " .. tostring(result))
    end
  end
  return { user = user, events = {}, n = 0, seen = nil, mailbox = nil, has_messages = false, expunged = false }
end

local function add_event(ctx, event)
  local ok, encoded = pcall(encode_event, event)
  if not ok then
    log("i_error", "cannot record " .. tostring(type(event) == "table" and event.name) .. " event: " .. tostring(encoded))
    return
  end
  ctx.mailbox = ctx.mailbox or event.mailbox
  if event.uid ~= nil then
    ctx.has_messages = true
    ctx.expunged = ctx.expunged or event.name == "MessageExpunge"
  else
    -- Dovecot does not de-duplicate mailbox events registered by two drivers (dlog beside
    -- this script gives two MailboxCreate entries); one is the truth, so we keep one.
    local seen = ctx.seen
    if seen == nil then
      seen = {}
      ctx.seen = seen
    elseif seen[encoded] then
      return
    end
    seen[encoded] = true
  end
  local n = ctx.n + 1
  ctx.n = n
  ctx.events[n] = encoded
end

-- The user's JSON and the spool-safe session id, once per user session (one script state can
-- serve several users: Dovecot shares a loaded script between the users of one process that
-- exist at the same time, e.g. the recipients of one LMTP transaction).
local users = {}

local function user_entry(user)
  local key = tostring(user.username) .. "\0" .. tostring(user.session_id)
  local entry = users[key]
  if entry == nil then
    entry = { encode_user(user), (tostring(user.session_id or ""):gsub("[^%w%-]", "_")) }
    users[key] = entry
  end
  return entry
end

local function finish(ctx)
  local user = ctx.user
  local entry = user_entry(user)
  local id = new_id(entry[2])
  local parts = {
    '{"id":"', id, '","user":', entry[1], ',"mailbox":', jstr(ctx.mailbox), ',"success":true,"events":[',
    table.concat(ctx.events, ","), "]",
  }
  local with_status = config.status and ctx.has_messages
  local with_metadata = config.metadata
  local metadata_read, ox, device, token = false, nil, nil, nil
  if with_status then
    local here = with_metadata and ctx.mailbox == "INBOX"
    local ok, status, read, a, b, c = with_mailbox(user, ctx.mailbox, ctx.expunged, true, here)
    if ok then
      parts[#parts + 1] = ',"status":' .. status
      metadata_read, ox, device, token = read, a, b, c
    else
      log("i_warning", "cannot get the status of mailbox " .. tostring(ctx.mailbox) .. ": " .. tostring(status))
    end
  end
  if with_metadata and not metadata_read then
    local ok, err, read, a, b, c = with_mailbox(user, "INBOX", false, false, true)
    if ok then
      metadata_read, ox, device, token = read, a, b, c
    else
      log("i_warning", "cannot read METADATA: " .. tostring(err))
    end
  end
  if metadata_read then
    parts[#parts + 1] = "," .. metadata_json(ox, device, token)
  end
  parts[#parts + 1] = "}\n"
  hand_over(id, table.concat(parts))
end

function dovecot_lua_notify_end_txn(ctx, success)
  -- A rolled-back transaction hands over nothing; neither does one without events.
  if success == false or type(ctx) ~= "table" or ctx.n == 0 or config == nil then
    return
  end
  local ok, err = pcall(finish, ctx)
  if not ok then
    log("i_error", "cannot hand over the transaction: " .. tostring(err))
  end
end

-- Every event goes the same way: one function under the twelve names Dovecot calls.
dovecot_lua_notify_event_flags_clear = add_event
dovecot_lua_notify_event_flags_set = add_event
dovecot_lua_notify_event_mailbox_create = add_event
dovecot_lua_notify_event_mailbox_delete = add_event
dovecot_lua_notify_event_mailbox_rename = add_event
dovecot_lua_notify_event_mailbox_subscribe = add_event
dovecot_lua_notify_event_mailbox_unsubscribe = add_event
dovecot_lua_notify_event_message_append = add_event
dovecot_lua_notify_event_message_expunge = add_event
dovecot_lua_notify_event_message_new = add_event
dovecot_lua_notify_event_message_read = add_event
dovecot_lua_notify_event_message_trash = add_event
