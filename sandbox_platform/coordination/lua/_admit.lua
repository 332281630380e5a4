-- _admit.lua: the admission of one job, shared by admit.lua and the transport's fetch.lua.
-- Needs _common.lua, _governor.lua and _claim.lua included before it.
--
-- rec, fence  the idempotency record and fence keys, or nil without an idempotency key
-- fp          fingerprint of the arguments
-- lease_ms, ttl_ms
-- takes       a list of {config key, state key, cost, resource name}
-- now         Redis time in microseconds
-- checks      a list of {key, kind ("absent" | "below"), bound, name}, or nil
--
-- Returns {status, fencing token, result JSON or "", wait_us, resource}; see admit.lua.

-- the name of the first check that fails, or nil (coordination/checks.py)
local function sp_refusal(checks)
  for _, check in ipairs(checks or {}) do
    if check[2] == 'absent' then
      if redis.call('EXISTS', check[1]) == 1 then
        return check[4]
      end
    else
      local raw = redis.call('GET', check[1])
      local value = raw and tonumber(raw)
      if raw and not value then
        error('check ' .. check[4] .. ': ' .. check[1] .. ' does not hold an integer')
      end
      if (value or 0) >= check[3] then
        return check[4]
      end
    end
  end
  return nil
end

local function sp_admit(rec, fence, fp, lease_ms, ttl_ms, takes, now, checks)
  local now_ms = math.floor(now / 1000)
  if rec then
    local seen = claim_peek(rec, fp, now_ms)
    if seen then
      return {seen[1], seen[2], seen[3], seen[4] * 1000, ''}
    end
  end
  local refused = sp_refusal(checks)
  if refused then
    return {'refused', 0, '', 0, refused}
  end
  local plans = {}
  local worst_wait, worst_name = nil, ''
  for i, take in ipairs(takes) do
    local plan = gov_plan(take[1], take[2], take[3], now)
    if not plan.ok then
      gov_deny(take[2])
      if worst_wait == nil or worst_wait ~= -1 and (plan.wait_us == -1 or plan.wait_us > worst_wait) then
        worst_wait, worst_name = plan.wait_us, take[4]
      end
    end
    plans[i] = plan
  end
  if worst_wait ~= nil then
    return {'denied', 0, '', worst_wait, worst_name}
  end
  for i, take in ipairs(takes) do
    gov_commit(plans[i], take[2])
  end
  if not rec then
    return {'acquired', 0, '', 0, ''}
  end
  local taken = claim_take(rec, fence, fp, lease_ms, ttl_ms, now_ms)
  return {taken[1], taken[2], '', 0, ''}
end
