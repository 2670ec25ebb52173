-- What every script of the service starts with (store.script() puts it in front):
-- the clock, and reading a hash. The Redis clock is the only clock.
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local now_s = math.floor(now_ms / 1000)

-- The hash at `key` as a table, or nil when there is none.
local function load_hash(key)
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

-- Flattens a table into HSET's field, value arguments.
local function fields_of(h)
  local flat = {}
  for k, v in pairs(h) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  return flat
end
