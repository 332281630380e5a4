-- idem_complete.lua: store the result of a run, if the caller's token still holds.
--
-- KEYS[1]  record hash  {prefix}:idem:r:{key}
-- KEYS[2]  fence key    {prefix}:idem:f:{key}
-- ARGV[1]  fencing token
-- ARGV[2]  result JSON
--
-- Returns 1 when stored (the record is kept for its ttl), 0 when the token is stale.

-- @include _common.lua
-- @include _claim.lua

if not claim_holds(KEYS[1], ARGV[1]) then
  return 0
end
local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl'))
redis.call('HSET', KEYS[1], 'state', 'done', 'result', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl + FENCE_MARGIN_MS)
return 1
