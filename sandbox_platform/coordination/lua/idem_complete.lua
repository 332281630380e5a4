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

return claim_complete(KEYS[1], ARGV[1], ARGV[2])
