-- admit.lua: idempotency claim and governor take in one round trip.
--
-- KEYS[1], KEYS[2]           record hash and fence key of the idempotency key (when ARGV[1]=1)
-- then per resource i (3 keys each): config hash, state hash, stats hash
-- ARGV[1]  1 when an idempotency key is given, 0 otherwise (then KEYS start at the resources)
-- ARGV[2]  fingerprint of the arguments
-- ARGV[3]  lease in milliseconds
-- ARGV[4]  ttl in milliseconds
-- ARGV[5]  number of resources n
-- ARGV[6 .. 5+n]      cost per resource
-- ARGV[6+n .. 5+2n]   resource names (for the reply)
--
-- Returns {status, fencing token, result JSON or "", wait_us, resource} where status is
--   "done" | "in_flight" | "conflict"   the claim as it stands; no token was taken
--   "denied"     a limit denied (wait_us, -1 = never); the claim was not taken
--   "acquired"   tokens taken from every resource and the claim held (token 0 without key)
-- wait_us is, for "in_flight", the holder's remaining lease in microseconds.

-- @include _common.lua
-- @include _governor.lua
-- @include _claim.lua

local has_key = ARGV[1] == '1'
local fp = ARGV[2]
local lease_ms = tonumber(ARGV[3])
local ttl_ms = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local now = sp_now_us()
local now_ms = math.floor(now / 1000)
local base = 0
if has_key then
  base = 2
  local seen = claim_peek(KEYS[1], fp, now_ms)
  if seen then
    return {seen[1], seen[2], seen[3], seen[4] * 1000, ''}
  end
end

local plans = {}
local worst_wait, worst_name = nil, ''
for i = 1, n do
  local k = base + 3 * (i - 1)
  local plan = gov_plan(KEYS[k + 1], KEYS[k + 2], tonumber(ARGV[5 + i]), now)
  if not plan.ok then
    gov_deny(KEYS[k + 3])
    if worst_wait == nil or worst_wait ~= -1 and (plan.wait_us == -1 or plan.wait_us > worst_wait) then
      worst_wait, worst_name = plan.wait_us, ARGV[5 + n + i]
    end
  end
  plans[i] = plan
end
if worst_wait ~= nil then
  return {'denied', 0, '', worst_wait, worst_name}
end
for i = 1, n do
  local k = base + 3 * (i - 1)
  gov_commit(plans[i], KEYS[k + 2], KEYS[k + 3])
end
if not has_key then
  return {'acquired', 0, '', 0, ''}
end
local taken = claim_take(KEYS[1], KEYS[2], fp, lease_ms, ttl_ms, now_ms)
return {taken[1], taken[2], '', 0, ''}
