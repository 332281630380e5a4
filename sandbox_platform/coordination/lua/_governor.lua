-- _governor.lua: token-bucket planning and commit, shared by governor_acquire.lua and admit.lua.
--
-- Per resource (both keys share the resource's hash tag):
--   config hash  field = limit name, value = "a b cap limit per_us capacity"
--                  a    units added per microsecond     (integer)
--                  b    units per token                 (integer)
--                  cap  capacity * b, the bucket size in units (integer < 2^53)
--   state hash   what a decision reads and writes, in one HGETALL and one HSET:
--                  "<limit name>"        "units last_us b cap" (absent = full bucket); b and
--                                        cap as configured when written, to carry the state
--                                        over a set_limit
--                  " cfg <limit name>"   a copy of the limit's config (set_limit writes both
--                                        in one transaction; copied here from the config hash
--                                        when missing, e.g. written before 0.2)
--                  " admitted", " denied"  the decisions counted
--                Limit names never start with a space, so the fields cannot collide.
--
-- One token is b units and time adds a units per microsecond, so a refill is the exact
-- integer elapsed_us * a: no division, no rounding, no drift.

local GOV_CFG = ' cfg '
-- (locals: a global lookup per call costs on the decision's hot path)
local gov_match, gov_byte, gov_sub, gov_num, gov_ceil = string.match, string.byte, string.sub, tonumber, math.ceil

-- The state hash of a resource (`flat`, its HGETALL) taken apart: limit names, their configs
-- (same order), bucket states by name, the admitted count. Without a config copy there, the config hash is
-- read and copied (and the state hash made persistent: a state written before 0.2 expired).
local function gov_read(cfg_key, state_key, flat)
  local names, cfgs, states, admitted = {}, {}, {}, 0
  for i = 1, #flat, 2 do
    local field = flat[i]
    if gov_byte(field, 1) ~= 32 then
      states[field] = flat[i + 1]
    elseif gov_byte(field, 2) == 99 then -- " cfg <name>"
      names[#names + 1] = gov_sub(field, 6)
      cfgs[#cfgs + 1] = flat[i + 1]
    elseif field == ' admitted' then
      admitted = gov_num(flat[i + 1]) or 0
    end
  end
  if #names == 0 then
    local cfg = redis.call('HGETALL', cfg_key)
    if #cfg > 0 then
      local copy = {}
      for i = 1, #cfg, 2 do
        names[#names + 1] = cfg[i]
        cfgs[#cfgs + 1] = cfg[i + 1]
        copy[#copy + 1] = GOV_CFG .. cfg[i]
        copy[#copy + 1] = cfg[i + 1]
      end
      redis.call('HSET', state_key, unpack(copy))
      redis.call('PERSIST', state_key)
    end
  end
  return names, cfgs, states, admitted
end

-- One limit's bucket refilled up to `now`: its config string "a b cap limit per_us capacity"
-- (a units per microsecond, b units a token, cap = capacity * b units) and its state string
-- "units last_us b cap" (nil = a full bucket). Returns a, b, cap, capacity, units, last_us.
local function gov_bucket(cfg, raw_state, now)
  local a, b, cap, capacity = gov_match(cfg, '^(%S+) (%S+) (%S+) %S+ %S+ (%S+)')
  a, b, cap, capacity = gov_num(a), gov_num(b), gov_num(cap), gov_num(capacity)
  local units, last = cap, now
  if raw_state then
    local u, l, ob, oc = gov_match(raw_state, '^(%S+) (%S+) (%S+) (%S+)')
    local old_b, old_cap = gov_num(ob), gov_num(oc)
    units, last = gov_num(u), gov_num(l)
    if old_b == b and old_cap ~= cap then
      -- the capacity changed: keep what was consumed, so the headroom moves with it
      units = units + (cap - old_cap)
    elseif old_b ~= b then
      -- the rate changed: carry the consumed tokens over to the new unit (rounded up)
      units = cap - gov_ceil((old_cap - units) / old_b * b)
    end
    units = math.max(0, math.min(cap, units))
    local elapsed = now - last
    if elapsed > 0 then -- (<= 0: the clock went backwards, never refill from the future)
      if elapsed >= gov_ceil((cap - units) / a) then
        units = cap
      else
        units = math.min(cap, units + elapsed * a)
      end
      last = now
    end
  end
  return a, b, cap, capacity, units, last
end

-- Plan taking `cost` tokens from every limit of one resource; writes nothing (but the config
-- copy). Returns a plan: configured, ok, wait_us (-1 = never), remaining (tokens; also as
-- rem_units / rem_b, the exact integers it is the quotient of), limit,
-- entries ({name, units left, last_us, b, cap} per limit: with cost 0, the buckets as they
-- stand), admitted.
-- gov_decide takes what gov_read returned; gov_plan reads it first.
local function gov_decide(cost, now, names, cfgs, states, admitted)
  local plan = {configured = false, ok = true, wait_us = 0, remaining = -1, limit = '',
                entries = {}, admitted = 0, rem_units = 0, rem_b = 0}
  if #names == 0 then
    return plan
  end
  plan.configured = true
  plan.admitted = admitted
  for i = 1, #names do
    local name = names[i]
    local a, b, cap, capacity, units, last = gov_bucket(cfgs[i], states[name], now)
    local tokens = units / b
    if plan.remaining < 0 or tokens < plan.remaining then
      plan.remaining, plan.rem_units, plan.rem_b = tokens, units, b
    end
    if cost > capacity then
      plan.ok = false
      plan.wait_us = -1
      plan.limit = name
    else
      local need = cost * b
      if units < need then
        local wait = gov_ceil((need - units) / a)
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
    local entries = plan.entries
    for j = 1, #entries do
      local e = entries[j]
      local left = e[2] / e[4]
      if plan.remaining < 0 or left < plan.remaining then
        plan.remaining, plan.rem_units, plan.rem_b = left, e[2], e[4]
        plan.limit = e[1]
      end
    end
  end
  return plan
end

local function gov_plan(cfg_key, state_key, cost, now)
  return gov_decide(cost, now, gov_read(cfg_key, state_key, redis.call('HGETALL', state_key)))
end

-- Write a successful plan in one call: every bucket loses its cost, " admitted" grows by one.
local function gov_commit(plan, state_key)
  if not plan.configured then
    return
  end
  -- '%d' (64-bit) is exact for these integers below 2^53, and twice as fast as '%.0f'
  local admitted = string.format('%d', plan.admitted + 1)
  local entries = plan.entries
  if #entries == 1 then -- one limit: no argument table
    local e = entries[1]
    redis.call('HSET', state_key, e[1], string.format('%d %d %d %d', e[2], e[3], e[4], e[5]),
               ' admitted', admitted)
    return
  end
  local fields = {}
  for j = 1, #entries do
    local e = entries[j]
    fields[#fields + 1] = e[1]
    fields[#fields + 1] = string.format('%d %d %d %d', e[2], e[3], e[4], e[5])
  end
  fields[#fields + 1] = ' admitted'
  fields[#fields + 1] = admitted
  redis.call('HSET', state_key, unpack(fields))
end

-- Count a denial.
local function gov_deny(state_key)
  redis.call('HINCRBY', state_key, ' denied', 1)
end

-- The acquire of a resource with one limit (nearly every resource), decided straight from
-- its state hash's fields (`flat`), without gov_read's and gov_decide's tables: this is the
-- governor's hot path. Returns governor_acquire.lua's reply, or nil when the hash holds
-- anything else than one limit's config copy and at most that limit's bucket (gov_decide
-- then decides).
local function gov_acquire_one(state_key, flat, cost, now)
  local name, cfg, bucket_name, bucket, admitted
  for i = 1, #flat, 2 do
    local field = flat[i]
    if gov_byte(field, 1) ~= 32 then
      if bucket_name then
        return nil
      end
      bucket_name, bucket = field, flat[i + 1]
    elseif gov_byte(field, 2) == 99 then -- " cfg <name>"
      if name then
        return nil
      end
      name, cfg = gov_sub(field, 6), flat[i + 1]
    elseif field == ' admitted' then
      admitted = flat[i + 1]
    end
  end
  if name == nil or bucket_name and bucket_name ~= name then
    return nil
  end
  local a, b, cap, capacity, units, last = gov_bucket(cfg, bucket, now)
  if cost > capacity then
    gov_deny(state_key)
    return {0, units, b, -1, name}
  end
  local need = cost * b
  if units < need then
    gov_deny(state_key)
    return {0, units, b, gov_ceil((need - units) / a), name}
  end
  redis.call('HSET', state_key, name, string.format('%d %d %d %d', units - need, last, b, cap),
             ' admitted', string.format('%d', (gov_num(admitted) or 0) + 1))
  return {1, units - need, b, 0, name}
end
