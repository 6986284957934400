-- A marked request's registration is about to leave: write `sent_at` if the record is still
-- the version its sender marked (else the sender must not send: someone took it back or moved
-- it on). The version is not changed: the reconciler's change that registers it again is
-- guarded on `sent_at` instead (transition.lua), so exactly one of the two wins.
-- KEYS: record
-- ARGV: version, sent_at
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'sent_at', ARGV[2])
return 1
