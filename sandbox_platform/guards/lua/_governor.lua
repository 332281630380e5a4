-- _governor.lua: token-bucket planning and commit, shared by governor_acquire.lua and admit.lua.
--
-- Per resource (all three keys share the resource's hash tag):
--   config hash  field = limit name, value = "a b cap limit per_us capacity"
--                  a    units added per microsecond     (integer)
--                  b    units per token                 (integer)
--                  cap  capacity * b, the bucket size in units (integer < 2^53)
--   state hash   field = limit name, value = "units last_us b cap" (absent = full bucket);
--                b and cap as configured when written, to carry the state over a set_limit
--   stats hash   fields "admitted", "denied"
--
-- One token is b units and time adds a units per microsecond, so a refill is the exact
-- integer elapsed_us * a: no division, no rounding, no drift.

-- The bucket of one limit refilled up to now (units, new last_us).
local function gov_refill(cfg, raw_state, now)
  local a, b, cap = cfg[1], cfg[2], cfg[3]
  if not raw_state then
    return cap, now
  end
  local s = sp_numbers(raw_state)
  local units, last, old_b, old_cap = s[1], s[2], s[3], s[4]
  if old_b == b and old_cap ~= cap then
    -- the capacity changed: keep what was consumed, so the headroom moves with the capacity
    units = units + (cap - old_cap)
  elseif old_b ~= b then
    -- the rate changed: carry the consumed tokens over to the new unit (rounded up)
    units = cap - math.ceil((old_cap - units) / old_b * b)
  end
  units = math.max(0, math.min(cap, units))
  local elapsed = now - last
  if elapsed <= 0 then
    return units, last -- the clock went backwards (failover): never refill from the future
  end
  if elapsed >= math.ceil((cap - units) / a) then
    return cap, now
  end
  return math.min(cap, units + elapsed * a), now
end

-- Plan taking `cost` tokens from every limit of one resource; writes nothing.
-- Returns a plan: configured, ok, wait_us (-1 = never), remaining (tokens), limit, entries.
local function gov_plan(cfg_key, state_key, cost, now)
  local plan = {configured = false, ok = true, wait_us = 0, remaining = -1, limit = '',
                entries = {}, keep_us = 0}
  local flat = redis.call('HGETALL', cfg_key)
  if #flat == 0 then
    return plan
  end
  plan.configured = true
  local names = {}
  for i = 1, #flat, 2 do
    names[#names + 1] = flat[i]
  end
  local states = redis.call('HMGET', state_key, unpack(names))
  for i, name in ipairs(names) do
    local cfg = sp_numbers(flat[2 * i])
    local a, b, cap, capacity = cfg[1], cfg[2], cfg[3], cfg[6]
    local units, last = gov_refill(cfg, states[i], now)
    local full_us = math.ceil(cap / a)
    if full_us > plan.keep_us then
      plan.keep_us = full_us
    end
    local tokens = units / b
    if plan.remaining < 0 or tokens < plan.remaining then
      plan.remaining = tokens
    end
    if cost > capacity then
      plan.ok = false
      plan.wait_us = -1
      plan.limit = name
    else
      local need = cost * b
      if units < need then
        local wait = math.ceil((need - units) / a)
        if plan.wait_us ~= -1 and wait > plan.wait_us then
          plan.wait_us = wait
          plan.limit = name
        end
        plan.ok = false
      end
      plan.entries[#plan.entries + 1] = {name, units - need, last, b, cap}
    end
  end
  if plan.ok then
    plan.remaining = -1
    for _, e in ipairs(plan.entries) do
      local left = e[2] / e[4]
      if plan.remaining < 0 or left < plan.remaining then
        plan.remaining = left
        plan.limit = e[1]
      end
    end
  end
  return plan
end

-- Write a successful plan: every bucket loses its cost, "admitted" grows by one.
local function gov_commit(plan, state_key, stats_key)
  if not plan.configured then
    return
  end
  for _, e in ipairs(plan.entries) do
    local value = sp_fmt(e[2]) .. ' ' .. sp_fmt(e[3]) .. ' ' .. sp_fmt(e[4]) .. ' ' .. sp_fmt(e[5])
    redis.call('HSET', state_key, e[1], value)
  end
  -- an untouched bucket is full again after keep_us: let its state expire then
  redis.call('PEXPIRE', state_key, math.ceil(plan.keep_us / 1000) + 1000)
  redis.call('HINCRBY', stats_key, 'admitted', 1)
end

-- Count a denial.
local function gov_deny(stats_key)
  redis.call('HINCRBY', stats_key, 'denied', 1)
end

local function gov_fmt_remaining(plan)
  return string.format('%.17g', plan.remaining)
end
