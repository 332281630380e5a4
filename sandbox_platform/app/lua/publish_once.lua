-- publish_once.lua: publish a message unless its idempotency key was published before by
-- another job.
--
-- KEYS[1]  the enqueue key ({prefix}:enq:{<idempotency key>})
-- KEYS[2]  the queue list
-- ARGV[1]  "<task id> <fingerprint>" of this job
-- ARGV[2]  ttl of the enqueue key in seconds
-- ARGV[3]  the message
--
-- Returns "" when the message was pushed: the key was free (it is set now, in the same atomic
-- step) or it names this same task id (a retry or a deferral publishes the job again).
-- Otherwise returns what the key holds and pushes nothing (the caller answers with that
-- job's id, or raises a conflict for other arguments).

local function task_id(value)
  local space = string.find(value, ' ', 1, true)
  return space and string.sub(value, 1, space - 1) or value
end

local held = redis.call('GET', KEYS[1])
if held then
  if task_id(held) ~= task_id(ARGV[1]) then
    return held
  end
else
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
redis.call('LPUSH', KEYS[2], ARGV[3])
return ''
