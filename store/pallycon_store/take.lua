-- Take the due requests of submit lanes for a lease: push their score to the lease's end and
-- return them per lane. Safe from any number of sweepers at once: a request is taken by
-- exactly one.
-- First, outside the count, the lookups: requests marked `submitting` before ARGV[4] whose
-- entry in the lane is due (their worker died mid-registration, or their answer was lost). They
-- hold their place at PallyCon already, so neither the cap they count in nor the lane's backlog
-- holds them back (the oldest 500 marks of the site are looked at; the rest wait their turn).
-- Then the oldest due requests, at most the count given, put on their site's dispatched set
-- (dropping those there that no longer count).
-- KEYS: per lane, the lane, its site's dispatched set, its site's `submitting` state index
-- ARGV: now, the lease's end, when they stop counting as dispatched, marked before (or
--       '-inf': no lookups), then per lane the most to take
local out = {}
local now = tonumber(ARGV[1])
for n = 1, #KEYS / 3 do
  local lane, dispatched, marked = KEYS[3 * n - 2], KEYS[3 * n - 1], KEYS[3 * n]
  local taken = {}
  local stuck = redis.call('ZRANGEBYSCORE', marked, '-inf', ARGV[4], 'LIMIT', 0, 500)
  for i = 1, #stuck do
    local due = redis.call('ZSCORE', lane, stuck[i])
    if due and tonumber(due) <= now then
      redis.call('ZADD', lane, 'XX', ARGV[2], stuck[i])
      taken[#taken + 1] = stuck[i]
    end
  end
  redis.call('ZREMRANGEBYSCORE', dispatched, '-inf', ARGV[1])  -- no longer counting
  local most = tonumber(ARGV[4 + n])
  if most > 0 then
    local due = redis.call('ZRANGEBYSCORE', lane, '-inf', ARGV[1], 'LIMIT', 0, most)
    for i = 1, #due do
      redis.call('ZADD', lane, 'XX', ARGV[2], due[i])
      redis.call('ZADD', dispatched, ARGV[3], due[i])
      taken[#taken + 1] = due[i]
    end
  end
  out[n] = taken
end
return out
