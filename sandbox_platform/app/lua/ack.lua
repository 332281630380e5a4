-- ack.lua: acknowledge deliveries (kombu's unacked bookkeeping removed in one call), storing
-- first the idempotency results that ride with them (as idem_complete.lua would).
--
-- KEYS[1]          the unacked hash (delivery tag -> [message, exchange, routing key])
-- KEYS[2]          the unacked index (sorted set: delivery tag by delivery time)
-- ARGV[1]          c, the number of completions that follow
-- ARGV[2 .. 1+3c]  c triples: idempotency record key, fencing token, result JSON
-- ARGV[2+3c ..]    delivery tags
--
-- Returns the number of tags that were still unacknowledged, then one status per completion
-- (1 stored, 0 stale token, "broken: <error>": see _claim.lua). The completions' keys are not
-- in KEYS: the transport sends them only when broker and coordination share one node.

-- @include _common.lua
-- @include _claim.lua

local c = tonumber(ARGV[1])
local out = {0}
for _, status in ipairs(claim_complete_all(2, c)) do
  out[#out + 1] = status
end
local removed = 0
for i = 2 + 3 * c, #ARGV do
  redis.call('ZREM', KEYS[2], ARGV[i])
  removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
end
out[1] = removed
return out
