-- outbox_release.lua: release the drain lock if the drainer still holds it.
--
-- KEYS[1]  the drain lock
-- ARGV[1]  the drainer's lock token
--
-- Returns 1 when released.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
