-- push-notification bridge, the http transport (see bridge.lua): POSTs each transaction to the
-- daemon's ingress with a bearer token and a short timeout; on any failure the transaction goes
-- to the spool instead. Loaded by the bridge the first time a transaction goes over http, with
-- the bridge's settings, its spool writer and its logger.
local config, spool_or_log, log = ...

local BRIDGE = "push-notification-bridge"
local http_client = nil

local function safe_url(url)
  -- never log credentials that might be written into the URL
  return (tostring(url):gsub("//[^/@]*@", "//***@"))
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

return function(id, body)
  if http_paused() then
    spool_or_log(id, body, "")
    return
  end
  local ok, sent, why = pcall(post, body)
  if ok and sent then
    return
  end
  local reason = "ingress " .. safe_url(config.url) .. " failed (" .. tostring(ok and why or sent) .. ")"
  pause_http()
  if spool_or_log(id, body, reason .. " and ") then
    log("i_warning", reason .. "; spooled " .. id .. ", spooling for the next " .. config.http_pause_secs .. "s")
  end
end
