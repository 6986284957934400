-- Create a batch of requests, all or nothing: every request of the batch is created (or was
-- already, with the same body), or, if one id is taken by another body, nothing is written.
-- One script, so a Redis out of memory refuses its first write or none (no partial batch).
-- Each first event gets its event_id "<request id>:1" here, from the version written; its
-- stream entry id is kept in the record's `events`, and the request enters its state's index.
-- Each request scheduled goes on its submit lane (its site's and priority's), the lane is
-- added to the set of lanes, and a sweeper is woken (the kick list, one element at most).
-- KEYS: results, the set of lanes, the kick list, then 4 per request: its record, its state's
--       index, its site's index of that state (the same key again for a request that named no
--       site), its submit lane
-- ARGV: maxlen, channel, submit score ('' = not scheduled, 'now' = Redis's time), then 6 per request:
--       request id, body hash, fields (JSON), event (JSON object), ttl ('' = none),
--       time it entered its state (the index score)
local outcomes, conflict = {}, false
local count = (#KEYS - 3) / 4
for n = 1, count do
  local record, at = KEYS[4 * n], 4 + (n - 1) * 6
  if redis.call('EXISTS', record) == 0 then
    outcomes[n] = 'created'
  elseif redis.call('HGET', record, 'body_hash') == ARGV[at + 1] then
    outcomes[n] = 'duplicate'
  else
    outcomes[n] = 'conflict'; conflict = true
  end
end
if conflict then return outcomes end
local scheduled, score = false, ARGV[3]
if score == 'now' then  -- due now by Redis's clock (one clock for schedules)
  local t = redis.call('TIME')
  score = tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000)
end
for n = 1, count do
  local record, index, at = KEYS[4 * n], KEYS[1 + 4 * n], 4 + (n - 1) * 6
  if outcomes[n] == 'created' then
    local id = cjson.encode(ARGV[at] .. ':1')
    local event = '{"event_id":' .. id .. ',' .. string.sub(ARGV[at + 3], 2)
    local entry = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'event', event)
    local args = {'version', '1', 'events', entry}
    for k, v in pairs(cjson.decode(ARGV[at + 2])) do args[#args + 1] = k; args[#args + 1] = v end
    redis.call('HSET', record, unpack(args))
    redis.call('ZADD', index, ARGV[at + 5], ARGV[at])
    redis.call('ZADD', KEYS[2 + 4 * n], ARGV[at + 5], ARGV[at])
    redis.call('PUBLISH', ARGV[2], ARGV[at])
    if score ~= '' then
      redis.call('ZADD', KEYS[3 + 4 * n], score, ARGV[at])
      redis.call('SADD', KEYS[2], KEYS[3 + 4 * n])
      scheduled = true
    end
    if ARGV[at + 4] ~= '' then redis.call('EXPIRE', record, ARGV[at + 4]) end
  end
end
if scheduled then redis.call('LPUSH', KEYS[3], 1); redis.call('LTRIM', KEYS[3], 0, 0) end
return outcomes
