-- admit.lua: idempotency claim and governor take in one round trip.
--
-- KEYS[1], KEYS[2]           record hash and fence key of the idempotency key (when ARGV[1]=1)
-- then per resource i (2 keys each): config hash, state hash
-- ARGV[1]  1 when an idempotency key is given, 0 otherwise (then KEYS start at the resources)
-- ARGV[2]  fingerprint of the arguments
-- ARGV[3]  lease in milliseconds
-- ARGV[4]  ttl in milliseconds
-- ARGV[5]  number of resources n
-- ARGV[6 .. 5+n]      cost per resource
-- ARGV[6+n .. 5+2n]   resource names (for the reply)
-- then the checks (coordination/checks.py): KEYS after the resources' (one each), ARGV
-- m, then per check: kind, bound, name
--
-- Returns {status, fencing token, result JSON or "", wait_us, resource} where status is
--   "done" | "in_flight" | "conflict"   the claim as it stands; no token was taken
--   "refused"    a check failed (resource = its name); nothing was taken
--   "denied"     a limit denied (wait_us, -1 = never); the claim was not taken
--   "acquired"   tokens taken from every resource and the claim held (token 0 without key)
-- wait_us is, for "in_flight", the holder's remaining lease in microseconds.

-- @include _common.lua
-- @include _governor.lua
-- @include _claim.lua
-- @include _admit.lua

local has_key = ARGV[1] == '1'
local n = tonumber(ARGV[5])
local base = has_key and 2 or 0
local takes = {}
for i = 1, n do
  local k = base + 2 * (i - 1)
  takes[i] = {KEYS[k + 1], KEYS[k + 2], tonumber(ARGV[5 + i]), ARGV[5 + n + i]}
end
local rec, fence = nil, nil
if has_key then
  rec, fence = KEYS[1], KEYS[2]
end
local checks = {}
local m = tonumber(ARGV[6 + 2 * n] or '0')
for j = 1, m do
  local a = 6 + 2 * n + 3 * (j - 1)
  checks[j] = {KEYS[base + 2 * n + j], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3]}
end
return sp_admit(rec, fence, ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), takes, sp_now_us(), checks)
