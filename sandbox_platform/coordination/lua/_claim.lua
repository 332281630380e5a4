-- _claim.lua: the idempotency record, shared by the idem_*, enq_* and admission scripts.
-- Needs _common.lua included before it.
--
-- One hash per idempotency key, {prefix}:idem:r:{key}:
--   fp      fingerprint of the arguments the key was first used with
--   tid     id of the first job published under the key (the enqueue-side dedupe)
--   state   "queued" (published, not claimed) | "running" | "done"
--   token   fencing token of the latest holder; only ever grows, kept past the record's end
--   lease   lease end of the running holder, Redis time in milliseconds
--   ttl     how long (ms) the record is kept once done
--   result  the JSON result, when done
--   exp     end of the record, Redis time in ms: after it the key is free again and only
--           its token counts (the hash itself is kept FENCE_MARGIN_MS longer for the token)
-- A record written before 0.2 has no exp field (its hash expired with it) and kept its
-- counter in the fence key {prefix}:idem:f:{key}; a new token starts above that counter.

local FENCE_MARGIN_MS = 3600000

-- True when the stored fingerprint is `fp`: a record written before 0.2 keeps all 64 hex
-- digits of the sha256, later ones the first 32 (what the caller passes).
local function fp_same(stored, fp)
  return stored == fp or (#stored > #fp and string.sub(stored, 1, #fp) == fp)
end

-- True when the record whose exp field is `exp` (a string or false) has ended.
local function rec_ended(exp, now_ms)
  local e = tonumber(exp)
  return e ~= nil and e <= now_ms
end

-- Set the end of record `rec_key` to `exp_ms`; the hash outlives it by the fence margin.
local function rec_set_end(rec_key, exp_ms, now_ms)
  redis.call('HSET', rec_key, 'exp', sp_fmt(exp_ms))
  redis.call('PEXPIRE', rec_key, exp_ms - now_ms + FENCE_MARGIN_MS)
end

-- Empty a record, keeping only its token (for the fence margin; nothing without a token).
local function rec_clear(rec_key)
  local token = redis.call('HGET', rec_key, 'token')
  redis.call('DEL', rec_key)
  if token then
    redis.call('HSET', rec_key, 'token', token)
    redis.call('PEXPIRE', rec_key, FENCE_MARGIN_MS)
  end
end

-- The claim as it stands, or nil when it can be acquired (absent, ended, queued, or a
-- running holder's lease expired). Returns {status, token, result, lease_left_ms}.
local function claim_peek(rec_key, fp, now_ms)
  local r = redis.call('HMGET', rec_key, 'fp', 'state', 'token', 'lease', 'result', 'exp')
  if not r[1] or rec_ended(r[6], now_ms) then
    return nil
  end
  local token = tonumber(r[3]) or 0
  if not fp_same(r[1], fp) then
    return {'conflict', token, '', 0}
  end
  if r[2] == 'done' then
    return {'done', token, r[5] or '', 0}
  end
  if r[2] == 'running' then
    local lease = tonumber(r[4]) or 0
    if lease > now_ms then
      return {'in_flight', token, '', lease - now_ms}
    end
  end
  return nil
end

-- Acquire the claim with a new, larger fencing token (after claim_peek answered nil).
local function claim_take(rec_key, fence_key, fp, lease_ms, ttl_ms, now_ms)
  local r = redis.call('HMGET', rec_key, 'token', 'exp')
  if rec_ended(r[2], now_ms) then
    rec_clear(rec_key)
  end
  local token = tonumber(r[1]) or tonumber(redis.call('GET', fence_key)) or 0
  token = token + 1
  local exp = now_ms + math.max(lease_ms, ttl_ms)
  redis.call('HSET', rec_key, 'fp', fp, 'state', 'running', 'token', sp_fmt(token),
             'lease', sp_fmt(now_ms + lease_ms), 'ttl', sp_fmt(ttl_ms), 'exp', sp_fmt(exp))
  redis.call('PEXPIRE', rec_key, exp - now_ms + FENCE_MARGIN_MS)
  return {'acquired', token, '', lease_ms}
end

-- Store the result of a run if `token` (a string) is still the running holder's; the record is
-- then kept for its ttl from now. Returns 1 when stored, 0 when the token is stale.
local function claim_complete(rec_key, token, result)
  local r = redis.call('HMGET', rec_key, 'state', 'token', 'ttl')
  if r[1] ~= 'running' or r[2] ~= token then
    return 0
  end
  local now_ms = math.floor(sp_now_us() / 1000)
  local exp = now_ms + tonumber(r[3])
  redis.call('HSET', rec_key, 'state', 'done', 'result', result, 'exp', sp_fmt(exp))
  redis.call('HDEL', rec_key, 'lease')
  redis.call('PEXPIRE', rec_key, exp - now_ms + FENCE_MARGIN_MS)
  return 1
end

-- True when `token` is the running holder's token.
local function claim_holds(rec_key, token)
  local r = redis.call('HMGET', rec_key, 'state', 'token')
  return r[1] == 'running' and r[2] == token
end

-- Enqueue-side dedupe: mark job `tid` (arguments `fp`) as the first published under the key,
-- unless the record names one already. Returns "" when marked now, "<tid> <fp>" of the first
-- job otherwise (the caller compares: same tid = this job again, other fp = conflict), or
-- " <fp>" for a live record no enqueue marked whose fingerprint differs.
local function enq_mark(rec_key, tid, fp, ttl_ms, now_ms)
  local r = redis.call('HMGET', rec_key, 'fp', 'tid', 'exp')
  if r[1] and not rec_ended(r[3], now_ms) then
    local same = fp_same(r[1], fp)
    if r[2] then
      return r[2] .. ' ' .. (same and fp or r[1])
    end
    if not same then
      return ' ' .. r[1]
    end
    redis.call('HSET', rec_key, 'tid', tid)
    local exp = tonumber(r[3])
    if exp and exp < now_ms + ttl_ms then
      rec_set_end(rec_key, now_ms + ttl_ms, now_ms)
    end
    return ''
  end
  if r[1] then
    rec_clear(rec_key)
  end
  local exp = now_ms + ttl_ms  -- (rec_set_end, folded into the one HSET)
  redis.call('HSET', rec_key, 'fp', fp, 'tid', tid, 'state', 'queued', 'exp', sp_fmt(exp))
  redis.call('PEXPIRE', rec_key, exp - now_ms + FENCE_MARGIN_MS)
  return ''
end

-- A publish failed after enq_mark marked job `tid`: unmark it, so a re-submission publishes
-- again. A record that only this enqueue made is ended. Returns 1 when unmarked.
local function enq_unmark(rec_key, tid)
  local r = redis.call('HMGET', rec_key, 'tid', 'state')
  if r[1] ~= tid then
    return 0
  end
  redis.call('HDEL', rec_key, 'tid')
  if r[2] == 'queued' then
    rec_clear(rec_key)
  end
  return 1
end
