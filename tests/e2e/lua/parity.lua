-- Records every callback's arguments as JSON lines, in Dovecot's Lua driver and in ours.
-- The output file comes from the setting parity_out (plugin { } in 2.3, lua_settings in ours).

local counter = 0

local function encode(v)
  local t = type(v)
  if t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
  elseif t == "number" then
    return '"number:' .. tostring(v) .. '"' -- keeps Dovecot's float-ness ("42.0")
  elseif t == "boolean" or t == "nil" then
    return tostring(v)
  elseif t == "table" then
    if next(v) == nil or #v > 0 then
      local parts = {}
      for i, item in ipairs(v) do parts[i] = encode(item) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = encode(k) .. ":" .. encode(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return '"' .. t .. '"'
end

local function write(ctx, kind, data)
  local file = assert(io.open(ctx.out, "a"))
  file:write(encode({ txn = ctx.txn, kind = kind, data = data }), "\n")
  file:close()
end

function script_init()
  return 0
end

function dovecot_lua_notify_begin_txn(user)
  counter = counter + 1
  local ctx = { out = user:plugin_getenv("parity_out"), txn = tostring(user.session_id) .. "/" .. counter }
  write(ctx, "begin", {
    username = user.username, service = user.service, session_id = user.session_id, home = user.home,
    uid = user.uid, gid = user.gid, text = tostring(user),
  })
  return ctx
end

function dovecot_lua_notify_end_txn(ctx, success)
  write(ctx, "end", { success = success })
end

local function handler(name)
  return function(ctx, event) write(ctx, name, event) end
end

dovecot_lua_notify_event_flags_clear = handler("flags_clear")
dovecot_lua_notify_event_flags_set = handler("flags_set")
dovecot_lua_notify_event_mailbox_create = handler("mailbox_create")
dovecot_lua_notify_event_mailbox_delete = handler("mailbox_delete")
dovecot_lua_notify_event_mailbox_rename = handler("mailbox_rename")
dovecot_lua_notify_event_mailbox_subscribe = handler("mailbox_subscribe")
dovecot_lua_notify_event_mailbox_unsubscribe = handler("mailbox_unsubscribe")
dovecot_lua_notify_event_message_append = handler("message_append")
dovecot_lua_notify_event_message_expunge = handler("message_expunge")
dovecot_lua_notify_event_message_new = handler("message_new")
dovecot_lua_notify_event_message_read = handler("message_read")
dovecot_lua_notify_event_message_trash = handler("message_trash")
