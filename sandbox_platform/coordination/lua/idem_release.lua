-- idem_release.lua: free a claim after a failed run, so that a retry can run.
--
-- KEYS[1]  record hash  {prefix}:idem:r:{key}
-- ARGV[1]  fencing token
--
-- The record goes back to "queued": a retry may claim it (with a larger token), and the
-- enqueue-side dedupe still answers with the first job. Returns 1 when released, 0 when the
-- token is stale (nothing changed).

-- @include _common.lua
-- @include _claim.lua

if not claim_holds(KEYS[1], ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'queued')
redis.call('HDEL', KEYS[1], 'lease')
return 1
