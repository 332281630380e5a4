-- governor_clear.lua: remove every limit of one resource and its buckets; keep its counters.
--
-- KEYS[1]  config hash  {prefix}:gov:{resource}:cfg
-- KEYS[2]  state hash   {prefix}:gov:{resource}:state
-- ARGV[1]  (none)
--
-- Returns 1.

local counts = redis.call('HMGET', KEYS[2], ' admitted', ' denied')
redis.call('DEL', KEYS[1], KEYS[2])
if counts[1] or counts[2] then
  redis.call('HSET', KEYS[2], ' admitted', counts[1] or '0', ' denied', counts[2] or '0')
end
return 1
