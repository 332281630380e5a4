-- enq_dedupe.lua: enqueue-side dedupe of a whole bulk enqueue, all or nothing.
--
-- KEYS[1], KEYS[2], ..., KEYS[i]   the enqueue key of call i ({prefix}:enq:{<idempotency key>})
-- ARGV[1], ARGV[3], ..., ARGV[2i-1] "<task id> <fingerprint>" of call i
-- ARGV[2], ARGV[4], ..., ARGV[2i]   ttl of call i in seconds
--
-- First every key is read: if one holds another fingerprint, nothing is written.
-- Returns {"conflict", i} then. Otherwise each key is set if absent (SET NX EX); Returns
-- {"ok", v1, v2, ...} with vi = "" when call i is the first under its key, else the value
-- the key holds ("<first task id> <fingerprint>"). A key given twice: the second call gets
-- the first one's id.

for i = 1, #KEYS do
  local held = redis.call('GET', KEYS[i])
  if held then
    local mine = ARGV[2 * i - 1]
    local fp = string.sub(mine, string.find(mine, ' ', 1, true) + 1)
    local held_fp = string.sub(held, (string.find(held, ' ', 1, true) or #held) + 1)
    if held_fp ~= fp then
      return {'conflict', i}
    end
  end
end
local out = {'ok'}
for i = 1, #KEYS do
  if redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'NX', 'EX', ARGV[2 * i]) then
    out[#out + 1] = ''
  else
    out[#out + 1] = redis.call('GET', KEYS[i]) or ''
  end
end
return out
