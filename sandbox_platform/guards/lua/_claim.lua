-- _claim.lua: idempotency-claim logic, shared by idem_claim.lua and admit.lua.
--
-- Record hash {prefix}:idem:r:{key}
--   fp      fingerprint of the arguments the key was first used with
--   state   "running" | "done"
--   token   fencing token of the current holder (from INCR on the fence key)
--   lease   lease end, Redis time in milliseconds
--   ttl     how long (ms) the record is kept once done
--   result  the JSON result, when done
-- Fence key {prefix}:idem:f:{key}: the INCR counter; it outlives its record by an hour, so
-- a key run again after its record expired still gets a larger token.

local FENCE_MARGIN_MS = 3600000

-- The claim as it stands, or nil when it can be acquired (absent, or its lease expired).
-- Returns {status, token, result, lease_left_ms}.
local function claim_peek(rec_key, fp, now_ms)
  local r = redis.call('HMGET', rec_key, 'fp', 'state', 'token', 'lease', 'result')
  if not r[1] then
    return nil
  end
  local token = tonumber(r[3]) or 0
  if r[1] ~= fp then
    return {'conflict', token, '', 0}
  end
  if r[2] == 'done' then
    return {'done', token, r[5] or '', 0}
  end
  local lease = tonumber(r[4]) or 0
  if lease > now_ms then
    return {'in_flight', token, '', lease - now_ms}
  end
  return nil
end

-- Acquire the claim with a new, larger fencing token.
local function claim_take(rec_key, fence_key, fp, lease_ms, ttl_ms, now_ms)
  local token = redis.call('INCR', fence_key)
  redis.call('DEL', rec_key)
  redis.call('HSET', rec_key, 'fp', fp, 'state', 'running', 'token', sp_fmt(token),
             'lease', sp_fmt(now_ms + lease_ms), 'ttl', sp_fmt(ttl_ms))
  local keep = math.max(lease_ms, ttl_ms)
  redis.call('PEXPIRE', rec_key, keep)
  redis.call('PEXPIRE', fence_key, keep + FENCE_MARGIN_MS)
  return {'acquired', token, '', lease_ms}
end

-- True when `token` is the running holder's token.
local function claim_holds(rec_key, token)
  local r = redis.call('HMGET', rec_key, 'state', 'token')
  return r[1] == 'running' and r[2] == token
end
