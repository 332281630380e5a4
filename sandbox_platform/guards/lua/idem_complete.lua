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

local r = redis.call('HMGET', KEYS[1], 'state', 'token', 'ttl')
if r[1] ~= 'running' or r[2] ~= ARGV[1] then
  return 0
end
local now_ms = math.floor(sp_now_us() / 1000)
local exp = now_ms + tonumber(r[3])
redis.call('HSET', KEYS[1], 'state', 'done', 'result', ARGV[2], 'exp', sp_fmt(exp))
redis.call('HDEL', KEYS[1], 'lease')
redis.call('PEXPIRE', KEYS[1], exp - now_ms + FENCE_MARGIN_MS)
return 1
