-- Take the due requests of submit lanes for a lease: push their score to the lease's end, put
-- them on their site's dispatched set (dropping those there that no longer count) and return
-- them per lane. Safe from any number of sweepers at once: a request is taken by exactly one.
-- A site given a budget (a site with a cap) spends it first on its lanes' due lookups:
-- requests in its in-flight set whose entry in the lane is due (their worker died mid-
-- registration, or their answer was lost). They hold their place at PallyCon already, so the
-- cap gives them none (were every place held by such requests, nothing would be taken again)
-- and they do not wait behind the lane's backlog (they are due later than what waits there).
-- Only when one of its requests was marked `submitting` before ARGV[4] is the in-flight set
-- read (no lookup falls due sooner): in steady state, one look at an index. Then the oldest
-- due requests, at most the lane's count and what is left of the site's budget.
-- KEYS: per lane, the lane, its site's dispatched set, in-flight set and `submitting` index
-- ARGV: now, the lease's end, when they stop counting as dispatched, marked before, then per
--       lane the most to take and its site's budget (-1: none, the count alone bounds it)
local out = {}
local now = tonumber(ARGV[1])
local budget, flying = {}, {}
for n = 1, #KEYS / 4 do
  local lane, dispatched = KEYS[4 * n - 3], KEYS[4 * n - 2]
  local flight, marked = KEYS[4 * n - 1], KEYS[4 * n]
  redis.call('ZREMRANGEBYSCORE', dispatched, '-inf', ARGV[1])  -- no longer counting
  local taken = {}
  local most = tonumber(ARGV[3 + 2 * n])
  if budget[flight] == nil then budget[flight] = tonumber(ARGV[4 + 2 * n]) end
  if budget[flight] > 0 then
    if flying[flight] == nil then
      flying[flight] = {}
      if #redis.call('ZRANGEBYSCORE', marked, '-inf', ARGV[4], 'LIMIT', 0, 1) > 0 then
        flying[flight] = redis.call('SMEMBERS', flight)
      end
    end
    local members = flying[flight]
    for first = 1, #members, 1000 do
      if budget[flight] <= 0 then break end
      local last = math.min(first + 999, #members)
      local scores = redis.call('ZMSCORE', lane, unpack(members, first, last))
      for i = 1, #scores do
        if scores[i] and tonumber(scores[i]) <= now and budget[flight] > 0 then
          local id = members[first + i - 1]
          redis.call('ZADD', lane, 'XX', ARGV[2], id)
          redis.call('ZADD', dispatched, ARGV[3], id)
          taken[#taken + 1] = id
          budget[flight] = budget[flight] - 1
        end
      end
    end
  end
  if budget[flight] >= 0 then most = math.min(most, budget[flight]) end
  if most > 0 then
    local due = redis.call('ZRANGEBYSCORE', lane, '-inf', ARGV[1], 'LIMIT', 0, most)
    for i = 1, #due do
      redis.call('ZADD', lane, 'XX', ARGV[2], due[i])
      redis.call('ZADD', dispatched, ARGV[3], due[i])
      taken[#taken + 1] = due[i]
    end
    if budget[flight] >= 0 then budget[flight] = budget[flight] - #due end
  end
  out[n] = taken
end
return out
