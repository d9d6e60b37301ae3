-- A script in the style admins publish: opt-in through METADATA, mailbox status in every
-- handler, a JSON body built with cjson, sent with socket.http.
local cjson = require "cjson"
local http = require "socket.http"
local ltn12 = require "ltn12"

local OPTIN = "/private/vendor/vendor.example/push-optin"

function script_init()
  return 0
end

function dovecot_lua_notify_begin_txn(user)
  return {user = user, enabled = user:metadata_get(OPTIN) == "yes", ep = user:plugin_getenv("push_url"), events = {}}
end

local function collect(ctx, event)
  if not ctx.enabled then return end
  local mbox = ctx.user:mailbox(event.mailbox)
  mbox:sync()
  local status = mbox:status(dovecot.storage.STATUS_MESSAGES, dovecot.storage.STATUS_UNSEEN)
  mbox:free()
  table.insert(ctx.events, {
    event = event.name, mailbox = event.mailbox, uid = event.uid,
    subject = event.subject, from = event.from_address,
    messages = status.messages, unseen = status.unseen,
  })
end

function dovecot_lua_notify_event_message_new(ctx, event) collect(ctx, event) end
function dovecot_lua_notify_event_message_read(ctx, event) collect(ctx, event) end
function dovecot_lua_notify_event_message_expunge(ctx, event) collect(ctx, event) end

function dovecot_lua_notify_end_txn(ctx, success)
  if not success or #ctx.events == 0 then return end
  local body = cjson.encode({user = ctx.user.username, events = ctx.events})
  local reply = {}
  local ok, code = http.request{
    url = ctx.ep, method = "POST",
    source = ltn12.source.string(body), sink = ltn12.sink.table(reply),
    headers = {["content-type"] = "application/json", ["content-length"] = #body},
  }
  if not ok or code ~= 200 then
    dovecot.i_error("push to " .. ctx.ep .. " failed: " .. tostring(code))
  else
    ctx.user:metadata_set("/private/vendor/vendor.example/push-last", table.concat(reply))
  end
end
