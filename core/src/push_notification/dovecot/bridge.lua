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
--   push_notification_bridge_status = yes        status = yes   (mailbox status snapshot; costs a sync)
--   push_notification_bridge_metadata = yes      metadata = yes (read the http-notify and device METADATA)
-- `push-notification dovecot-config` prints these for you, and installs this file as
-- dovecot-bridge-source.lua beside its bytecode (dovecot-bridge.luac) and the loader Dovecot
-- loads (dovecot-bridge.lua, loader.lua here): Dovecot loads the script per mail user, and
-- parsing this source cost more than all the rest (see README.md, "Where the bridge's time goes").

local BRIDGE = "push-notification-bridge"
local OX_METADATA_KEY = "/private/vendor/vendor.dovecot/http-notify"
-- Server METADATA forwarded with each transaction: OX's activation, and a device to wake
-- (ours: a JSON registration; chatmail's: a gateway token).
local METADATA_KEYS = {
  OX_METADATA_KEY,
  "/private/vendor/vendor.dovecot/push-device",
  "/private/devicetoken",
}
-- chatmail clients set their token as METADATA of the INBOX mailbox (SETMETADATA INBOX
-- (/private/devicetoken ...)), not of the server: it goes under the same key when the server
-- METADATA has none (read only from an INBOX the status snapshot opened anyway).
local DEVICETOKEN = 3 -- its place in METADATA_KEYS
-- The same keys as mailbox attributes of INBOX (user:metadata_get adds this prefix).
local SERVER_PREFIX = "/private/vendor/vendor.dovecot/pvt/server"
local SERVER_KEYS = {}
for i, key in ipairs(METADATA_KEYS) do
  SERVER_KEYS[i] = SERVER_PREFIX .. key:sub(#"/private" + 1)
end
local DEFAULTS = {
  transport = "spool",
  spool = "/var/spool/push-notification",
  url = "http://127.0.0.1:8425/v1/transactions",
  token = "",
  timeout_msecs = "1000",
  http_pause_secs = "10",
  status = "yes",
  metadata = "yes",
}

local init_args = nil -- 2.4 passes lua_settings to script_init
local config = nil -- read once per script state (Dovecot loads the script per mail user)
local http_client = nil
local counter = 0

-- ------------------------------------------------------------------ logging
local function log(level, message)
  pcall(function()
    local fn = dovecot[level] or dovecot.i_error
    fn(BRIDGE .. ": " .. message)
  end)
end

local function safe_url(url)
  -- never log credentials that might be written into the URL
  return (tostring(url):gsub("//[^/@]*@", "//***@"))
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
local function jstr(s)
  if type(s) ~= "string" then
    s = tostring(s)
  end
  local quoted = format("%q", s)
  if #quoted == #s + 2 and utf8_len(s) then
    return quoted
  end
  return '"' .. gsub(valid_utf8(s), '[%c"\\]', escape_char) .. '"'
end

-- Dovecot hands numbers to Lua as floats (uid = 42.0); JSON gets them as integers.
local function jnum(n)
  n = tonumber(n)
  if n == nil or n ~= n or n == math.huge or n == -math.huge then
    return "null"
  end
  local i = math.tointeger(n)
  if i then
    return string.format("%d", i)
  end
  return string.format("%.17g", n)
end

-- Repeated entries are dropped: with a second driver beside this one (e.g. dlog), Dovecot
-- appends each keyword once per registering driver (["$Work","$Work"]); we do not copy that.
local function jarr(t)
  if type(t) ~= "table" or t[1] == nil then
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
  v = tostring(v):lower()
  return v == "yes" or v == "y" or v == "true" or v == "1"
end

local function read_config(user)
  local c = {}
  local getenv = nil
  pcall(function()
    getenv = user.plugin_getenv
  end)
  for key, default in pairs(DEFAULTS) do
    local value = nil
    if type(init_args) == "table" and init_args[key] ~= nil then
      value = tostring(init_args[key])
    elseif getenv ~= nil then
      local ok, v = pcall(getenv, user, "push_notification_bridge_" .. key)
      if ok and v ~= nil and v ~= "" then
        value = v
      end
    end
    c[key] = value or default
  end
  c.timeout_msecs = math.tointeger(tonumber(c.timeout_msecs) or 1000) or 1000
  c.http_pause_secs = math.tointeger(tonumber(c.http_pause_secs) or 10) or 10
  c.status = truthy(c.status)
  c.metadata = truthy(c.metadata)
  c.spool = c.spool:gsub("/+$", "")
  return c
end

-- --------------------------------------------------------------- event data
-- Event table keys as Dovecot's Lua driver fills them → our event JSON keys. Dovecot's Lua
-- `subject` is already RFC 2047-decoded, so it travels as subject_utf8 (the raw header is not
-- available to Lua). Strings Dovecot reports as "" for a missing header are left out.
local OPTIONAL_STRINGS = {
  { "from", "from" }, { "to", "to" }, { "message_id", "message_id" }, { "snippet", "snippet" },
  { "from_address", "from_address" }, { "from_display_name", "from_display_name" },
  { "to_address", "to_address" }, { "to_display_name", "to_display_name" },
}
local ARRAYS = { "flags", "keywords", "flags_old", "keywords_old" }
local SAVED = { MessageNew = true, MessageAppend = true }

local function encode_event(e)
  local f = { '"name":' .. jstr(e.name), '"mailbox":' .. jstr(e.mailbox) }
  if e.uid ~= nil then
    f[#f + 1] = '"uid":' .. jnum(e.uid)
    f[#f + 1] = '"uid_validity":' .. jnum(e.uid_validity)
  end
  if e.mailbox_old ~= nil then
    f[#f + 1] = '"mailbox_old":' .. jstr(e.mailbox_old)
  end
  if SAVED[e.name] then
    for _, pair in ipairs(OPTIONAL_STRINGS) do
      local v = e[pair[1]]
      if v ~= nil and v ~= "" then
        f[#f + 1] = '"' .. pair[2] .. '":' .. jstr(v)
      end
    end
    if e.subject ~= nil then
      f[#f + 1] = '"subject_utf8":' .. jstr(e.subject)
    end
    if e.date ~= nil then
      f[#f + 1] = '"date":' .. jnum(e.date)
      f[#f + 1] = '"tz":' .. jnum(e.tz or 0)
    end
  end
  for _, key in ipairs(ARRAYS) do
    if e[key] ~= nil then
      f[#f + 1] = '"' .. key .. '":' .. jarr(e[key])
    end
  end
  return "{" .. table.concat(f, ",") .. "}"
end

local USER_STRINGS = { "service", "session_id", "home" }
local USER_NUMBERS = { "uid", "gid", "session_create_time" }
local USER_BOOLS = {
  "nonexistent", "anonymous", "autocreated", "mail_debug", "fuzzy_search", "dsyncing", "admin", "session_restored",
}

local function encode_user(user)
  local f = { '"username":' .. jstr(user.username) }
  for _, key in ipairs(USER_STRINGS) do
    local v = user[key]
    if v ~= nil then
      f[#f + 1] = '"' .. key .. '":' .. jstr(v)
    end
  end
  for _, key in ipairs(USER_NUMBERS) do
    local v = user[key]
    if v ~= nil then
      f[#f + 1] = '"' .. key .. '":' .. jnum(math.floor(tonumber(v) or 0))
    end
  end
  for _, key in ipairs(USER_BOOLS) do
    local v = user[key]
    if type(v) == "boolean" then
      f[#f + 1] = '"' .. key .. '":' .. tostring(v)
    end
  end
  return "{" .. table.concat(f, ",") .. "}"
end

-- The mailbox after the change, from a fresh instance. Saves and flag changes are in the index
-- the moment they commit, so reading it suffices; expunges are only requests in the index log
-- until a sync applies them, so a transaction that expunged (or empties a mailbox being
-- deleted) syncs first, as Dovecot's OX driver does for every delivery and as a script that
-- calls mbox:sync() before mbox:status() sees it. Opened read-only, as the OX driver opens its
-- instance: the bridge only looks. With `with_metadata` (the mailbox is INBOX, where Dovecot
-- keeps server METADATA) the METADATA value is read from the same open instance: what
-- user:metadata_get does, without opening INBOX a second time.
local function status_snapshot(user, mailbox, sync, with_metadata)
  local box = user:mailbox(mailbox, dovecot.storage.MAILBOX_FLAG_READONLY)
  local ok, result, value = pcall(function()
    box:open()
    if sync then
      box:sync()
    end
    local s = dovecot.storage
    local status = box:status(s.STATUS_MESSAGES, s.STATUS_RECENT, s.STATUS_UNSEEN, s.STATUS_UIDVALIDITY, s.STATUS_UIDNEXT)
    if with_metadata then
      local values = {}
      for i, key in ipairs(SERVER_KEYS) do
        values[i] = box:metadata_get(key)
      end
      if values[DEVICETOKEN] == nil then
        values[DEVICETOKEN] = box:metadata_get(METADATA_KEYS[DEVICETOKEN])
      end
      return status, values
    end
    return status, nil
  end)
  pcall(box.free, box)
  if not ok then
    error(result, 0)
  end
  return string.format('{"messages":%s,"recent":%s,"unseen":%s,"uidvalidity":%s,"uidnext":%s}',
    jnum(result.messages or 0), jnum(result.recent or 0), jnum(result.unseen or 0),
    jnum(result.uidvalidity or 0), jnum(result.uidnext or 0)), value
end

-- ---------------------------------------------------------------- transports
local function new_id(user)
  counter = counter + 1
  local session = tostring(user.session_id or ""):gsub("[^%w%-]", "_")
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

local function get_http_client()
  if http_client ~= nil then
    return http_client
  end
  local ua = BRIDGE .. "/1"
  -- 2.3.19 key names first; 2.4 rejects them and takes its http_client_* names instead.
  local ok, client = pcall(dovecot.http.client, {
    request_timeout_msecs = config.timeout_msecs,
    connect_timeout_msecs = config.timeout_msecs,
    max_attempts = 1,
    user_agent = ua,
  })
  if not ok then
    ok, client = pcall(dovecot.http.client, {
      request_timeout = config.timeout_msecs .. "ms",
      connect_timeout = config.timeout_msecs .. "ms",
      request_max_attempts = 1,
      user_agent = ua,
    })
  end
  if not ok then
    error("cannot create the HTTP client: " .. tostring(client), 0)
  end
  http_client = client
  return client
end

local function post(body)
  local client = get_http_client()
  local request = client:request({ url = config.url, method = "POST" })
  request:add_header("Content-Type", "application/json")
  if config.token ~= "" then
    request:add_header("Authorization", "Bearer " .. config.token)
  end
  request:set_payload(body)
  local response = request:submit()
  local status = response:status()
  if status >= 200 and status < 300 then
    return true
  end
  return false, string.format("%d %s", status, tostring(response:reason()))
end

-- After a failed POST, every process spools directly for http_pause_secs (a marker file in the
-- spool holds the time to try again): a hanging ingress costs one timeout, not one per mail.
local function http_paused()
  local file = io.open(config.spool .. "/.http-paused", "rb")
  if not file then
    return false
  end
  local until_time = tonumber(file:read("a"))
  file:close()
  return until_time ~= nil and os.time() < until_time
end

local function pause_http()
  if config.http_pause_secs <= 0 then
    return
  end
  local file = io.open(config.spool .. "/.http-paused", "wb")
  if file then
    file:write(tostring(os.time() + config.http_pause_secs))
    file:close()
  end
end

local function spool_or_log(id, body, prefix)
  local spooled, err = write_spool(id, body)
  if not spooled then
    log("i_error", prefix .. err .. "; transaction " .. id .. " lost (run push-notification dovecot-config"
      .. " for the spool directory's owner and mode)")
  end
  return spooled
end

local function hand_over(id, body)
  if config.transport == "http" and not http_paused() then
    local ok, sent, why = pcall(post, body)
    if ok and sent then
      return
    end
    local reason = "ingress " .. safe_url(config.url) .. " failed (" .. tostring(ok and why or sent) .. ")"
    pause_http()
    if spool_or_log(id, body, reason .. " and ") then
      log("i_warning", reason .. "; spooled " .. id .. ", spooling for the next "
        .. config.http_pause_secs .. "s")
    end
    return
  end
  spool_or_log(id, body, "")
end

-- --------------------------------------------------------- Dovecot callbacks
function script_init(args)
  init_args = args
  return 0
end

function dovecot_lua_notify_begin_txn(user)
  local ctx = { user = user, events = {}, seen = {}, mailbox = nil, has_messages = false, expunged = false }
  if config == nil then
    local ok, result = pcall(read_config, user)
    if ok then
      config = result
    else
      log("i_error", "cannot read settings: " .. tostring(result))
    end
  end
  return ctx
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
  elseif ctx.seen[encoded] then
    -- Dovecot does not de-duplicate mailbox events registered by two drivers (dlog beside
    -- this script gives two MailboxCreate entries); one is the truth, so we keep one.
    return
  else
    ctx.seen[encoded] = true
  end
  ctx.events[#ctx.events + 1] = encoded
end

-- The user's JSON, once per user session (one script state can serve several users: Dovecot
-- shares a loaded script between the users of one process, e.g. LMTP recipients).
local user_json = {}

local function user_object(user)
  local key = tostring(user.username) .. "\0" .. tostring(user.session_id)
  local encoded = user_json[key]
  if encoded == nil then
    encoded = encode_user(user)
    user_json[key] = encoded
  end
  return encoded
end

local function finish(ctx)
  local user = ctx.user
  local id = new_id(user)
  local parts = {
    '"id":' .. jstr(id),
    '"user":' .. user_object(user),
    '"mailbox":' .. jstr(ctx.mailbox),
    '"success":true',
    '"events":[' .. table.concat(ctx.events, ",") .. "]",
  }
  local metadata_read, metadata = false, nil
  if config.status and ctx.has_messages then
    local with_metadata = config.metadata and ctx.mailbox == "INBOX"
    local ok, status, value = pcall(status_snapshot, user, ctx.mailbox, ctx.expunged, with_metadata)
    if ok then
      parts[#parts + 1] = '"status":' .. status
      metadata_read, metadata = with_metadata, value
    else
      log("i_warning", "cannot get the status of mailbox " .. tostring(ctx.mailbox) .. ": " .. tostring(status))
    end
  end
  if config.metadata and not metadata_read then
    metadata = {}
    for i, key in ipairs(METADATA_KEYS) do
      local ok, value = pcall(user.metadata_get, user, key)
      if ok then
        metadata[i] = value
      else
        metadata[i] = false
        log("i_warning", "cannot read METADATA " .. key .. ": " .. tostring(value))
      end
    end
  end
  if metadata ~= nil then
    local found = {}
    for i, key in ipairs(METADATA_KEYS) do
      local value = metadata[i]
      -- Dovecot's METADATA is the truth: the OX key unset goes as "" so the daemon's own
      -- store (for senders that forward none) cannot keep push on after doveadm ... unset.
      if value ~= false and (value ~= nil or key == OX_METADATA_KEY) then
        found[#found + 1] = jstr(key) .. ":" .. jstr(value or "")
      end
    end
    if #found > 0 then
      parts[#parts + 1] = '"metadata":{' .. table.concat(found, ",") .. "}"
    end
  end
  hand_over(id, "{" .. table.concat(parts, ",") .. "}\n")
end

function dovecot_lua_notify_end_txn(ctx, success)
  -- A rolled-back transaction hands over nothing; neither does one without events.
  if success == false or type(ctx) ~= "table" or #ctx.events == 0 or config == nil then
    return
  end
  local ok, err = pcall(finish, ctx)
  if not ok then
    log("i_error", "cannot hand over the transaction: " .. tostring(err))
  end
end

function dovecot_lua_notify_event_flags_clear(ctx, event) add_event(ctx, event) end
function dovecot_lua_notify_event_flags_set(ctx, event) add_event(ctx, event) end
function dovecot_lua_notify_event_mailbox_create(ctx, event) add_event(ctx, event) end
function dovecot_lua_notify_event_mailbox_delete(ctx, event) add_event(ctx, event) end
function dovecot_lua_notify_event_mailbox_rename(ctx, event) add_event(ctx, event) end
function dovecot_lua_notify_event_mailbox_subscribe(ctx, event) add_event(ctx, event) end
function dovecot_lua_notify_event_mailbox_unsubscribe(ctx, event) add_event(ctx, event) end
function dovecot_lua_notify_event_message_append(ctx, event) add_event(ctx, event) end
function dovecot_lua_notify_event_message_expunge(ctx, event) add_event(ctx, event) end
function dovecot_lua_notify_event_message_new(ctx, event) add_event(ctx, event) end
function dovecot_lua_notify_event_message_read(ctx, event) add_event(ctx, event) end
function dovecot_lua_notify_event_message_trash(ctx, event) add_event(ctx, event) end
