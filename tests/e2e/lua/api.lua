-- The parts of Dovecot's Lua API a published script may lean on, run in Dovecot's own Lua driver
-- and in ours. Per transaction on messages it records how `dovecot`, the user and the mailbox
-- objects look and what mbox:sync() then mbox:status() show, POSTs them with LuaSocket to a URL
-- with credentials in its userinfo, and writes them into METADATA (server and INBOX).
-- Settings (plugin { } in Dovecot 2.3, lua_settings in 2.4 and ours, which script_init
-- receives): api_side, api_out, api_url.

local http = require("socket.http")
local ltn12 = require("ltn12")

local function quote(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

local settings = nil

function script_init(args)
  settings = type(args) == "table" and args or nil
  return 0
end

local function setting(user, key)
  if settings ~= nil and settings[key] ~= nil then
    return settings[key]
  end
  return user:plugin_getenv(key)
end

function dovecot_lua_notify_begin_txn(user)
  return { user = user, mailbox = nil, event = nil }
end

local function record(ctx, event)
  ctx.mailbox = ctx.mailbox or event.mailbox
  ctx.event = ctx.event or event.name
end
dovecot_lua_notify_event_message_new = record
dovecot_lua_notify_event_message_expunge = record

function dovecot_lua_notify_end_txn(ctx, success)
  if ctx.mailbox == nil then
    return -- a transaction without the events above
  end
  local user = ctx.user
  local side = setting(user, "api_side")
  local meta = getmetatable(dovecot)
  local box = user:mailbox(ctx.mailbox)
  box:sync()
  local s = dovecot.storage
  local st = box:status(s.STATUS_MESSAGES, s.STATUS_UNSEEN, s.STATUS_UIDNEXT)
  local facts = {
    '"event":' .. quote(ctx.event),
    '"dovecot_index_is_its_metatable":' .. tostring(meta.__index == meta),
    '"dovecot_metatable_name":' .. quote(meta.__name),
    '"i_info_raw":' .. quote(type(rawget(dovecot, "i_info"))),
    '"i_info_via_index":' .. quote(type(meta.__index.i_info)),
    '"storage_raw":' .. quote(type(rawget(dovecot, "storage"))),
    '"http_raw":' .. quote(type(rawget(dovecot, "http"))),
    '"user_item":' .. quote(type(user.item)),
    '"user_metatable_name":' .. quote(getmetatable(user).__name),
    '"mailbox_item":' .. quote(type(box.item)),
    '"mailbox_metatable_name":' .. quote(getmetatable(box).__name),
    string.format('"messages":%d,"unseen":%d,"uidnext":%d', st.messages, st.unseen, st.uidnext),
  }
  local line = "{" .. table.concat(facts, ",") .. "}"
  local file = assert(io.open(setting(user, "api_out"), "a"))
  file:write(line, "\n")
  file:close()
  http.request({
    url = setting(user, "api_url"),
    method = "POST",
    source = ltn12.source.string(line),
    headers = { ["Content-Type"] = "application/json", ["content-length"] = #line, ["X-Event"] = ctx.event },
    sink = ltn12.sink.null(),
  })
  user:metadata_set("/private/pn-test/" .. side, "messages=" .. string.format("%d", st.messages))
  box:metadata_set("/private/pn-test/" .. side, "uidnext=" .. string.format("%d", st.uidnext))
  box:free()
end
