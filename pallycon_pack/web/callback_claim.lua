-- Decide what one callback does, atomically.
-- KEYS: job index, poll schedule, counters, then the coalescing marker of each candidate job
--       field (one or two: a callback of the default site finds its job under the bare job id
--       or, for a request that named the default site, under "<site>/<job id>")
-- ARGV: the claimed entry's new score (now + lease), coalescing window (ms), the counters'
--       names: unknown job, coalesced, used; then the candidate job fields (`Keys.job_field`),
--       in the order of their markers
-- A job that is not indexed, or whose request is not on the poll schedule, is unknown: there is
-- nothing to pull forward. Within the window of the last poll a callback sent: coalesced. Else
-- the entry is claimed like a sweeper claims it (its score moved to the lease's end, so that no
-- sweeper dispatches it too, and it comes back by itself should the poll task be lost) and the
-- request id is returned for one poll task.
local request, marker = false, nil
for n = 6, #ARGV do
  request = redis.call('HGET', KEYS[1], ARGV[n])
  if request then marker = KEYS[n - 2]; break end
end
if not request or not redis.call('ZSCORE', KEYS[2], request) then
  redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
  return {'unknown', ''}
end
if not redis.call('SET', marker, request, 'NX', 'PX', ARGV[2]) then
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
  return {'coalesced', request}
end
redis.call('ZADD', KEYS[2], 'XX', ARGV[1], request)
redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
return {'poll', request}
