-- Take due deliveries, endpoint by endpoint (earliest first), each endpoint at most ``cap``
-- in flight (across all workers), ``limit`` in all; each is leased until now + lease and its
-- attempt counted at once (a delivery that kills its worker uses up its schedule). A lease
-- that ended unsettled (its worker died) is leased again to this claim and returned flagged
-- lost: the caller settles it as a failed attempt. The deliveries of a disabled endpoint go
-- to its dead-letter list (counted dead; the list cut to its ``keep`` newest); those of a
-- removed one, and its dead-letter list, are dropped: at most ``chunk`` of them per claim.
-- KEYS: the endpoints hash, the state hash, the counters hash
-- ARGV: base, now, lease, cap, limit, endpoints to look at (at most), chunk, keep, then the
--   endpoints to leave (their secrets do not open with the caller's key: another worker
--   sends them)
-- Returns: the schedule's next time ('' if none), then per delivery 10 values: id, endpoint,
-- attempts (before this one; a lost one: with the lost one), webhook-id, body ('' if lost),
-- event time, failing since ('' if not failing), lease end (the claim's token: a settle
-- changes the delivery only while it holds this lease), the endpoint's last failure ('' if
-- none), '1' if lost ('' if to be sent)
local now, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local cap, limit, looks = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local out = {''}
local ends = now + lease
local token = string.format('%.17g', ends)
local taken = 0
local chunk, keep = tonumber(ARGV[7]), tonumber(ARGV[8])
local budget, buried, trimmed = chunk, 0, 0
local skip = {}
for i = 9, #ARGV do skip[ARGV[i]] = true end
local eps = redis.call('ZRANGEBYSCORE', schedule, '-inf', now, 'LIMIT', 0, looks)
for _, ep in ipairs(eps) do
  if taken >= limit then break end
  if not skip[ep] then  -- a skipped endpoint is left as it is
    local text = redis.call('HGET', KEYS[1], ep)
    local disabled = nil
    if text then
      local endpoint = cjson.decode(text)
      if type(endpoint.disabled) == 'table' then
        disabled = 'endpoint disabled: ' .. tostring(endpoint.disabled.reason)
      end
    end
    if not text or disabled then
      -- At most ``budget`` deliveries buried or dropped per claim (a script blocks Redis):
      -- an endpoint with more left is looked at again at once, by the next claim.
      local keys = {due_key(ep), flight_key(ep)}
      if not text then table.insert(keys, dead_key(ep)) end
      for _, key in ipairs(keys) do
        if budget <= 0 then break end
        for _, id in ipairs(redis.call('ZRANGE', key, 0, budget - 1)) do
          if disabled then
            buried = buried + bury(ep, id, now, disabled)
          else
            drop(ep, id)
          end
          budget = budget - 1
        end
      end
      if disabled then trimmed = trimmed + trim_dead(ep, keep, chunk) end
      if budget > 0 then
        redis.call('ZREM', schedule, ep)
        if not text then  -- removed: its health goes too
          redis.call('HDEL', KEYS[2], ep .. ' last_success', ep .. ' failing_since',
            ep .. ' last_failure', ep .. ' last_outcome')
        end
      else
        redis.call('ZADD', schedule, 0, ep)
      end
    else
      local flight = flight_key(ep)
      local streak = redis.call('HMGET', KEYS[2], ep .. ' failing_since', ep .. ' last_failure')
      local failing, last = streak[1] or '', streak[2] or ''
      -- A lease that ended unsettled: its attempt (counted at its claim) was lost with its
      -- worker. Leased again to this claim, returned flagged, for the schedule to settle.
      for _, id in ipairs(redis.call('ZRANGEBYSCORE', flight, '-inf', now)) do
        local d = redis.call('HMGET', delivery_key(id), 'attempts', 'webhook_id', 'event_at')
        if d[2] then
          redis.call('ZADD', flight, ends, id)
          for _, value in ipairs({id, ep, d[1], d[2], '', d[3], failing, token, last, '1'}) do
            table.insert(out, value)
          end
        else
          redis.call('ZREM', flight, id)
          redis.call('ZREM', pending_key(ep), id)
        end
      end
      local room = math.min(cap - redis.call('ZCARD', flight), limit - taken)
      if room > 0 then
        local ids = redis.call('ZRANGEBYSCORE', due_key(ep), '-inf', now, 'LIMIT', 0, room)
        for _, id in ipairs(ids) do
          redis.call('ZREM', due_key(ep), id)
          local d = redis.call('HMGET', delivery_key(id), 'attempts', 'webhook_id', 'body',
            'event_at')
          if d[2] then
            redis.call('ZADD', flight, ends, id)
            redis.call('HINCRBY', delivery_key(id), 'attempts', 1)  -- counted as it starts
            for _, value in ipairs({id, ep, d[1], d[2], d[3], d[4], failing, token, last, ''}) do
              table.insert(out, value)
            end
            taken = taken + 1
          else
            redis.call('ZREM', pending_key(ep), id)
          end
        end
      end
      reschedule(ep, cap)
    end
  end
end
if buried > 0 then redis.call('HINCRBY', KEYS[3], 'dead', buried) end
if trimmed > 0 then redis.call('HINCRBY', KEYS[3], 'dead dropped', trimmed) end
local next = redis.call('ZRANGE', schedule, 0, 0, 'WITHSCORES')
if #next > 0 then out[1] = next[2] end
return out
