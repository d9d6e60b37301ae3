-- The luarocks modules Dovecot admins' scripts `require`, provided inside the driver:
-- ltn12 and socket.url in Lua (same behaviour as LuaSocket 3.0), socket.http, cjson and
-- JSON (json-lua) backed by the Python `host` (stdlib json, the driver's HTTP client).
local host, wire = ...
local unpack = table.unpack or unpack
local modules = {}

-- ------------------------------------------------------------------ ltn12
local ltn12 = {source = {}, sink = {}, filter = {}, pump = {}, BLOCKSIZE = 2048, _VERSION = "LTN12 1.0.3"}
modules["ltn12"] = ltn12

function ltn12.source.empty() return function() return nil end end
function ltn12.source.error(err) return function() return nil, err end end
function ltn12.source.string(s)
  if not s then return ltn12.source.empty() end
  local i = 1
  return function()
    local chunk = string.sub(s, i, i + ltn12.BLOCKSIZE - 1)
    i = i + ltn12.BLOCKSIZE
    if chunk ~= "" then return chunk end
    return nil
  end
end
function ltn12.source.table(t)
  local i = 0
  return function() i = i + 1; return t[i] end
end
function ltn12.source.file(handle, io_err)
  if not handle then return ltn12.source.error(io_err or "unable to open file") end
  return function()
    local chunk = handle:read(ltn12.BLOCKSIZE)
    if not chunk then handle:close() end
    return chunk
  end
end
function ltn12.source.chain(src, f)
  return function()
    local chunk, err = src()
    if chunk == nil and err then return nil, err end
    return f(chunk)
  end
end
function ltn12.sink.table(t)
  t = t or {}
  return function(chunk, err)
    if chunk then table.insert(t, chunk) end
    return 1
  end, t
end
function ltn12.sink.null() return function() return 1 end end
function ltn12.sink.error(err) return function() return nil, err end end
function ltn12.sink.file(handle, io_err)
  if not handle then return ltn12.sink.error(io_err or "unable to open file") end
  return function(chunk, err)
    if not chunk then handle:close(); return 1 end
    return handle:write(chunk)
  end
end
function ltn12.sink.chain(f, snk)
  return function(chunk, err) return snk(f(chunk), err) end
end
function ltn12.filter.chain(...)
  local filters = {...}
  return function(chunk)
    for _, f in ipairs(filters) do chunk = f(chunk) end
    return chunk
  end
end
function ltn12.pump.step(src, snk)
  local chunk, src_err = src()
  local ret, snk_err = snk(chunk, src_err)
  if chunk and ret then return 1 end
  return nil, src_err or snk_err
end
function ltn12.pump.all(src, snk, step)
  step = step or ltn12.pump.step
  while true do
    local ret, err = step(src, snk)
    if not ret then
      if err then return nil, err end
      return 1
    end
  end
end

-- ------------------------------------------------------------------ socket.url
local url = {_VERSION = "URL 1.0.3"}
modules["socket.url"] = url

function url.escape(s)
  return (string.gsub(s, "([^A-Za-z0-9_])", function(c)
    return string.format("%%%02x", string.byte(c))
  end))
end
function url.unescape(s)
  return (string.gsub(s, "%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end
function url.parse(u, default)
  local parsed = {}
  for k, v in pairs(default or parsed) do parsed[k] = v end
  if not u or u == "" then return nil, "invalid url" end
  u = string.gsub(u, "#(.*)$", function(f) parsed.fragment = f; return "" end)
  u = string.gsub(u, "^([%w][%w%+%-%.]*)%:", function(s) parsed.scheme = s; return "" end)
  u = string.gsub(u, "^//([^/]*)", function(n) parsed.authority = n; return "" end)
  u = string.gsub(u, "%?(.*)", function(q) parsed.query = q; return "" end)
  u = string.gsub(u, "%;(.*)", function(p) parsed.params = p; return "" end)
  if u ~= "" then parsed.path = u end
  local authority = parsed.authority
  if not authority then return parsed end
  authority = string.gsub(authority, "^([^@]*)@", function(ui) parsed.userinfo = ui; return "" end)
  authority = string.gsub(authority, ":([^:%]]*)$", function(p) parsed.port = p; return "" end)
  if authority ~= "" then parsed.host = string.match(authority, "^%[(.+)%]$") or authority end
  local userinfo = parsed.userinfo
  if not userinfo then return parsed end
  userinfo = string.gsub(userinfo, ":([^:]*)$", function(p) parsed.password = p; return "" end)
  parsed.user = userinfo
  return parsed
end
function url.build(parsed)
  local u = parsed.path or ""
  if parsed.params then u = u .. ";" .. parsed.params end
  if parsed.query then u = u .. "?" .. parsed.query end
  local authority = parsed.authority
  if parsed.host then
    authority = parsed.host
    if string.find(authority, ":") then authority = "[" .. authority .. "]" end
    if parsed.port then authority = authority .. ":" .. tostring(parsed.port) end
    local userinfo = parsed.userinfo
    if parsed.user then
      userinfo = parsed.user
      if parsed.password then userinfo = userinfo .. ":" .. parsed.password end
    end
    if userinfo then authority = userinfo .. "@" .. authority end
  end
  if authority then u = "//" .. authority .. u end
  if parsed.scheme then u = parsed.scheme .. ":" .. u end
  if parsed.fragment then u = u .. "#" .. parsed.fragment end
  return u
end
function url.parse_path(path)
  local parsed = {}
  path = path or ""
  string.gsub(path, "([^/]+)", function(s) table.insert(parsed, url.unescape(s)) end)
  parsed.is_absolute = string.sub(path, 1, 1) == "/" and 1 or nil
  parsed.is_directory = string.sub(path, -1) == "/" and 1 or nil
  return parsed
end
function url.build_path(parsed, unsafe)
  local parts = {}
  for i = 1, #parsed do parts[i] = unsafe and parsed[i] or url.escape(parsed[i]) end
  local path = table.concat(parts, "/")
  if parsed.is_absolute then path = "/" .. path end
  if parsed.is_directory and #parsed > 0 then path = path .. "/" end
  return path
end

-- ------------------------------------------------------------------ socket, socket.http
local socket = {_VERSION = "LuaSocket 3.0.0"}
modules["socket"] = socket
function socket.gettime() return host.now() end
function socket.sleep(seconds) host.sleep(seconds) end

local http = {TIMEOUT = 60, USERAGENT = socket._VERSION, PROXY = nil}
modules["socket.http"] = http
socket.http = http
socket.url = url

-- LuaSocket's socket.headers: the capitalisation it writes header names in (others go out
-- lowercased, as LuaSocket lowercases every name it is given).
local headers_module = {canonic = {}}
modules["socket.headers"] = headers_module
socket.headers = headers_module
for _, name in ipairs({
  "Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Action",
  "Alternate-Recipient", "Age", "Allow", "Arrival-Date", "Authorization", "Bcc", "Cache-Control", "Cc",
  "Comments", "Connection", "Content-Description", "Content-Disposition", "Content-Encoding", "Content-ID",
  "Content-Language", "Content-Length", "Content-Location", "Content-MD5", "Content-Range",
  "Content-Transfer-Encoding", "Content-Type", "Cookie", "Date", "Diagnostic-Code", "DSN-Gateway", "ETag",
  "Expect", "Expires", "Final-Log-ID", "Final-Recipient", "From", "Host", "If-Match", "If-Modified-Since",
  "If-None-Match", "If-Range", "If-Unmodified-Since", "In-Reply-To", "Keywords", "Last-Attempt-Date",
  "Last-Modified", "Location", "Max-Forwards", "Message-ID", "MIME-Version", "Original-Envelope-ID",
  "Original-Recipient", "Pragma", "Proxy-Authenticate", "Proxy-Authorization", "Range", "Received",
  "Received-From-MTA", "References", "Referer", "Remote-MTA", "Reply-To", "Reporting-MTA", "Resent-Bcc",
  "Resent-Cc", "Resent-Date", "Resent-From", "Resent-Message-ID", "Resent-Reply-To", "Resent-Sender",
  "Resent-To", "Retry-After", "Return-Path", "Sender", "Server", "SMTP-Remote-Recipient", "Status",
  "Subject", "TE", "To", "Trailer", "Transfer-Encoding", "Upgrade", "User-Agent", "Vary", "Via", "Warning",
  "Will-Retry-Until", "WWW-Authenticate", "X-Mailer",
}) do
  headers_module.canonic[string.lower(name)] = name
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for j = 1, 4 do
      local index = math.floor(n / 64 ^ (4 - j)) % 64
      chars[j] = string.sub(B64, index + 1, index + 1)
    end
    if not b then chars[3] = "=" end
    if not c then chars[4] = "=" end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

-- The headers LuaSocket's adjustheaders sends: its defaults, Basic credentials from the URL's
-- userinfo (or the request's user/password), then the script's own, every name lowercased and
-- written as socket.headers.canonic spells it. Host is added by the HTTP client (host[:port]).
local function lua_socket_headers(req)
  local parsed = url.parse(req.url) or {}
  local lower = {["user-agent"] = http.USERAGENT, ["connection"] = "close, TE", ["te"] = "trailers"}
  local user, password = req.user or parsed.user, req.password or parsed.password
  if user and password then
    lower["authorization"] = "Basic " .. b64(user .. ":" .. url.unescape(password))
  end
  for name, value in pairs(req.headers or {}) do
    lower[string.lower(tostring(name))] = tostring(value)
  end
  local headers = {}
  for name, value in pairs(lower) do
    table.insert(headers, {headers_module.canonic[name] or name, value})
  end
  return headers
end

local function http_send(req)
  local body = nil
  if req.source then
    local parts = {}
    local ok, err = ltn12.pump.all(req.source, (ltn12.sink.table(parts)))
    if not ok then return nil, err end
    body = table.concat(parts)
  end
  local wire_body, body_hex = wire(body)
  local r = host.http_request(req.method or "GET", req.url, lua_socket_headers(req), wire_body, body_hex,
    http.TIMEOUT * 1000, http.TIMEOUT * 1000, 1, nil, false)
  if r.error then return nil, r.error end
  if req.sink then
    local ok, err = ltn12.pump.all(ltn12.source.string(r.payload), req.sink)
    if not ok then return nil, err end
  end
  return 1, r.status, r.headers, r.status_line
end

function http.request(reqt, body)
  if type(reqt) == "string" then
    local parts = {}
    local req = {url = reqt, sink = (ltn12.sink.table(parts))}
    if body then
      req.method = "POST"
      req.source = ltn12.source.string(body)
      req.headers = {["content-length"] = string.len(body), ["content-type"] = "application/x-www-form-urlencoded"}
    end
    local ok, code, headers, status = http_send(req)
    if not ok then return nil, code end
    return table.concat(parts), code, headers, status
  end
  if type(reqt) ~= "table" or reqt.url == nil then error("invalid request: url missing", 2) end
  return http_send(reqt)
end

-- ------------------------------------------------------------------ cjson
local cjson = {_NAME = "cjson", _VERSION = "2.1.0"}
cjson.null = setmetatable({}, {__tostring = function() return "userdata: (nil)" end, __name = "cjson.null"})
modules["cjson"] = cjson
function cjson.encode(value)
  local text, err = host.json_encode(value, "cjson", cjson.null)
  if text == nil then error(err, 2) end
  return text
end
function cjson.decode(text)
  if type(text) ~= "string" then error("bad argument #1 to 'decode' (string expected, got " .. type(text) .. ")", 2) end
  local value, err = host.json_decode(text, "cjson", cjson.null)
  if err ~= nil then error(err, 2) end
  return value
end
function cjson.new() return cjson end
function cjson.encode_sparse_array() end
function cjson.encode_empty_table_as_object() end
function cjson.encode_keep_buffer() end
function cjson.encode_max_depth() end
function cjson.decode_max_depth() end
function cjson.encode_number_precision() end
function cjson.encode_invalid_numbers() end
function cjson.decode_invalid_numbers() end
local cjson_safe = setmetatable({}, {__index = cjson})
function cjson_safe.encode(value)
  local text, err = host.json_encode(value, "cjson", cjson.null)
  if text == nil then return nil, err end
  return text
end
function cjson_safe.decode(text)
  local value, err = host.json_decode(tostring(text), "cjson", cjson.null)
  if err ~= nil then return nil, err end
  return value
end
modules["cjson.safe"] = cjson_safe

-- ------------------------------------------------------------------ JSON (json-lua, JSON.lua)
local JSON = {VERSION = "20170927.26"}
modules["JSON"] = JSON
function JSON:encode(value, etc, options)
  local text, err = host.json_encode(value, "jsonlua", nil)
  if text == nil then self:onEncodeError(err, etc) end
  return text
end
function JSON:encode_pretty(value, etc, options)
  local text, err = host.json_encode(value, "jsonlua-pretty", nil)
  if text == nil then self:onEncodeError(err, etc) end
  return text
end
function JSON:decode(text, etc, options)
  if type(text) ~= "string" then
    self:onDecodeError("expected string argument to JSON:decode()", text, nil, etc)
    return nil
  end
  local value, err = host.json_decode(text, "jsonlua", nil)
  if err ~= nil then self:onDecodeError(err, text, nil, etc); return nil end
  return value
end
function JSON:onDecodeError(message, text, location, etc) error(message, 3) end
function JSON:onEncodeError(message, etc) error(message, 3) end
function JSON:new(args) return setmetatable(args or {}, {__index = self}) end

local names = {}
for name in pairs(modules) do table.insert(names, name) end
table.sort(names)
return modules, table.concat(names, ", ")
