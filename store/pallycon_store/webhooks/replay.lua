-- Dead-lettered deliveries sent again: attempts reset, due now, off the dead-letter list;
-- the endpoint's failing streak is forgotten (its next failure starts a new one).
-- KEYS: the counters hash, the state hash
-- ARGV: base, now, cap, since (dead at or after), limit (taken off the lists at most: a
--   chunk, the caller loops), then the endpoint ids
-- Returns: how many were replayed, how many were taken off the lists (those whose delivery
--   was gone are not replayed)
local now, cap, since, limit = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local count, looked = 0, 0
for i = 6, #ARGV do
  local ep = ARGV[i]
  local ids = redis.call('ZRANGEBYSCORE', dead_key(ep), since, '+inf', 'LIMIT', 0, limit - looked)
  looked = looked + #ids
  for _, id in ipairs(ids) do
    redis.call('ZREM', dead_key(ep), id)
    local key = delivery_key(id)
    local at = redis.call('HGET', key, 'event_at')
    if at then
      redis.call('HSET', key, 'attempts', 0)
      redis.call('HDEL', key, 'dead_at', 'dead_reason')
      redis.call('ZADD', due_key(ep), now, id)
      redis.call('ZADD', pending_key(ep), at, id)
      count = count + 1
    end
  end
  if #ids > 0 then
    redis.call('HDEL', KEYS[2], ep .. ' failing_since', ep .. ' last_failure', ep .. ' last_outcome')
    reschedule(ep, cap)
  end
  if looked >= limit then break end
end
if count > 0 then redis.call('HINCRBY', KEYS[1], 'replayed', count) end
return {count, looked}
