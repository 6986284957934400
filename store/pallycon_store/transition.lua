-- One change of a request, made from the version its writer read: writes the fields, appends
-- the event (its event_id "<request id>:<new version>" stamped here, its stream entry id added
-- to the record's `events`), publishes the wake-up, moves the request between the schedules and
-- between the state indexes and in or out of its site's in-flight set, all at once. 0 if the
-- version moved on, -1 if the record is gone; a gated change (the `submitting` mark) is not
-- made, 2 if its site is paused, 3 if the site is at its cap of requests in flight.
-- A replay after a lost reply finds the version moved on and does nothing.
-- KEYS: record, results, its submit lane, poll schedule, job index, index of the state it is
--       in, index of the state it goes to (the same key when it stays), and the same two of
--       its site (the same keys again for a request that named no site), the set of lanes,
--       the kick list, its site's in-flight set, the paused hash
-- ARGV: version, fields (JSON), event (JSON object or ''), maxlen, channel, request id,
--       schedule (submit|poll|''), score, job field to index (`Keys.job_field`), ttl
--       (finished: unschedule,
--       unindex, expire), time it enters the new state ('' = it stays), '1' = keep the
--       record for good again (a finished request re-driven), in-flight change ('+' enters,
--       '-' leaves, '' neither), gate ('' none, else the site's cap: 0 = no cap), the site's
--       field in the paused hash, guard ('' none, else the record's `sent_at` must not be
--       later than this: the change was decided from a record whose registration never left)
local version = redis.call('HGET', KEYS[1], 'version')
if not version then return -1 end
if version ~= ARGV[1] then return 0 end
if ARGV[16] ~= '' and (tonumber(redis.call('HGET', KEYS[1], 'sent_at') or '0') or 0) > tonumber(ARGV[16]) then
  return 0
end
if ARGV[14] ~= '' then
  if redis.call('HEXISTS', KEYS[13], '*') == 1 or redis.call('HEXISTS', KEYS[13], ARGV[15]) == 1 then
    return 2
  end
  local cap = tonumber(ARGV[14])
  if cap > 0 and redis.call('SISMEMBER', KEYS[12], ARGV[6]) == 0
      and redis.call('SCARD', KEYS[12]) >= cap then
    return 3
  end
end
local new = tostring(tonumber(version) + 1)
local args = {'version', new}
for k, v in pairs(cjson.decode(ARGV[2])) do args[#args + 1] = k; args[#args + 1] = v end
if ARGV[3] ~= '' then
  local id = cjson.encode(ARGV[6] .. ':' .. new)
  local event = '{"event_id":' .. id .. ',' .. string.sub(ARGV[3], 2)
  local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'event', event)
  local seen = redis.call('HGET', KEYS[1], 'events')
  args[#args + 1] = 'events'
  args[#args + 1] = (seen and seen ~= '') and (seen .. ' ' .. entry) or entry
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
redis.call('HSET', KEYS[1], unpack(args))
if ARGV[11] ~= '' then
  redis.call('ZREM', KEYS[6], ARGV[6]); redis.call('ZADD', KEYS[7], ARGV[11], ARGV[6])
  redis.call('ZREM', KEYS[8], ARGV[6]); redis.call('ZADD', KEYS[9], ARGV[11], ARGV[6])
end
if ARGV[13] == '+' then
  redis.call('SADD', KEYS[12], ARGV[6])
elseif ARGV[13] == '-' then
  redis.call('SREM', KEYS[12], ARGV[6])
  redis.call('LPUSH', KEYS[11], 1); redis.call('LTRIM', KEYS[11], 0, 0)
end
if ARGV[7] == 'submit' then
  redis.call('ZADD', KEYS[3], ARGV[8], ARGV[6]); redis.call('ZREM', KEYS[4], ARGV[6])
  redis.call('SADD', KEYS[10], KEYS[3])
elseif ARGV[7] == 'poll' then
  redis.call('ZADD', KEYS[4], ARGV[8], ARGV[6]); redis.call('ZREM', KEYS[3], ARGV[6])
end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[5], ARGV[9], ARGV[6]) end
if ARGV[10] ~= '' then
  redis.call('ZREM', KEYS[3], ARGV[6]); redis.call('ZREM', KEYS[4], ARGV[6])
  local job = redis.call('HGET', KEYS[1], 'job_id')
  if job and job ~= '' then
    local site = redis.call('HGET', KEYS[1], 'site_id')
    if site and site ~= '' then job = site .. '/' .. job end
    redis.call('HDEL', KEYS[5], job)
  end
  redis.call('EXPIRE', KEYS[1], ARGV[10])
end
if ARGV[12] == '1' then redis.call('PERSIST', KEYS[1]) end
return 1
