-- Records one JSON line per transaction: the service that made the change, its events and,
-- for a transaction on messages, what mbox:sync() then mbox:status() show of its mailbox.
-- Runs in Dovecot's own Lua driver and in ours; the output file is the setting services_out
-- (2.3 plugin { }, 2.4 and ours lua_settings, which script_init receives).

local out = nil

local function quote(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function script_init(settings)
  if type(settings) == "table" then
    out = settings.services_out
  end
  return 0
end

function dovecot_lua_notify_begin_txn(user)
  return { user = user, events = {}, mailbox = nil, messages = false }
end

local function record(ctx, event)
  ctx.mailbox = ctx.mailbox or event.mailbox
  local text = quote(event.name) .. "," .. quote(event.mailbox)
  if event.uid ~= nil then
    ctx.messages = true
    text = text .. "," .. string.format("%d", math.floor(event.uid))
  end
  ctx.events[#ctx.events + 1] = "[" .. text .. "]"
end

local function status_after_sync(user, name)
  local box = user:mailbox(name)
  box:sync()
  local s = dovecot.storage
  local st = box:status(s.STATUS_MESSAGES, s.STATUS_UNSEEN, s.STATUS_UIDNEXT)
  box:free()
  return string.format('{"messages":%d,"unseen":%d,"uidnext":%d}', st.messages, st.unseen, st.uidnext)
end

function dovecot_lua_notify_end_txn(ctx, success)
  local user = ctx.user
  local fields = {
    '"service":' .. quote(user.service),
    '"user":' .. quote(user.username),
    '"events":[' .. table.concat(ctx.events, ",") .. "]",
  }
  if ctx.messages then
    fields[#fields + 1] = '"status":' .. status_after_sync(user, ctx.mailbox)
  end
  local file = assert(io.open(out or user:plugin_getenv("services_out"), "a"))
  file:write("{" .. table.concat(fields, ",") .. "}\n")
  file:close()
end

for _, name in ipairs({
  "flags_clear", "flags_set", "mailbox_create", "mailbox_delete", "mailbox_rename", "mailbox_subscribe",
  "mailbox_unsubscribe", "message_append", "message_expunge", "message_new", "message_read", "message_trash",
}) do
  _G["dovecot_lua_notify_event_" .. name] = record
end
