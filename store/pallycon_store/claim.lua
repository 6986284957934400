-- Claim due members of a schedule: push their score to the lease's end, return them. Safe from
-- any number of workers at once: a member is claimed by exactly one.
-- KEYS: the schedule
-- ARGV: now, the lease's end, the most to claim, members per ZADD
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local chunk = tonumber(ARGV[4])
for i = 1, #due, chunk do
  local args = {}
  for j = i, math.min(i + chunk - 1, #due) do args[#args + 1] = ARGV[2]; args[#args + 1] = due[j] end
  redis.call('ZADD', KEYS[1], 'XX', unpack(args))
end
return due
