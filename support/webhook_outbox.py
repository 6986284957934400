"""A webhook outbox in a known state, made through the store as the workers make it (fan-out,
claim, settle), with no worker and no receiver: what the health readers (the exporter,
``stats``, the console) are tested on."""

from __future__ import annotations

from pallycon_store.webhooks.deliveries import Attempted, Deliveries
from pallycon_store.webhooks.rules import AttemptKind, Decision, NewDelivery, Settle
from pallycon_store.webhooks.sealing import Sealer
from pallycon_store.webhooks.signing import Secret
from pallycon_store.wiring import Store

SEALER = Sealer.of("a-webhook-key-of-at-least-32-characters")
LEASE = 60.0
CAP = 4
#: Why the ``gone`` endpoint is disabled (as a 410 at a delivery says it).
GONE = "HTTP 410 (Gone) at a delivery"


def _new(endpoint_id: str, n: int, at: float) -> NewDelivery:
    return NewDelivery(endpoint_id, f"req-{n}:4", "completed", f"req-{n}", at, b'{"n":%d}' % n)


def known_outbox(
    store: Store, now: float, url: str = "https://{name}.example.com/hook"
) -> dict[str, str]:
    """Three endpoints (added in this order, ``url`` formatted with each name), their ids by
    name:

    - ``good``: two deliveries delivered (2xx in 40 ms), one being sent (claimed, unsettled);
    - ``down``: a delivery of an event 20 minutes old retried after a 503 (failing since
      ``now``), one dead after its last attempt timed out;
    - ``gone``: answered 410, so disabled (:data:`GONE`), its delivery on its dead-letter list.
    """
    deliveries = Deliveries(store.redis, store.keys)
    ids = {
        name: deliveries.endpoints.add(
            SEALER, url.format(name=name), Secret.generate(), now - 7200 + n
        ).id
        for n, name in enumerate(("good", "down", "gone"))
    }
    good, down, gone = ids["good"], ids["down"], ids["gone"]
    deliveries.fan_out([], [_new(good, n, now - 0.2) for n in range(3)], now, CAP)
    deliveries.fan_out([], [_new(down, n, now - 1200) for n in range(2)], now, CAP)
    deliveries.fan_out([], [_new(gone, 9, now - 1)], now, CAP)
    claimed, _ = deliveries.claim(now, LEASE, CAP, limit=100)
    mine = {name: [c for c in claimed if c.endpoint_id == ids[name]] for name in ids}
    delivered = Decision(Settle.DELIVERED, "HTTP 204")
    for c in mine["good"][:2]:
        deliveries.settle(c, delivered, Attempted(AttemptKind.HTTP_2XX, 0.04), now, CAP)
    retry = Decision(Settle.RETRY, "HTTP 503", now + 300, failing_since=now)
    deliveries.settle(
        mine["down"][0], retry, Attempted(AttemptKind.HTTP_5XX, 0.3, "HTTP 503"), now, CAP
    )
    dead = Decision(
        Settle.DEAD, "12 attempts failed (last: no response in 15 s (timeout))", failing_since=now
    )
    deliveries.settle(mine["down"][1], dead, Attempted(AttemptKind.TIMEOUT, None), now, CAP)
    disable = Decision(Settle.DISABLE, GONE)
    gone_attempt = Attempted(AttemptKind.HTTP_410, 0.02)
    deliveries.disable_endpoint(mine["gone"][0], disable, gone_attempt, now, CAP)
    return ids
