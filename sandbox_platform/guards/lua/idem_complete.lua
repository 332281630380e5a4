-- idem_complete.lua: store the result of a run, if the caller's token still holds.
--
-- KEYS[1]  record hash  {prefix}:idem:r:{key}
-- KEYS[2]  fence key    {prefix}:idem:f:{key} (read only, for records written before 0.2)
-- ARGV[1]  fencing token
-- ARGV[2]  result JSON
--
-- Returns 1 when stored (the record is kept for its ttl from now), 0 when the token is stale.

-- @include _common.lua
-- @include _claim.lua

if not claim_holds(KEYS[1], ARGV[1]) then
  return 0
end
local now_ms = math.floor(sp_now_us() / 1000)
local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl'))
redis.call('HSET', KEYS[1], 'state', 'done', 'result', ARGV[2])
redis.call('HDEL', KEYS[1], 'lease')
rec_set_end(KEYS[1], now_ms + ttl, now_ms)
return 1
