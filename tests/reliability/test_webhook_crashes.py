"""Webhook deliveries survive a worker SIGKILLed and Redis killed and restarted (AOF on) while
they are pending: every one arrives, verified, each webhook-id only a few times (at least
once: docs/WEBHOOKS.md)."""

from __future__ import annotations

import time

import pytest

from pallycon_store.webhooks.deliveries import Deliveries
from pallycon_store.webhooks.sealing import Sealer
from pallycon_store.webhooks.signing import Secret
from pallycon_worker.webhooks import lease_of
from support.queue import eventually
from support.webhook_receiver import Receiver, Reply

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

KEY = "a-webhook-key-of-at-least-32-characters"
REQUESTS = 20


def test_pending_deliveries_survive_a_worker_kill_and_a_redis_restart(stack_factory, figure):
    stack = stack_factory(
        "--job-seconds",
        "1",
        webhook_key=KEY,
        webhook_timeout=1.0,
        webhook_retry_schedule=",".join(["0.5"] * 40),
        webhook_endpoint_concurrency=4,
    )
    victim = stack.start_workers(2)
    stack.start_workers(2)
    secret = Secret.generate()
    answer = {"status": 503}
    receiver = Receiver(secret, lambda n, w: Reply(answer["status"])).start()
    outbox = Deliveries(stack.producer.redis, stack.producer.keys)
    try:
        endpoint = outbox.endpoints.add(
            Sealer.of(KEY), receiver.url, secret, time.time(), allow_private=True
        )
        ids = [stack.submit(f"whk-{n}", n) for n in range(REQUESTS)]
        stack.wait_final(ids, timeout=90)
        eventually(
            lambda: outbox.overview(time.time()).endpoints[0].pending,
            lambda n: n == REQUESTS,
        )
        eventually(lambda: len(receiver.hits), lambda n: n >= 2 * REQUESTS)  # some retried
        time.sleep(1.1)  # the AOF's fsync (everysec) holds the deliveries
        victim.kill_all()  # with deliveries in its hands
        stack.redis.kill()
        time.sleep(1)
        stack.redis.start()
        answer["status"] = 204
        healed = time.monotonic()  # the faults are over: what each delivery waited from here
        victim.restart()
        delivered = eventually(receiver.delivered, lambda found: len(found) >= REQUESTS, timeout=60)
        finals = {
            e["event_id"]
            for e in stack.events()
            if e["request_id"] in set(ids) and e["type"] == "completed"
        }
        assert set(delivered) == finals
        assert all(hit.verified for hit in receiver.hits)
        assert max(delivered.values()) <= 3
        health = outbox.overview(time.time()).endpoints[0]
        assert health.endpoint_id == endpoint.id
        eventually(lambda: outbox.overview(time.time()).endpoints[0].pending, lambda n: n == 0)
        # The tail: a delivery the killed worker held comes back when its lease ends
        # (docs/WEBHOOKS.md: 4 x the timeout + 5 s), then waits its next delay at most; the
        # margin covers the workers' reconnection after Redis came back.
        first_2xx: dict[str, float] = {}
        for hit in sorted(receiver.hits, key=lambda h: h.at):
            if 200 <= hit.status < 300:
                first_2xx.setdefault(hit.webhook_id, hit.at)
        slowest = max(at - healed for at in first_2xx.values())
        assert slowest <= lease_of(1.0) + 0.5 * 1.2 + 10, slowest
        figure(
            "webhooks: a worker killed and Redis restarted with deliveries pending",
            deliveries=REQUESTS,
            attempts=len(receiver.hits),
            delivered_twice=sum(count > 1 for count in delivered.values()),
            slowest_after_recovery_s=round(slowest, 2),
            lease_s=lease_of(1.0),
        )
    finally:
        receiver.stop()
