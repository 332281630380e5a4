-- governor_acquire.lua: take `cost` tokens from every limit of one resource, all or nothing.
--
-- KEYS[1]  config hash  {prefix}:gov:{resource}:cfg
-- KEYS[2]  state hash   {prefix}:gov:{resource}:state (buckets, config copy, counters)
-- ARGV[1]  cost (integer tokens, > 0)
--
-- Returns {allowed (1/0), units, units per token, wait_us, limit name}: the tokens remaining
--   are units / units per token (exact integers: the division is the caller's, which spares
--   a float format here); units per token 0 = no limit configured (remaining: infinite);
--   wait_us is 0 when allowed, -1 when the cost exceeds a capacity (never).
-- Time comes from Redis TIME only.

-- @include _common.lua
-- @include _governor.lua

local cost, now = tonumber(ARGV[1]), sp_now_us()
local flat = redis.call('HGETALL', KEYS[2])
local reply = gov_acquire_one(KEYS[2], flat, cost, now)
if reply then
  return reply
end
local plan = gov_decide(cost, now, gov_read(KEYS[1], KEYS[2], flat))
if not plan.configured then
  return {1, 0, 0, 0, ''}
end
if plan.ok then
  gov_commit(plan, KEYS[2])
  return {1, plan.rem_units, plan.rem_b, 0, plan.limit}
end
gov_deny(KEYS[2])
return {0, plan.rem_units, plan.rem_b, plan.wait_us, plan.limit}
