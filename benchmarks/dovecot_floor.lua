-- The floor any Lua bridge can reach (benchmarks/dovecot_e2e.py, setup e): Dovecot's own
-- push_notification_lua driver with a script that appends one compact JSON line (user,
-- mailbox, event, uid, from, subject, snippet) per transaction to the file named by the
-- plugin setting push_notification_floor_file. No settings beyond that, no METADATA, no status.

local function jstr(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

local path = nil

function dovecot_lua_notify_begin_txn(user)
  path = path or user:plugin_getenv("push_notification_floor_file")
  return { user = user.username, lines = {} }
end

function dovecot_lua_notify_event_message_new(ctx, e)
  ctx.lines[#ctx.lines + 1] = string.format(
    '{"user":%s,"mailbox":%s,"event":%s,"uid":%d,"from":%s,"subject":%s,"snippet":%s}\n',
    jstr(ctx.user), jstr(e.mailbox), jstr(e.name), math.tointeger(e.uid) or 0, jstr(e.from), jstr(e.subject),
    jstr(e.snippet))
end

function dovecot_lua_notify_end_txn(ctx)
  if #ctx.lines > 0 then
    local file = io.open(path, "a")
    if file then
      file:write(table.concat(ctx.lines))
      file:close()
    end
  end
end
