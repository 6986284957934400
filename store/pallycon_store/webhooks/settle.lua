-- One attempt's end: counted (by outcome, its latency), and its delivery delivered (deleted;
-- the lag counted), due again at a time, dead (the dead-letter list), or its endpoint disabled
-- (this delivery to the dead-letter list; the claims bury the endpoint's other pending
-- deliveries, a chunk at a time). The attempt that disabled the endpoint writes its event and
-- counts it even if its lease had ended. An attempt
-- whose lease had ended, and which another claim now holds, changes nothing but the counters
-- (unless it delivered).
-- KEYS: the counters hash, the state hash, the webhook events stream, the endpoints hash
-- ARGV: base, now, cap, id, endpoint, settle (delivered|retry|dead|disable), next time,
--   reason, kind, attempts, latency bucket ('' = no response), latency ms, lag bucket, lag ms,
--   event JSON (disable: '' if the endpoint was disabled already), events kept, the claim's lease end, the attempt's outcome, the
--   start of the endpoint's failing streak (a failure: rules.streak_start; '' leaves it),
--   the dead letters kept per endpoint (the oldest beyond are dropped, a chunk at most), chunk
local now, cap, id, ep, settle = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local counters, state = KEYS[1], KEYS[2]
redis.call('HINCRBY', counters, 'attempts ' .. ARGV[9], 1)
if ARGV[11] ~= '' then
  redis.call('HINCRBY', counters, 'latency ' .. ARGV[11], 1)
  redis.call('HINCRBY', counters, 'latency sum ms', ARGV[12])
  redis.call('HINCRBY', counters, 'latency count', 1)
end
local key = delivery_key(id)
local exists = redis.call('EXISTS', key) == 1
local known = redis.call('HEXISTS', KEYS[4], ep) == 1  -- not removed meanwhile
if settle == 'delivered' then
  if known then
    redis.call('HSET', state, ep .. ' last_success', now)
    redis.call('HDEL', state, ep .. ' failing_since', ep .. ' last_failure', ep .. ' last_outcome')
  end
  if exists then
    redis.call('HINCRBY', counters, 'delivered', 1)
    redis.call('HINCRBY', counters, 'lag ' .. ARGV[13], 1)
    redis.call('HINCRBY', counters, 'lag sum ms', ARGV[14])
    redis.call('HINCRBY', counters, 'lag count', 1)
    drop(ep, id)
  end
  reschedule(ep, cap)
  return 1
end
if settle == 'disable' and ARGV[15] ~= '' then  -- it disabled the endpoint: said, held or not
  redis.call('HINCRBY', counters, 'disabled', 1)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[16], '*', 'event', ARGV[15])
  redis.call('ZADD', schedule, 0, ep)  -- the claims bury its deliveries, a chunk at a time
end
local held = redis.call('ZSCORE', flight_key(ep), id)
if not exists or not held or tonumber(held) ~= tonumber(ARGV[17]) then
  return 0
end
if ARGV[19] ~= '' then  -- '' (a lost worker): the streak left as it is
  local start = ARGV[19]
  local success = tonumber(redis.call('HGET', state, ep .. ' last_success') or '')
  if success and success >= tonumber(start) then start = now end  -- a 2xx since ended it
  redis.call('HSET', state, ep .. ' failing_since', start, ep .. ' last_failure', now,
    ep .. ' last_outcome', ARGV[18])
end
redis.call('HSET', key, 'attempts', ARGV[10], 'last_outcome', ARGV[18], 'last_at', now)
if settle == 'retry' then
  redis.call('ZREM', flight_key(ep), id)
  redis.call('ZADD', due_key(ep), ARGV[7], id)
elseif settle == 'dead' or settle == 'disable' then
  bury(ep, id, now, ARGV[8])
  redis.call('HINCRBY', counters, 'dead', 1)
  local trimmed = trim_dead(ep, tonumber(ARGV[20]), tonumber(ARGV[21]))
  if trimmed > 0 then redis.call('HINCRBY', counters, 'dead dropped', trimmed) end
end
if settle == 'disable' then return 1 end
reschedule(ep, cap)
return 1
