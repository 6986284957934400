-- A claimed delivery put back without an attempt (no request was sent): due again at a time,
-- its attempts and its endpoint's failing streak untouched, nothing counted. Only while its
-- claim still holds it.
-- ARGV: base, now, cap, id, endpoint, due at, the claim's lease end
-- Returns: 1, or 0 if another claim held it by then
local cap, id, ep = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local held = redis.call('ZSCORE', flight_key(ep), id)
if not held or tonumber(held) ~= tonumber(ARGV[7]) then
  return 0
end
redis.call('ZREM', flight_key(ep), id)
redis.call('ZADD', due_key(ep), ARGV[6], id)
reschedule(ep, cap)
return 1
