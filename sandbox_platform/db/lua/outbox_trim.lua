-- outbox_trim.lua: remove the rows a drainer has written, if it still holds the drain lock
-- (another drainer may have taken over after the lock expired: then nothing is removed, and
-- what both wrote is one row each, thanks to the unique run key).
--
-- KEYS[1]  the outbox list
-- KEYS[2]  the drain lock
-- ARGV[1]  the drainer's lock token
-- ARGV[2]  how many rows, from the head, it wrote
--
-- Returns 1 when removed, 0 when the lock is not the drainer's.

if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
return 1
