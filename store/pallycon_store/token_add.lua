-- Add an HTTP API token: its record under the SHA-256 of the token, its name pointing there.
-- KEYS: the tokens hash, the names hash. ARGV: name, token hash, record JSON.
-- Returns 1, or 0 when the name is taken (nothing written).
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
