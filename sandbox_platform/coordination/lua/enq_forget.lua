-- enq_forget.lua: a publish failed after the enqueue-side dedupe marked its jobs: unmark
-- them, so a re-submission publishes again instead of answering with a job never sent.
--
-- KEYS[1], ..., KEYS[i]   an idempotency record ({prefix}:idem:r:{<key>})
-- ARGV[1], ..., ARGV[i]   what this enqueue marked there ("<task id> <fingerprint>")
--
-- A record is unmarked only while it still names that task id. Returns how many were.

-- @include _common.lua
-- @include _claim.lua

local unmarked = 0
for i = 1, #KEYS do
  local space = string.find(ARGV[i], ' ', 1, true)
  unmarked = unmarked + enq_unmark(KEYS[i], string.sub(ARGV[i], 1, (space or #ARGV[i] + 1) - 1))
end
return unmarked
