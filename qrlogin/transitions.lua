-- The QR state machine: the one place where the rules of the contract live.
--
-- Every call runs atomically inside Redis. A call first turns an overdue QR into
-- QRCODE_EXPIRE (the Redis clock is the only clock), then performs its action.
-- Every transition bumps `version` and publishes the new public view on the QR's
-- channel in the same atomic step, in flask-sse's message layout
-- ({"data": ..., "type": "status", "id": version}).
--
-- KEYS[1] the QR hash, KEYS[2] its pub/sub channel.
-- ARGV[1] the action: create | read | step | guest | replace; the rest depends on it.
-- Reply: {result, view JSON, version, extra JSON}.

local key, channel = KEYS[1], KEYS[2]
local action = ARGV[1]

local WAIT, SCANNED, SUCCESS = 'QRCODE_WAIT', 'QRCODE_SCANNED', 'QRCODE_SUCCESS'
local CANCEL, EXPIRE, ERROR = 'QRCODE_CANCEL', 'QRCODE_EXPIRE', 'QRCODE_ERROR'
local TERMINAL = {[CANCEL] = true, [EXPIRE] = true, [ERROR] = true}

local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function load()
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then
    return nil
  end
  local h = {}
  for i = 1, #flat, 2 do
    h[flat[i]] = flat[i + 1]
  end
  return h
end

-- What the bound browser may see: never the login token, never the binding.
local function view(h)
  local v = {id = h.id, status = h.status, expire = tonumber(h.expire)}
  if h.user_id then
    local avatar = cjson.null
    if h.user_avatar and h.user_avatar ~= '' then
      avatar = h.user_avatar
    end
    v.user = {id = h.user_id, name = h.user_name, avatar = avatar}
  end
  if h.verify_code and h.status == SCANNED then
    v.verify_code = h.verify_code
  end
  if h.reason then
    v.reason = h.reason
  end
  return v
end

local function client(h)
  return {
    platform = h.platform, ip = h.ip, user_agent = h.user_agent,
    browser = h.browser, os = h.os, created_at = tonumber(h.created_at),
  }
end

local function transition(h, fields)
  fields.version = tonumber(h.version) + 1
  local flat = {}
  for k, v in pairs(fields) do
    h[k] = tostring(v)
    flat[#flat + 1] = k
    flat[#flat + 1] = h[k]
  end
  redis.call('HSET', key, unpack(flat))
  redis.call('PUBLISH', channel, cjson.encode({data = view(h), type = 'status', id = h.version}))
end

local function expire_if_due(h)
  if not TERMINAL[h.status] and now_ms >= tonumber(h.expire) * 1000 then
    transition(h, {status = EXPIRE})
  end
end

local function reply(result, h, extra)
  local extra_json = ''
  if extra then
    extra_json = cjson.encode(extra)
  end
  if not h then
    return {result, '', 0, extra_json}
  end
  return {result, cjson.encode(view(h)), tonumber(h.version), extra_json}
end

if action == 'create' then
  -- ARGV: id, bind, platform, ttl_s, retention_s, ip, user_agent, browser, os
  if redis.call('EXISTS', key) == 1 then
    return reply('TAKEN', load())
  end
  local ttl_s, retention_s = tonumber(ARGV[5]), tonumber(ARGV[6])
  local now_s = math.floor(now_ms / 1000)
  local h = {
    id = ARGV[2], bind = ARGV[3], platform = ARGV[4], status = WAIT, version = '1',
    created_at = tostring(now_s), expire = tostring(now_s + ttl_s),
    ip = ARGV[7], user_agent = ARGV[8], browser = ARGV[9], os = ARGV[10],
  }
  local flat = {}
  for k, v in pairs(h) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  redis.call('HSET', key, unpack(flat))
  redis.call('EXPIRE', key, ttl_s + retention_s)
  return reply('OK', h)
end

local h = load()
if not h then
  return reply('NOT_FOUND', nil)
end

if action == 'read' or action == 'guest' or action == 'replace' then
  -- ARGV: bind (the hash of the caller's browser secret)
  if h.bind ~= ARGV[2] then
    if action == 'replace' then
      return reply('IGNORED', nil)
    end
    return reply('FORBIDDEN', nil)
  end
  expire_if_due(h)
  if action == 'guest' and h.status == SUCCESS then
    -- Redemption happens once: answer the SUCCESS view, then mark the QR used.
    local answered = view(h)
    local login = {
      sub = h.user_id, name = h.user_name, avatar = answered.user.avatar,
      qr = h.id, platform = h.platform,
    }
    local version = tonumber(h.version)
    transition(h, {status = ERROR, reason = 'used'})
    return {'REDEEMED', cjson.encode(answered), version, cjson.encode(login)}
  end
  if action == 'replace' then
    if TERMINAL[h.status] then
      return reply('IGNORED', h)
    end
    transition(h, {status = ERROR, reason = 'replaced'})
  end
  return reply('OK', h)
end

if action == 'step' then
  -- ARGV: step, user_id, user_name, user_avatar, given verify code, fresh verify code
  local step, user_id = ARGV[2], ARGV[3]
  local given, fresh = ARGV[6], ARGV[7]
  expire_if_due(h)
  if h.status == EXPIRE then
    return reply('EXPIRED', h)
  end
  local mine = h.user_id == user_id
  local result = 'CONFLICT'
  if step == 'SCAN' then
    if h.status == WAIT then
      local fields = {status = SCANNED, user_id = user_id, user_name = ARGV[4], user_avatar = ARGV[5]}
      if fresh ~= '' then
        fields.verify_code = fresh
      end
      transition(h, fields)
      result = 'OK'
    elseif h.status == SCANNED and mine then
      result = 'NOOP'
    end
  elseif step == 'VERIFY' then
    if h.status == SCANNED and mine then
      if h.verify_code and given == '' then
        result = 'CODE_MISSING'
      elseif h.verify_code and given ~= h.verify_code then
        transition(h, {status = ERROR, reason = 'verify_failed'})
        result = 'VERIFY_FAILED'
      else
        transition(h, {status = SUCCESS})
        result = 'OK'
      end
    elseif h.status == SUCCESS and mine then
      result = 'NOOP'
    end
  elseif step == 'CANCEL' then
    if h.status == SCANNED and mine then
      transition(h, {status = CANCEL})
      result = 'OK'
    elseif h.status == CANCEL and mine then
      result = 'NOOP'
    end
  end
  return reply(result, h, client(h))
end

return redis.error_reply('unknown action ' .. tostring(action))
