-- The QR state machine: the one place where the rules of the contract live.
--
-- store.script() runs it after prelude.lua (the clock, load_hash) behind a `#!lua`
-- line that declares no flags: the script writes, so Redis refuses to run it at all
-- when it is out of memory (maxmemory, noeviction) rather than half-way.
--
-- Every call runs atomically inside Redis. A call first turns an overdue QR into
-- QRCODE_EXPIRE (the Redis clock is the only clock), then performs its action.
-- Every transition bumps `version`, publishes the new public view on the QR's
-- channel (sharded pub/sub; the message layout is written down in messages.py) and
-- appends an entry to the QR's audit trail, all in the same atomic step. The status
-- words are those of models.py (a test checks that they agree).
--
-- Every key is the QR's own and shares its hash tag, so the script runs on the QR's
-- slot of a Redis Cluster. (The cap on a browser's live QR codes is kept on the
-- browser's slot by live.lua, before creation.)
--
-- KEYS: [1] the QR hash, [2] its pub/sub channel, [3] its audit trail (a stream kept
--       as long as the hash).
-- ARGV: [1] the action: create | read | guest | replace | step
--       [2] JSON arguments: ip and user_agent of the caller, reveal_on_confirm, and the
--           action's own.
-- Reply: {result, view JSON, version, extra JSON, JSON list of the transitions made,
--         the version at which the QR first became final (0: not yet)}.

local qr_key, channel, audit_key = KEYS[1], KEYS[2], KEYS[3]
local action = ARGV[1]
local args = cjson.decode(ARGV[2])

local WAIT, SCANNED, SUCCESS = 'QRCODE_WAIT', 'QRCODE_SCANNED', 'QRCODE_SUCCESS'
local CANCEL, EXPIRE, ERROR = 'QRCODE_CANCEL', 'QRCODE_EXPIRE', 'QRCODE_ERROR'
local TERMINAL = {[CANCEL] = true, [EXPIRE] = true, [ERROR] = true}
-- A stream or a long poll ends at these; SUCCESS is final, though not terminal.
local FINAL = {[SUCCESS] = true, [CANCEL] = true, [EXPIRE] = true, [ERROR] = true}


-- What the bound browser may see: never the login token, never the binding.
-- With reveal_on_confirm, the scanner is shown only once the login is confirmed.
local function view(h)
  local v = {id = h.id, status = h.status, expire = tonumber(h.expire)}
  local revealed = not args.reveal_on_confirm or h.status == SUCCESS or h.reason == 'used'
  if h.user_id and revealed then
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

-- The requesting browser's context, as the phone is shown it.
local function client(h)
  local location = cjson.null
  if (h.place_country or '') ~= '' or (h.place_city or '') ~= '' then
    local function known(value)
      if value == nil or value == '' then
        return cjson.null
      end
      return value
    end
    location = {
      country = known(h.place_country), country_name = known(h.place_country_name),
      city = known(h.place_city),
    }
  end
  return {
    platform = h.platform, ip = h.ip, user_agent = h.user_agent,
    browser = h.browser, os = h.os, created_at = tonumber(h.created_at), location = location,
  }
end

local made = {}  -- the events of the transitions this call made, for the caller's metrics

local function audit(h, event)
  redis.call('XADD', audit_key, '*',
    'at', tostring(now_ms), 'event', event, 'qr', h.id, 'status', h.status,
    'version', h.version, 'user', h.user_id or '', 'ip', args.ip or '',
    'user_agent', args.user_agent or '')
end

local function transition(h, event, fields)
  fields.version = tonumber(h.version) + 1
  if FINAL[fields.status] and not h.final_version then
    fields.final_version = fields.version
  end
  local flat = {}
  for k, v in pairs(fields) do
    h[k] = tostring(v)
    flat[#flat + 1] = k
    flat[#flat + 1] = h[k]
  end
  redis.call('HSET', qr_key, unpack(flat))
  redis.call('SPUBLISH', channel, cjson.encode(
    {data = view(h), type = 'status', id = h.version, at = now_ms}))
  audit(h, event)
  made[#made + 1] = event
end

local function expire_if_due(h)
  if not TERMINAL[h.status] and now_ms >= tonumber(h.expire) * 1000 then
    transition(h, 'expired', {status = EXPIRE})
  end
end

local function reply(result, h, extra)
  local extra_json = ''
  if extra then
    extra_json = cjson.encode(extra)
  end
  local made_json = '[]'
  if #made > 0 then
    made_json = cjson.encode(made)
  end
  if not h then
    return {result, '', 0, extra_json, made_json, 0}
  end
  return {result, cjson.encode(view(h)), tonumber(h.version), extra_json, made_json,
    tonumber(h.final_version) or 0}
end

if action == 'create' then
  -- args: id, bind, platform, ttl_s, retention_s, browser, os,
  --       place_country, place_country_name, place_city (empty when unknown)
  if redis.call('EXISTS', qr_key) == 1 then
    return reply('TAKEN', nil)
  end
  local ttl_s = tonumber(args.ttl_s)
  local h = {
    id = args.id, bind = args.bind, platform = args.platform, status = WAIT, version = '1',
    created_at = tostring(now_s), expire = tostring(now_s + ttl_s),
    ip = args.ip, user_agent = args.user_agent, browser = args.browser, os = args.os,
    place_country = args.place_country, place_country_name = args.place_country_name,
    place_city = args.place_city,
  }
  redis.call('HSET', qr_key, unpack(fields_of(h)))
  audit(h, 'created')
  redis.call('EXPIRE', qr_key, ttl_s + tonumber(args.retention_s))
  redis.call('EXPIRE', audit_key, ttl_s + tonumber(args.retention_s))
  made[#made + 1] = 'created'
  return reply('OK', h)
end

local h = load_hash(qr_key)
if not h then
  return reply('NOT_FOUND', nil)
end

if action == 'read' or action == 'guest' or action == 'replace' then
  -- args: bind (the digest of the caller's browser secret), prev (the digest of the
  --       binding it replaced at its last login, or '')
  local by_previous = h.bind ~= args.bind and args.prev ~= '' and h.bind == args.prev
  if h.bind ~= args.bind and not by_previous then
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
    transition(h, 'redeemed', {status = ERROR, reason = 'used'})
    local redeemed = 'REDEEMED'
    if by_previous then
      redeemed = 'REDEEMED_BY_PREVIOUS'
    end
    return {redeemed, cjson.encode(answered), version, cjson.encode(login), cjson.encode(made),
      tonumber(h.final_version)}
  end
  if action == 'replace' then
    if TERMINAL[h.status] then
      return reply('IGNORED', h)
    end
    transition(h, 'replaced', {status = ERROR, reason = 'replaced'})
    if by_previous then
      return reply('REPLACED_BY_PREVIOUS', h)
    end
    return reply('REPLACED', h)
  end
  return reply('OK', h)
end

if action == 'step' then
  -- args: step, user_id, user_name, user_avatar, given (verify code), fresh (verify code)
  local step, user_id = args.step, args.user_id
  expire_if_due(h)
  if h.status == EXPIRE then
    return reply('EXPIRED', h)
  end
  local mine = h.user_id == user_id
  local result = 'CONFLICT'
  if step == 'SCAN' then
    if h.status == WAIT then
      local fields = {
        status = SCANNED, user_id = user_id, user_name = args.user_name,
        user_avatar = args.user_avatar,
      }
      if args.fresh ~= '' then
        fields.verify_code = args.fresh
      end
      transition(h, 'scanned', fields)
      result = 'OK'
    elseif h.status == SCANNED and mine then
      result = 'NOOP'
    end
  elseif step == 'VERIFY' then
    if h.status == SCANNED and mine then
      if h.verify_code and args.given == '' then
        result = 'CODE_MISSING'
      elseif not h.verify_code and args.given ~= '' then
        result = 'CODE_UNEXPECTED'
      elseif h.verify_code and args.given ~= h.verify_code then
        transition(h, 'verify_failed', {status = ERROR, reason = 'verify_failed'})
        result = 'VERIFY_FAILED'
      else
        transition(h, 'verified', {status = SUCCESS})
        result = 'OK'
      end
    elseif h.status == SUCCESS and mine then
      result = 'NOOP'
    end
  elseif step == 'CANCEL' then
    if h.status == SCANNED and mine then
      transition(h, 'cancelled', {status = CANCEL})
      result = 'OK'
    elseif h.status == CANCEL and mine then
      result = 'NOOP'
    end
  end
  return reply(result, h, client(h))
end

return redis.error_reply('unknown action ' .. tostring(action))
