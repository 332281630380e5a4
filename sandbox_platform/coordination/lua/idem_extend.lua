-- idem_extend.lua: renew the lease of a running claim.
--
-- KEYS[1]  record hash  {prefix}:idem:r:{key}
-- KEYS[2]  fence key    {prefix}:idem:f:{key} (read only, for records written before 0.2)
-- ARGV[1]  fencing token
-- ARGV[2]  new lease in milliseconds, from now (Redis time)
--
-- Returns 1 when extended, 0 when the token is stale.

-- @include _common.lua
-- @include _claim.lua

if not claim_holds(KEYS[1], ARGV[1]) then
  return 0
end
local lease_ms = tonumber(ARGV[2])
local now_ms = math.floor(sp_now_us() / 1000)
local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl'))
redis.call('HSET', KEYS[1], 'lease', sp_fmt(now_ms + lease_ms))
rec_set_end(KEYS[1], now_ms + math.max(lease_ms, ttl), now_ms)
return 1
