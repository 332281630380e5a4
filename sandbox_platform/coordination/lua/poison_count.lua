-- poison_count.lua: count one redelivery of a job after its worker was lost.
--
-- KEYS[1]  clean-restore marker  {prefix}:poison:{task_id}:clean  (set at warm shutdown)
-- KEYS[2]  redelivery counter    {prefix}:poison:{task_id}:count
-- ARGV[1]  counter TTL in seconds
--
-- Returns 0 when the redelivery came from a warm shutdown (the marker is consumed, nothing
-- counted), otherwise the number of redeliveries counted so far.

if redis.call('DEL', KEYS[1]) == 1 then
  return 0
end
local count = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
return count
