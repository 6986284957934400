-- A token bucket shared by all workers, on the server's clock. Returns ms to wait (0: granted,
-- and the call counted under ARGV[3] in the counters hash).
-- KEYS: the bucket, the counters, the API call statistics
-- ARGV: rate (tokens/s), burst, counter ('' = none), the bucket's expiry when idle (ms), then
-- pairs (counter, amount) added to the API call statistics whatever the answer (earlier calls)
for i = 5, #ARGV - 1, 2 do redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[3], 1) end
else
  wait = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return wait
