-- ack.lua: acknowledge deliveries (kombu's unacked bookkeeping removed in one call).
--
-- KEYS[1]  the unacked hash (delivery tag -> [message, exchange, routing key])
-- KEYS[2]  the unacked index (sorted set: delivery tag by delivery time)
-- ARGV     delivery tags
--
-- Returns the number of tags that were still unacknowledged.

local removed = 0
for i = 1, #ARGV do
  redis.call('ZREM', KEYS[2], ARGV[i])
  removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
end
return removed
