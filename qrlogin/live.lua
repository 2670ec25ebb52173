-- The cap on one browser's live QR codes (run after prelude.lua, as store.script()
-- puts it together). The set is the browser's own and lives on its slot of a Redis
-- Cluster, apart from the QR codes: a code is admitted here, atomically against the
-- cap, before it is created, and leaves when it is redeemed or replaced, or at its
-- deadline (its score) if nothing told us sooner.
--
-- KEYS: [1] the browser's live-QR set (member: QR id, score: its deadline in seconds).
-- ARGV: [1] the action: admit | release, [2] the QR id, [3] admit: the cap,
--       [4] admit: the QR's lifetime in seconds.
-- Reply: admit: {'OK'} or {'TOO_MANY', seconds until the oldest code's deadline};
--        release: {'OK'}.

local live_key, action, qr_id = KEYS[1], ARGV[1], ARGV[2]

if action == 'admit' then
  local max_live, ttl_s = tonumber(ARGV[3]), tonumber(ARGV[4])
  redis.call('ZREMRANGEBYSCORE', live_key, '-inf', now_s)
  if redis.call('ZCARD', live_key) >= max_live then
    local oldest = redis.call('ZRANGE', live_key, 0, 0, 'WITHSCORES')
    return {'TOO_MANY', math.max(1, tonumber(oldest[2]) - now_s)}
  end
  redis.call('ZADD', live_key, now_s + ttl_s, qr_id)
  redis.call('EXPIRE', live_key, ttl_s)
  return {'OK'}
end

if action == 'release' then
  redis.call('ZREM', live_key, qr_id)
  return {'OK'}
end

return redis.error_reply('unknown action ' .. tostring(action))
