-- Remove an HTTP API token by its name: its record and its name, at once.
-- KEYS: the tokens hash, the names hash. ARGV: name.
-- Returns 1, or 0 when no token has that name.
local hash = redis.call('HGET', KEYS[2], ARGV[1])
if not hash then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], hash)
return 1
