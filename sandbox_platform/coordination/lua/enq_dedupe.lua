-- enq_dedupe.lua: enqueue-side dedupe of a whole bulk enqueue, all or nothing.
--
-- KEYS[1], KEYS[2], ..., KEYS[i]   the idempotency record of call i ({prefix}:idem:r:{<key>})
-- ARGV[1], ARGV[3], ..., ARGV[2i-1] "<task id> <fingerprint>" of call i
-- ARGV[2], ARGV[4], ..., ARGV[2i]   ttl of call i in seconds
--
-- First every record is read: if a live one holds another fingerprint, nothing is written.
-- Returns {"conflict", i} then. Otherwise each call is marked as the first job under its key
-- unless its record names one (enq_mark in _claim.lua). Returns {"ok", v1, v2, ...} with
-- vi = "" when call i is the first under its key, else "<first task id> <fingerprint>". A
-- key given twice: the second call gets the first one's id.

-- @include _common.lua
-- @include _claim.lua

local function split(value)
  local space = string.find(value, ' ', 1, true)
  return string.sub(value, 1, space - 1), string.sub(value, space + 1)
end

local now_ms = math.floor(sp_now_us() / 1000)
for i = 1, #KEYS do
  local r = redis.call('HMGET', KEYS[i], 'fp', 'exp')
  if r[1] and not rec_ended(r[2], now_ms) then
    local _, fp = split(ARGV[2 * i - 1])
    if not fp_same(r[1], fp) then
      return {'conflict', i}
    end
  end
end
local out = {'ok'}
for i = 1, #KEYS do
  local tid, fp = split(ARGV[2 * i - 1])
  out[#out + 1] = enq_mark(KEYS[i], tid, fp, tonumber(ARGV[2 * i]) * 1000, now_ms)
end
return out
