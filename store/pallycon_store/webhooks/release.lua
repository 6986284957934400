-- A claimed delivery put back without an attempt (no request was sent): due again at a time,
-- the attempt counted at its claim taken back, its endpoint's failing streak untouched,
-- nothing counted. Only while its claim still holds it.
-- ARGV: base, now, cap, id, endpoint, due at, the claim's lease end
-- Returns: 1, or 0 if another claim held it by then
local cap, id, ep = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local held = redis.call('ZSCORE', flight_key(ep), id)
if not held or tonumber(held) ~= tonumber(ARGV[7]) then
  return 0
end
redis.call('ZREM', flight_key(ep), id)
redis.call('ZADD', due_key(ep), ARGV[6], id)
if redis.call('HINCRBY', delivery_key(id), 'attempts', -1) < 0 then
  redis.call('HSET', delivery_key(id), 'attempts', 0)
end
reschedule(ep, cap)
return 1
