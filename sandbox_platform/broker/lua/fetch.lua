-- fetch.lua: acknowledge what the consumer finished, then take up to n messages, each one
-- recorded as unacknowledged in the same atomic call, and admitted when it asks to be.
--
-- kombu's Redis transport pops a message (BRPOP) and records it as unacknowledged with a
-- second command: if Redis dies between the two, the message is nowhere. Here the pop and the
-- record are one script, and the consumer's acknowledgements ride along (one round trip per
-- job when busy, where kombu needs three).
--
-- Admission folded in: a message whose headers carry an admission plan (``sp_admit``,
-- written at enqueue: [idempotency key or "", fingerprint, lease ms, ttl ms,
-- [[resource, cost], ...]]) is admitted here exactly as admit.lua would (same keys, same
-- logic), unless it has an ETA or countdown (it runs later) or is a redelivery or a
-- postponed final failure (the worker decides those first). The worker uses the answer
-- instead of its own admission round trip.
--
-- Riders too: the idempotency results of jobs the consumer finished are stored (as
-- idem_complete.lua would) and their run records pushed onto the run-record outbox, in the
-- same atomic call that acknowledges them.
--
-- KEYS[1]         the unacked hash (delivery tag -> "[message, exchange, routing key]")
-- KEYS[2]         the unacked index (sorted set: delivery tag by delivery time, seconds)
-- KEYS[3 .. 2+q]  the queue lists to take from, in priority order
-- ARGV[1]         n, the most messages to take
-- ARGV[2]         the platform's key prefix ("" to admit nothing here)
-- ARGV[3]         a, the number of acknowledgements that follow
-- ARGV[4 .. 3+a]  delivery tags to acknowledge
-- ARGV[4+a]       c, the number of riders that follow
-- ARGV[5+a ..]    c riders of five values (_riders.lua): a completion, a run record, or both
-- ARGV[5+a+5c ..] per queue list, the list that keeps what is not a message ("<queue>.malformed")
--
-- Returns c, then one status per rider (1 stored, 0 stale token, "broken: <error>" when its
-- record could not take it: that completion only fails, see _riders.lua), then
-- 8 values per element taken: kind (1 a message, recorded as unacknowledged; 0 an element
-- that is not one, moved to its malformed list), the 1-based index of its list in KEYS[3 ..],
-- the element, then the admission {status, token, result, wait_us, resource} (status "" when
-- it was not admitted here). Keys of the admission and of the completions are not in KEYS:
-- this runs on one node (the transport uses them only when broker and coordination share it).

-- @include _common.lua
-- @include _governor.lua
-- @include _claim.lua
-- @include _admit.lua
-- @include _riders.lua

local n = tonumber(ARGV[1])
local prefix = ARGV[2]
local a = tonumber(ARGV[3])
local c = tonumber(ARGV[4 + a])
local malformed_at = 4 + a + 5 * c  -- ARGV[malformed_at + k] keeps what KEYS[2 + k] held
local statuses = riders_settle(5 + a, c)  -- before the acknowledgements, same call
for i = 4, 3 + a do
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[1], ARGV[i])
end

local NONE = {'', 0, '', 0, ''}

local function admit_here(msg, props, now)
  local headers = msg['headers']
  if prefix == '' or type(headers) ~= 'table' then
    return NONE
  end
  local plan = headers['sp_admit']
  if type(plan) ~= 'table' or type(plan[1]) ~= 'string' or type(plan[2]) ~= 'string'
      or type(plan[3]) ~= 'number' or type(plan[4]) ~= 'number' or type(plan[5]) ~= 'table' then
    return NONE
  end
  local eta = headers['eta']
  local info = props['delivery_info']
  if (eta ~= nil and eta ~= cjson.null) or headers['redelivered'] or headers['sp_final_failure']
      or (type(info) == 'table' and info['redelivered']) then
    return NONE
  end
  local takes = {}
  for i, spec in ipairs(plan[5]) do
    if type(spec) ~= 'table' or type(spec[1]) ~= 'string' or spec[1] == ''
        or type(spec[2]) ~= 'number' or spec[2] < 1 then
      return NONE
    end
    local base = prefix .. ':gov:{' .. spec[1] .. '}'
    takes[i] = {base .. ':cfg', base .. ':state', spec[2], spec[1]}
  end
  local rec, fence = nil, nil
  if plan[1] ~= '' then
    rec = prefix .. ':idem:r:{' .. plan[1] .. '}'
    fence = prefix .. ':idem:f:{' .. plan[1] .. '}'
  elseif #takes == 0 then
    return NONE
  end
  return sp_admit(rec, fence, plan[2], plan[3], plan[4], takes, now)
end

local now = sp_now_us()
local now_s = now / 1000000
local out = {c}
for _, status in ipairs(statuses) do
  out[#out + 1] = status
end
local got = 0
for k = 3, #KEYS do
  while got < n do
    local item = redis.call('RPOP', KEYS[k])
    if not item then
      break
    end
    local ok, msg = pcall(cjson.decode, item)
    local props = ok and type(msg) == 'table' and msg['properties']
    local tag = type(props) == 'table' and props['delivery_tag']
    local admission = NONE
    if type(tag) == 'string' and tag ~= '' then
      local info = props['delivery_info']
      if type(info) ~= 'table' then
        info = {}
      end
      local exchange = info['exchange']
      local routing_key = info['routing_key']
      if type(exchange) ~= 'string' then exchange = '' end
      if type(routing_key) ~= 'string' then routing_key = '' end
      redis.call('ZADD', KEYS[2], now_s, tag)
      redis.call('HSET', KEYS[1], tag,
        '[' .. item .. ',' .. cjson.encode(exchange) .. ',' .. cjson.encode(routing_key) .. ']')
      -- an admission that fails (e.g. a limit's config corrupted by hand) must not fail the
      -- fetch: the message stays delivered and the worker admits it on its own path
      local admitted_ok, answer = pcall(admit_here, msg, props, now)
      admission = admitted_ok and answer or NONE
      out[#out + 1] = 1
    else
      redis.call('LPUSH', ARGV[malformed_at + (k - 2)], item)
      out[#out + 1] = 0
    end
    out[#out + 1] = k - 2
    out[#out + 1] = item
    for j = 1, 5 do
      out[#out + 1] = admission[j]
    end
    got = got + 1
  end
  if got >= n then
    break
  end
end
return out
