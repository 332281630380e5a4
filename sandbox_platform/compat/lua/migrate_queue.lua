-- migrate_queue.lua: move messages of a 0.1 (unqualified) queue to the mode-qualified queues.
--
-- KEYS[1]  the unqualified queue's list (e.g. sandbox_platform)
-- KEYS[2]  the sandbox queue's list (sandbox_platform.sandbox)
-- KEYS[3]  the live queue's list (sandbox_platform.live)
-- ARGV[1]  the mode of a message without an sp_mode header ('sandbox' or 'live')
-- ARGV[2]  how many messages to move at most in this call
--
-- Returns {moved to sandbox, moved to live, left in KEYS[1]}. Oldest first (kombu pushes on
-- the left and pops on the right), so the order of the jobs is kept. Nothing is ever out of
-- a list: each message moves inside this one atomic call.

local moved_sandbox, moved_live = 0, 0
for _ = 1, tonumber(ARGV[2]) do
  local raw = redis.call('RPOP', KEYS[1])
  if not raw then
    break
  end
  local mode = ARGV[1]
  local ok, message = pcall(cjson.decode, raw)
  if ok and type(message) == 'table' and type(message.headers) == 'table' then
    local header = message.headers.sp_mode
    if header == 'sandbox' or header == 'live' then
      mode = header
    end
  end
  if mode == 'live' then
    redis.call('LPUSH', KEYS[3], raw)
    moved_live = moved_live + 1
  else
    redis.call('LPUSH', KEYS[2], raw)
    moved_sandbox = moved_sandbox + 1
  end
end
return {moved_sandbox, moved_live, redis.call('LLEN', KEYS[1])}
