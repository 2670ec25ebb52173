-- Login sessions: the one place where their rules live (run after prelude.lua, as
-- store.script() puts it together).
--
-- A redemption creates a session; it ends by logout, by the phone (one or all of the
-- user's), when idle too long, or at its absolute deadline (the Redis clock is the only
-- clock). Every change bumps the session's `version`, publishes its public view on the
-- session's channel, and appends a notice to the user's notice stream (bumping the
-- user's `version` and publishing on the user's channel), all in one atomic step. The
-- message layout is the one messages.py describes; the user channel's `data` is the
-- notice.
--
-- Every key is tagged with the user, so the script runs on the user's slot of a Redis
-- Cluster (and publishes on that shard).
--
-- KEYS: [1] the session hash, [2] its channel, [3] the user's session index (sorted set,
--       scored by absolute deadline), [4] the user hash (its notice `version`),
--       [5] the user's notice stream, [6] the user's channel.
-- ARGV: [1] the action: create | check | end
--       [2] JSON arguments (see each action).
-- Reply: {result, view JSON, version}; result OK | NOT_FOUND | ENDED.

local session_key, channel, index_key, user_key, notices_key, user_channel =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local action = ARGV[1]
local args = cjson.decode(ARGV[2])

local ACTIVE, ENDED = 'active', 'ended'
local NOTICES_KEPT = 100


local function known(value)
  if value == nil or value == '' then
    return cjson.null
  end
  return value
end

-- When the session ends unless it is used again: the idle deadline or the absolute one.
local function deadline(h)
  return math.min(tonumber(h.last_seen_at) + tonumber(h.idle_s), tonumber(h.absolute_at))
end

-- What the session's own page and the user's phone may see: never the token.
local function view(h)
  local location = cjson.null
  if known(h.country) ~= cjson.null or known(h.city) ~= cjson.null then
    location = {country = known(h.country), country_name = known(h.country_name),
      city = known(h.city)}
  end
  local v = {
    id = h.id, status = h.status,
    user = {id = h.user_id, name = h.user_name, avatar = known(h.user_avatar)},
    platform = h.platform, browser = h.browser, os = h.os, ip = h.ip, location = location,
    qr_id = h.qr_id, created_at = tonumber(h.created_at),
    last_seen_at = tonumber(h.last_seen_at), expire = deadline(h),
  }
  if h.status == ENDED then
    v.ended_at = tonumber(h.ended_at)
    v.reason = h.reason
    v.expire = tonumber(h.ended_at)
  end
  return v
end

local function notify(kind, h)
  local version = redis.call('HINCRBY', user_key, 'version', 1)
  redis.call('EXPIRE', user_key, tonumber(args.retention_s))
  local data = view(h)
  redis.call('XADD', notices_key, 'MAXLEN', '~', NOTICES_KEPT, '*',
    'type', kind, 'data', cjson.encode(data))
  redis.call('EXPIRE', notices_key, tonumber(args.retention_s))
  redis.call('SPUBLISH', user_channel, cjson.encode(
    {data = {status = 'open', expire = now_s + 86400}, type = kind, id = version, at = now_ms}))
end

local function publish(h)
  redis.call('SPUBLISH', channel, cjson.encode(
    {data = view(h), type = 'session', id = tonumber(h.version), at = now_ms}))
end

local function finish(h, reason)
  h.status, h.reason, h.ended_at = ENDED, reason, tostring(now_s)
  h.version = tostring(tonumber(h.version) + 1)
  redis.call('HSET', session_key, 'status', ENDED, 'reason', reason,
    'ended_at', h.ended_at, 'version', h.version)
  redis.call('ZREM', index_key, h.id)
  publish(h)
  notify('session_ended', h)
end

-- An active session past a deadline ends here, whoever looks at it first.
local function end_if_due(h)
  if h.status == ACTIVE then
    if now_s >= tonumber(h.absolute_at) then
      finish(h, 'expired')
    elseif now_s >= tonumber(h.last_seen_at) + tonumber(h.idle_s) then
      finish(h, 'idle')
    end
  end
end

local function reply(result, h)
  if not h then
    return {result, '', 0}
  end
  return {result, cjson.encode(view(h)), tonumber(h.version)}
end

if action == 'create' then
  -- args: id, user_id, user_name, user_avatar, platform, browser, os, ip, country,
  --       country_name, city, qr_id, idle_s, absolute_s, retention_s
  local h = {
    id = args.id, status = ACTIVE, version = '1',
    user_id = args.user_id, user_name = args.user_name, user_avatar = args.user_avatar,
    platform = args.platform, browser = args.browser, os = args.os, ip = args.ip,
    country = args.country, country_name = args.country_name, city = args.city,
    qr_id = args.qr_id, created_at = tostring(now_s), last_seen_at = tostring(now_s),
    idle_s = tostring(args.idle_s), absolute_at = tostring(now_s + tonumber(args.absolute_s)),
  }
  redis.call('HSET', session_key, unpack(fields_of(h)))
  -- Kept past its end, so that a late use is told it ended rather than that it never was.
  redis.call('EXPIRE', session_key, tonumber(args.absolute_s) + tonumber(args.retention_s))
  redis.call('ZADD', index_key, tonumber(h.absolute_at), h.id)
  redis.call('ZREMRANGEBYSCORE', index_key, '-inf', now_s)
  redis.call('EXPIRE', index_key, tonumber(args.absolute_s) + tonumber(args.retention_s))
  notify('session_created', h)
  return reply('OK', h)
end

local h = load_hash(session_key)
if not h then
  return reply('NOT_FOUND', nil)
end

if action == 'check' then
  -- args: touch (record a use now), retention_s
  end_if_due(h)
  if h.status == ENDED then
    return reply('ENDED', h)
  end
  if args.touch and tonumber(h.last_seen_at) < now_s then
    h.last_seen_at = tostring(now_s)
    redis.call('HSET', session_key, 'last_seen_at', h.last_seen_at)
  end
  return reply('OK', h)
end

if action == 'end' then
  -- args: reason (logout | revoked), retention_s
  end_if_due(h)
  if h.status == ENDED then
    return reply('ENDED', h)
  end
  finish(h, args.reason)
  return reply('OK', h)
end

return redis.error_reply('unknown action ' .. tostring(action))
