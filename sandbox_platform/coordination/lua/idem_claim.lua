-- idem_claim.lua: claim an idempotency key (Stripe semantics) in one step.
--
-- KEYS[1]  record hash  {prefix}:idem:r:{key}
-- KEYS[2]  fence key    {prefix}:idem:f:{key}
-- ARGV[1]  fingerprint of the arguments
-- ARGV[2]  lease in milliseconds
-- ARGV[3]  ttl in milliseconds (how long the done result is kept)
--
-- Returns {status, fencing token, result JSON or "", lease_left_ms} where status is
--   "acquired"   the caller holds the key with a new, larger fencing token
--   "done"       the key ran already; result is its stored JSON
--   "in_flight"  another holder's lease has lease_left_ms to run
--   "conflict"   the key was used with a different fingerprint

-- @include _common.lua
-- @include _claim.lua

local now_ms = math.floor(sp_now_us() / 1000)
local seen = claim_peek(KEYS[1], ARGV[1], now_ms)
if seen then
  return seen
end
return claim_take(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), now_ms)
