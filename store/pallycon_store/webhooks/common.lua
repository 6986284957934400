-- Shared by the webhook delivery scripts (prepended to each, see deliveries.py). ARGV[1] is
-- the prefix of the webhook keys (Keys.webhooks_base); the keys below mirror Keys'
-- webhook_due, webhook_in_flight, webhook_pending, webhook_dead, webhook_delivery and
-- webhook_schedule.
local base = ARGV[1]
local function due_key(ep) return base .. 'due:' .. ep end
local function flight_key(ep) return base .. 'inflight:' .. ep end
local function pending_key(ep) return base .. 'pending:' .. ep end
local function dead_key(ep) return base .. 'dead:' .. ep end
local function delivery_key(id) return base .. 'delivery:' .. id end
local schedule = base .. 'schedule'

-- When the claim should next look at an endpoint: its earliest due delivery or lease end;
-- with ``cap`` deliveries in flight, its earliest lease end (a settle looks again sooner).
local function reschedule(ep, cap)
  local d = redis.call('ZRANGE', due_key(ep), 0, 0, 'WITHSCORES')
  local f = redis.call('ZRANGE', flight_key(ep), 0, 0, 'WITHSCORES')
  local at = nil
  if #f > 0 and redis.call('ZCARD', flight_key(ep)) >= cap then
    at = tonumber(f[2])
  else
    if #d > 0 then at = tonumber(d[2]) end
    if #f > 0 and (at == nil or tonumber(f[2]) < at) then at = tonumber(f[2]) end
  end
  if at then redis.call('ZADD', schedule, at, ep) else redis.call('ZREM', schedule, ep) end
end

-- A delivery to the endpoint's dead-letter list, saying why (it keeps its body and outcome).
local function bury(ep, id, now, reason)
  redis.call('ZREM', due_key(ep), id)
  redis.call('ZREM', flight_key(ep), id)
  redis.call('ZREM', pending_key(ep), id)
  if redis.call('EXISTS', delivery_key(id)) == 1 then
    redis.call('HSET', delivery_key(id), 'dead_at', now, 'dead_reason', reason)
    redis.call('ZADD', dead_key(ep), now, id)
    return 1
  end
  return 0
end

-- A delivery dropped without a trace (its endpoint was removed, or it is a dead letter past
-- the number kept).
local function drop(ep, id)
  redis.call('ZREM', due_key(ep), id)
  redis.call('ZREM', flight_key(ep), id)
  redis.call('ZREM', pending_key(ep), id)
  redis.call('ZREM', dead_key(ep), id)
  redis.call('DEL', delivery_key(id))
end

-- The endpoint's dead-letter list cut to its ``keep`` newest, the oldest dropped (at most
-- ``chunk`` at once): how many were.
local function trim_dead(ep, keep, chunk)
  local excess = math.min(redis.call('ZCARD', dead_key(ep)) - keep, chunk)
  if excess <= 0 then return 0 end
  for _, id in ipairs(redis.call('ZRANGE', dead_key(ep), 0, excess - 1)) do drop(ep, id) end
  return excess
end
