-- publish_once.lua: publish a message unless its idempotency key was published before by
-- another job.
--
-- KEYS[1]  the idempotency record ({prefix}:idem:r:{<key>})
-- KEYS[2]  the queue list
-- ARGV[1]  "<task id> <fingerprint>" of this job
-- ARGV[2]  ttl of the enqueue-side dedupe in seconds
-- ARGV[3]  the message, or "" to mark only (the caller pushes it: kombu's own publish, for a
--          queue with an expiry or inside a producer.batch())
--
-- Returns "" when the message was pushed: no job was marked under the key (this one is now,
-- in the same atomic step: enq_mark in _claim.lua) or the mark names this same task id (a
-- retry or a deferral publishes the job again). Otherwise returns what the record holds
-- ("<first task id> <fingerprint>", or " <fingerprint>" for another fingerprint no enqueue
-- marked) and pushes nothing: the caller answers with that job's id, or raises a conflict.

-- @include _common.lua
-- @include _claim.lua

local space = string.find(ARGV[1], ' ', 1, true)
local tid, fp = string.sub(ARGV[1], 1, space - 1), string.sub(ARGV[1], space + 1)
local held = enq_mark(KEYS[1], tid, fp, tonumber(ARGV[2]) * 1000, math.floor(sp_now_us() / 1000))
if held ~= '' then
  local held_space = string.find(held, ' ', 1, true)
  if string.sub(held, 1, held_space - 1) ~= tid then
    return held
  end
end
if ARGV[3] ~= '' then
  redis.call('LPUSH', KEYS[2], ARGV[3])
end
return ''
