-- idem_release.lua: free a claim after a failed run, so that a retry can run.
--
-- KEYS[1]  record hash  {prefix}:idem:r:{key}
-- ARGV[1]  fencing token
--
-- Returns 1 when released, 0 when the token is stale (nothing changed).

-- @include _common.lua
-- @include _claim.lua

if not claim_holds(KEYS[1], ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
