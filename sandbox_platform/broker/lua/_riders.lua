-- _riders.lua: what rides with acknowledgements (fetch.lua, ack.lua; broker/ack_riders.py).
-- Needs _common.lua and _claim.lua included before it.
--
-- A rider is five ARGV values: idempotency record key, fencing token, result JSON (all "" when
-- no completion rides), the run-record outbox list and the job's run record (both "" when no
-- record rides).

-- A run record whose result could not be stored: recorded failed, naming the record.
local function rider_row_failed(row, rec_key, problem)
  local ok, values = pcall(cjson.decode, row)
  if not ok or type(values) ~= 'table' then
    return row
  end
  values['state'] = 'failed'
  values['error'] = 'ResultNotStored("result not stored: idempotency record \'' .. rec_key
    .. '\': ' .. problem .. '")'
  return cjson.encode(values)
end

-- Settle `count` riders in ARGV from index `first`: store each completion (isolated: one whose
-- record holds another type fails alone and the record is left as it is), then push each run
-- record onto its outbox. Returns one status per rider, in order: 1 stored (or no
-- completion), 0 stale token (nothing stored), or "broken: <error>".
local function riders_settle(first, count)
  local statuses = {}
  for i = first, first + 5 * (count - 1), 5 do
    local status = 1
    if ARGV[i] ~= '' then
      local ok, stored = pcall(claim_complete, ARGV[i], ARGV[i + 1], ARGV[i + 2])
      if ok then
        status = stored
      else
        status = 'broken: ' .. sp_error_text(stored)
      end
    end
    if ARGV[i + 4] ~= '' then
      local row = ARGV[i + 4]
      if type(status) == 'string' then
        row = rider_row_failed(row, ARGV[i], string.sub(status, 9))
      end
      redis.call('RPUSH', ARGV[i + 3], row)
    end
    statuses[#statuses + 1] = status
  end
  return statuses
end
