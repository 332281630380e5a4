-- enq_forget.lua: a publish failed after the enqueue-side dedupe wrote its keys: forget them,
-- so a re-submission publishes again instead of answering with a job that was never sent.
--
-- KEYS[1], ..., KEYS[i]   an enqueue key ({prefix}:enq:{<idempotency key>})
-- ARGV[1], ..., ARGV[i]   the value this enqueue wrote there ("<task id> <fingerprint>")
--
-- Each key is deleted only while it still holds that value. Returns how many were deleted.

local deleted = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    deleted = deleted + redis.call('DEL', KEYS[i])
  end
end
return deleted
