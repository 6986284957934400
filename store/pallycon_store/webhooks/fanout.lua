-- The deliveries of a batch of result events, and the acknowledgement of their entries, at
-- once. A delivery is created only if absent (its id is the endpoint's and the event's): an
-- entry handled twice creates nothing twice.
-- KEYS: the result stream
-- ARGV: base, now, cap, group, n (entry ids), the n entry ids, then per delivery 7 values:
--   id, endpoint id, webhook-id, type, request id, event time, body
local now, cap, group, n = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local touched, order, created = {}, {}, 0
for i = 6 + n, #ARGV, 7 do
  local id, ep = ARGV[i], ARGV[i + 1]
  local key = delivery_key(id)
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'endpoint', ep, 'webhook_id', ARGV[i + 2], 'type', ARGV[i + 3],
      'request_id', ARGV[i + 4], 'event_at', ARGV[i + 5], 'body', ARGV[i + 6],
      'attempts', 0, 'created_at', now)
    redis.call('ZADD', due_key(ep), now, id)
    redis.call('ZADD', pending_key(ep), ARGV[i + 5], id)
    created = created + 1
    if not touched[ep] then touched[ep] = true; table.insert(order, ep) end
  end
end
for _, ep in ipairs(order) do reschedule(ep, cap) end
for i = 6, 5 + n, 100 do
  redis.call('XACK', KEYS[1], group, unpack(ARGV, i, math.min(i + 99, 5 + n)))
end
return created
