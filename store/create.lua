-- Create a batch of requests, all or nothing: every request of the batch is created (or was
-- already, with the same body), or, if one id is taken by another body, nothing is written.
-- One script, so a Redis out of memory refuses its first write or none (no partial batch).
-- Each first event gets its event_id "<request id>:1" here, from the version written.
-- KEYS: results, submit schedule, then each request's record
-- ARGV: maxlen, channel, submit score ('' = not scheduled), then 5 per request:
--       request id, body hash, fields (JSON), event (JSON object), ttl ('' = none)
local outcomes, conflict = {}, false
for i = 3, #KEYS do
  local at = 4 + (i - 3) * 5
  if redis.call('EXISTS', KEYS[i]) == 0 then
    outcomes[#outcomes + 1] = 'created'
  elseif redis.call('HGET', KEYS[i], 'body_hash') == ARGV[at + 1] then
    outcomes[#outcomes + 1] = 'duplicate'
  else
    outcomes[#outcomes + 1] = 'conflict'; conflict = true
  end
end
if conflict then return outcomes end
for i = 3, #KEYS do
  local at = 4 + (i - 3) * 5
  if outcomes[i - 2] == 'created' then
    local args = {'version', '1'}
    for k, v in pairs(cjson.decode(ARGV[at + 2])) do args[#args + 1] = k; args[#args + 1] = v end
    redis.call('HSET', KEYS[i], unpack(args))
    local id = cjson.encode(ARGV[at] .. ':1')
    local event = '{"event_id":' .. id .. ',' .. string.sub(ARGV[at + 3], 2)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'event', event)
    redis.call('PUBLISH', ARGV[2], ARGV[at])
    if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[at]) end
    if ARGV[at + 4] ~= '' then redis.call('EXPIRE', KEYS[i], ARGV[at + 4]) end
  end
end
return outcomes
