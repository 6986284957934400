-- Decide what one callback does, atomically.
-- KEYS: job index, poll schedule, this job's coalescing marker, counters
-- ARGV: job id, the claimed entry's new score (now + lease), coalescing window (ms),
--       the counters' names: unknown job, coalesced, used
-- A job that is not indexed, or whose request is not on the poll schedule, is unknown: there is
-- nothing to pull forward. Within the window of the last poll a callback sent: coalesced. Else
-- the entry is claimed like a sweeper claims it (its score moved to the lease's end, so that no
-- sweeper dispatches it too, and it comes back by itself should the poll task be lost) and the
-- request id is returned for one poll task.
local request = redis.call('HGET', KEYS[1], ARGV[1])
if not request or not redis.call('ZSCORE', KEYS[2], request) then
  redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
  return {'unknown', ''}
end
if not redis.call('SET', KEYS[3], request, 'NX', 'PX', ARGV[3]) then
  redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
  return {'coalesced', request}
end
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], request)
redis.call('HINCRBY', KEYS[4], ARGV[6], 1)
return {'poll', request}
