-- Take the due requests of submit lanes for a lease: push their score to the lease's end, put
-- them on their site's dispatched set (dropping those there that no longer count) and return
-- them per lane. Safe from any number of sweepers at once: a request is taken by exactly one.
-- First, up to its site's lookup budget (shared by the site's lanes), the lane's due lookups:
-- requests in the site's in-flight set whose entry here is due (their worker died mid-
-- registration, or their answer was lost). They hold their place at PallyCon already, so the
-- cap gives them none (were every place held by such requests, nothing would be taken again)
-- and they do not wait behind the lane's backlog (they are due later than what waits there).
-- Then the oldest due requests, at most the count given.
-- KEYS: per lane, the lane, its site's dispatched set, its site's in-flight set
-- ARGV: now, the lease's end, when they stop counting as dispatched, then per lane the most to
--       take and its site's lookup budget (0: none)
local out = {}
local now = tonumber(ARGV[1])
local budget, flying = {}, {}
for n = 1, #KEYS / 3 do
  local lane, dispatched, flight = KEYS[3 * n - 2], KEYS[3 * n - 1], KEYS[3 * n]
  redis.call('ZREMRANGEBYSCORE', dispatched, '-inf', ARGV[1])  -- no longer counting
  local taken = {}
  if budget[flight] == nil then budget[flight] = tonumber(ARGV[3 + 2 * n]) end
  if budget[flight] > 0 then
    if flying[flight] == nil then flying[flight] = redis.call('SMEMBERS', flight) end
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
  local most = tonumber(ARGV[2 + 2 * n])
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
