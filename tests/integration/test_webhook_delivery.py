"""The workers deliver the webhooks: real worker processes, a real Redis, the emulator, and
receivers that verify every request with the specification's own library
(``standardwebhooks``). One stack for the module; each test adds its endpoints and removes
them at its end. The retry schedule and the timeout are shortened by their settings."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from pydantic import SecretStr

from pallycon_producers.api import Producer
from pallycon_store import heartbeats
from pallycon_store.webhooks.deliveries import Deliveries
from pallycon_store.webhooks.endpoints import Endpoint
from pallycon_store.webhooks.sealing import Sealer
from pallycon_store.webhooks.signing import Secret
from support.processes import WorkerProcess
from support.queue import eventually, make_settings, wait_all
from support.samples import body_for
from support.stack import Stack
from support.webhook_receiver import Receiver, Reply, Silent

pytestmark = pytest.mark.integration

KEY = "a-webhook-key-of-at-least-32-characters"
SEALER = Sealer.of(KEY)
#: Attempts every 0.3 s (±20 %), 30 of them: the schedule never runs out in these tests.
SCHEDULE = ",".join(["0.3"] * 30)
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = partial(
        make_settings,
        webhook_key=KEY,
        webhook_timeout=TIMEOUT,
        webhook_retry_schedule=SCHEDULE,
        webhook_endpoint_concurrency=2,
        webhook_concurrency=8,
    )
    root = tmp_path_factory.mktemp("webhooks")
    with Stack.start(root, "--job-seconds", "1", settings=settings, emulator="thread") as running:
        running.start_workers(2)
        yield running


@pytest.fixture
def outbox(stack: Stack) -> Iterator[Deliveries]:
    deliveries = Deliveries(stack.producer.redis, stack.producer.keys)
    yield deliveries
    for endpoint in deliveries.endpoints.list():
        deliveries.endpoints.remove(endpoint.id)


def add(outbox: Deliveries, url: str, secret: Secret, events: tuple[str, ...] = ()) -> Endpoint:
    return outbox.endpoints.add(SEALER, url, secret, time.time(), events=events, allow_private=True)


def test_every_completed_and_failed_request_is_delivered_once_and_verifies(
    stack: Stack, outbox: Deliveries, tmp_path: Path
):
    secret = Secret.generate()
    receiver = Receiver(secret).start()
    try:
        add(outbox, receiver.url, secret, ("completed", "failed"))
        good = [stack.submit(f"wh-ok-{n}", n) for n in range(4)]
        bad = [stack.producer.submit(body_for("no-such-storage", f"wh-bad-{n}")) for n in range(2)]
        records = stack.wait_final(good + bad, timeout=60)
        assert {records[rid].state.value for rid in good} == {"completed"}
        assert {records[rid].state.value for rid in bad} == {"failed"}
        ends = {
            e["event_id"]: e for e in stack.events() if e["request_id"] in set(good + bad)
            if e["type"] in ("completed", "failed")
        }  # fmt: skip
        delivered = eventually(receiver.delivered, lambda found: set(found) >= set(ends))
        assert set(delivered) == set(ends)
        assert set(delivered.values()) == {1}  # no fault: each once
        assert all(hit.verified for hit in receiver.hits)
        for hit in receiver.hits:  # the body is the event, in the specification's envelope
            assert hit.body["data"] == ends[hit.webhook_id]
            assert hit.body["type"] == f"request.{ends[hit.webhook_id]['type']}"
    finally:
        receiver.stop()


def test_failures_retries_retry_after_down_slow_then_gone(stack: Stack, outbox: Deliveries):
    """One delivery meets 500, 500, 429 with Retry-After 1 (the next attempt not before it),
    503 with Retry-After 2, a receiver down, one answer too slow, then a 200; the next request's delivery meets 410: the endpoint is disabled, and
    nothing is sent to it after that (a second endpoint gets every event meanwhile)."""
    secret = Secret.generate()
    steps = {
        1: Reply(500),
        2: Reply(500),
        3: Reply(429, {"retry-after": "1"}),
        4: Reply(503, {"retry-after": "2"}),  # time to take the receiver down
    }
    gone = {"now": False}

    def script(n: int, webhook_id: str) -> Reply:
        return Reply(410) if gone["now"] else steps.get(n, Reply(200))

    receiver = Receiver(secret, script).start()
    control = Receiver(secret).start()
    try:
        endpoint = add(outbox, receiver.url, secret, ("completed",))
        add(outbox, control.url, secret, ("completed",))
        rid = stack.submit("wh-retry", 0)
        stack.wait_final([rid], timeout=60)
        eventually(lambda: len(receiver.hits), lambda n: n >= 4)
        said = f"to {endpoint.id}: attempt 1 failed (HTTP 500); next attempt at "
        logs = eventually(
            lambda: "".join(w.log.read_text(errors="replace") for w in stack.workers),
            lambda text: said in text,
        )
        [line] = [line for line in logs.splitlines() if said in line]
        assert receiver.url not in line
        assert secret.text() not in logs
        receiver.stop()  # down: the next attempts find no connection
        counters = eventually(
            lambda: outbox.overview(time.time()).counters.attempts,
            lambda found: found["no_connection"] >= 2,
        )
        assert counters["429"] == 1
        [down] = [h for h in outbox.overview(time.time()).endpoints if h.endpoint_id == endpoint.id]
        assert down.failing_since is not None
        assert down.last_outcome.startswith("no response (ConnectError")
        steps[5] = Reply(200, delay=TIMEOUT + 1)  # too late: a timeout
        receiver.start()  # back, on the same port
        [webhook_id] = eventually(receiver.delivered, bool)
        hits = receiver.of(webhook_id)
        assert [h.status for h in hits] == [500, 500, 429, 503, 200, 200]
        assert [h.late for h in hits] == [False] * 4 + [True, False]
        assert hits[3].at - hits[2].at >= 1.0  # Retry-After is a floor
        assert outbox.overview(time.time()).counters.attempts["timeout"] >= 1
        assert outbox.failures([endpoint.id]) == []
        assert all(hit.verified for hit in receiver.hits + control.hits)

        # Gone: the next delivery disables the endpoint; nothing is sent to it after that.
        gone["now"] = True
        stack.submit("wh-gone", 1)
        disabled = eventually(lambda: outbox.endpoints.get(endpoint.id).disabled, bool)
        assert disabled is not None
        assert "410" in disabled.reason
        [event] = outbox.events()
        assert event["endpoint_id"] == endpoint.id
        seen = len(receiver.hits)
        after = stack.submit("wh-after", 2)
        eventually(control.delivered, lambda found: any(w.startswith(after) for w in found))
        assert len(receiver.hits) == seen
        health = {h.endpoint_id: h for h in outbox.overview(time.time()).endpoints}
        assert health[endpoint.id].disabled is not None
        assert health[endpoint.id].pending == 0
    finally:
        receiver.stop()
        control.stop()


def test_an_endpoint_that_never_answers_holds_up_no_other(stack: Stack, outbox: Deliveries):
    """Every delivery to the fast endpoint arrives while all of the silent one's still wait."""
    silent = Silent()
    secret = Secret.generate()
    fast = Receiver(secret).start()
    try:
        stuck = add(outbox, silent.url, Secret.generate(), ("completed",))
        add(outbox, fast.url, secret, ("completed",))
        ids = [stack.submit(f"wh-fast-{n}", n) for n in range(6)]
        stack.wait_final(ids, timeout=60)
        delivered = eventually(fast.delivered, lambda found: len(found) >= len(ids))
        assert len(delivered) == len(ids)
        [health] = [h for h in outbox.overview(time.time()).endpoints if h.endpoint_id == stuck.id]
        assert health.pending == len(ids)
        assert health.last_success is None
        assert health.in_flight <= 2  # its cap: the rest of the threads served the other
    finally:
        fast.stop()
        silent.stop()


def test_a_worker_without_the_key_sends_nothing_and_says_so(
    stack: Stack, worker_factory: Callable[..., WorkerProcess]
):
    """Workers without PALLYCON_WEBHOOK_KEY (their own key prefix: a fleet of their own) keep
    the deliveries waiting; their heartbeat says they cannot sign from the start, and once an
    endpoint is added (after they started) they say so in one warning line (each minute at
    most) and their webhooks loop reports itself failing."""
    settings = stack.settings.model_copy(
        update={"webhook_key": None, "key_prefix": f"t{os.urandom(4).hex()}"}
    )
    producer = Producer.from_settings(settings)
    outbox = Deliveries(producer.redis, producer.keys)
    secret = Secret.generate()
    receiver = Receiver(secret).start()
    try:
        worker = worker_factory(settings, concurrency=1)
        eventually(
            lambda: heartbeats.read(producer.redis, producer.keys, time.time()),
            lambda beats: any(h.loop == "webhooks" and not h.signs for h in beats),
        )
        outbox.endpoints.add(
            SEALER, receiver.url, secret, time.time(), events=("completed",), allow_private=True
        )
        rid = producer.submit(stack.body("wh-nokey"))
        wait_all(producer, [rid])
        eventually(lambda: outbox.overview(time.time()).endpoints[0].pending, lambda n: n == 1)
        assert receiver.hits == []
        said = "PALLYCON_WEBHOOK_KEY is not set: this worker sends no webhooks"
        log = eventually(worker.log.read_text, lambda text: said in text)
        assert log.count(said) == 1
        [beat] = [
            h for h in heartbeats.read(producer.redis, producer.keys, time.time())
            if h.loop == "webhooks"
        ]  # fmt: skip
        assert beat.failing
        assert "PALLYCON_WEBHOOK_KEY is not set" in beat.error
    finally:
        receiver.stop()


def test_a_worker_whose_key_does_not_open_a_secret_leaves_its_endpoint_alone(
    stack: Stack, worker_factory: Callable[..., WorkerProcess]
):
    """A worker with another PALLYCON_WEBHOOK_KEY (a fleet of its own) claims nothing of an
    endpoint whose secret its key does not open: no attempt counted, the endpoint not disabled
    however short the disable time, the delivery waiting; its webhooks loop fails naming it."""
    settings = stack.settings.model_copy(
        update={
            "webhook_key": SecretStr("another-webhook-key-of-at-least-32-characters"),
            "webhook_disable_after": 0.5,
            "key_prefix": f"t{os.urandom(4).hex()}",
        }
    )
    producer = Producer.from_settings(settings)
    outbox = Deliveries(producer.redis, producer.keys)
    secret = Secret.generate()
    receiver = Receiver(secret).start()
    try:
        endpoint = outbox.endpoints.add(
            SEALER, receiver.url, secret, time.time(), events=("completed",), allow_private=True
        )
        worker_factory(settings, concurrency=1)
        rid = producer.submit(stack.body("wh-wrongkey"))
        wait_all(producer, [rid])
        eventually(lambda: outbox.overview(time.time()).endpoints[0].pending, lambda n: n == 1)

        def failing() -> list[heartbeats.Heartbeat]:
            beats = heartbeats.read(producer.redis, producer.keys, time.time())
            return [h for h in beats if h.loop == "webhooks" and h.failing]

        [beat] = eventually(failing, bool)
        assert f"does not open the secret of webhook endpoint(s) {endpoint.id}" in beat.error
        view = outbox.overview(time.time())
        assert sum(view.counters.attempts.values()) == 0
        assert view.endpoints[0].disabled is None
        assert view.endpoints[0].failing_since is None
        assert receiver.hits == []
    finally:
        receiver.stop()
