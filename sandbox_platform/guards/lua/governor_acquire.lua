-- governor_acquire.lua: take `cost` tokens from every limit of one resource, all or nothing.
--
-- KEYS[1]  config hash  {prefix}:gov:{resource}:cfg
-- KEYS[2]  state hash   {prefix}:gov:{resource}:state (buckets, config copy, counters)
-- ARGV[1]  cost (integer tokens, > 0)
--
-- Returns {allowed (1/0), remaining tokens ("%.17g", "-1" = no limit configured),
--          wait_us (0 when allowed, -1 = cost exceeds a capacity: never), limit name}
-- Time comes from Redis TIME only.

-- @include _common.lua
-- @include _governor.lua

local cost = tonumber(ARGV[1])
local plan = gov_plan(KEYS[1], KEYS[2], cost, sp_now_us())
if not plan.configured then
  return {1, '-1', 0, ''}
end
if plan.ok then
  gov_commit(plan, KEYS[2])
  return {1, string.format('%.17g', plan.remaining), 0, plan.limit}
end
gov_deny(KEYS[2])
return {0, string.format('%.17g', plan.remaining), plan.wait_us, plan.limit}
