-- ack.lua: acknowledge deliveries (kombu's unacked bookkeeping removed in one call), storing
-- first the idempotency results that ride with them (as idem_complete.lua would) and pushing
-- their run records onto the run-record outbox.
--
-- KEYS[1]          the unacked hash (delivery tag -> [message, exchange, routing key])
-- KEYS[2]          the unacked index (sorted set: delivery tag by delivery time)
-- ARGV[1]          c, the number of riders that follow
-- ARGV[2 .. 1+5c]  c riders of five values (_riders.lua): a completion, a run record, or both
-- ARGV[2+5c ..]    delivery tags
--
-- Returns the number of tags that were still unacknowledged, then one status per rider
-- (1 stored, 0 stale token, "broken: <error>": see _riders.lua). The riders' keys are not in
-- KEYS: the transport sends them only when broker and coordination share one node.

-- @include _common.lua
-- @include _claim.lua
-- @include _riders.lua

local c = tonumber(ARGV[1])
local out = {0}
for _, status in ipairs(riders_settle(2, c)) do
  out[#out + 1] = status
end
local removed = 0
for i = 2 + 5 * c, #ARGV do
  redis.call('ZREM', KEYS[2], ARGV[i])
  removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
end
out[1] = removed
return out
