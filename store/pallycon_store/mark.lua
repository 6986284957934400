#!lua flags=allow-oom
-- The durability mark (durability.py), written when Redis is out of memory and refused the plain
-- SET: the change it confirms was made before Redis ran out of room, and the mark keeps none
-- (one key, overwritten, expiring). Redis 7 and later (a script's flags).
-- KEYS: the mark; ARGV: its time to live (ms)
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 1
