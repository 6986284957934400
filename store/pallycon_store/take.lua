-- Take the oldest due requests of submit lanes for a lease: push their score to the lease's end
-- and put them on their site's dispatched set (dropping those there that no longer count),
-- returning them per lane. Safe from any number of
-- sweepers at once: a request is taken by exactly one.
-- KEYS: per lane, the lane then its site's dispatched set
-- ARGV: now, the lease's end, when they stop counting as dispatched, then per lane the most
--       to take
local out = {}
for n = 1, #KEYS / 2 do
  local lane, dispatched = KEYS[2 * n - 1], KEYS[2 * n]
  redis.call('ZREMRANGEBYSCORE', dispatched, '-inf', ARGV[1])  -- no longer counting
  local due = redis.call('ZRANGEBYSCORE', lane, '-inf', ARGV[1], 'LIMIT', 0, ARGV[3 + n])
  for i = 1, #due do
    redis.call('ZADD', lane, 'XX', ARGV[2], due[i])
    redis.call('ZADD', dispatched, ARGV[3], due[i])
  end
  out[n] = due
end
return out
