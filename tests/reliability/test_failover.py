"""Figure 13: the Redis primary dies and Sentinel promotes a replica. Nothing acknowledged is lost,
nothing is registered twice, and every process follows the new primary on its own."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from pallycon_producers.api import SubmitUnconfirmed
from support.env import clean_env
from support.processes import cli, start_server
from support.queue import stalls
from support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

REQUESTS = 300
#: The primary is killed once this many requests are acknowledged.
KILL_AFTER = 150


class _Submitter:
    """Submits ``REQUESTS`` requests one by one, as a producer would: an error (Redis away, or
    too few replicas in time) means "not acknowledged", and the same id is submitted again."""

    def __init__(self, stack: Stack, marker: str) -> None:
        self.stack, self.marker = stack, marker
        self.acknowledged: dict[str, float] = {}  # request id -> when submit returned
        self.refused = 0  # submit calls that raised (each one retried)
        self.half = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for n in range(REQUESTS):
            request_id = f"{self.marker}-{n}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    self.stack.producer.submit(self.stack.body(request_id), request_id)
                    break
                except SubmitUnconfirmed as exc:
                    self.refused += 1
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{request_id} refused for 60 s: {exc}") from exc
                    time.sleep(0.1)
            self.acknowledged[request_id] = time.monotonic()
            if len(self.acknowledged) == KILL_AFTER:
                self.half.set()


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_figure_13_sentinel_failover_loses_nothing_acknowledged(
    stack_factory, worker_factory, figure
):
    """300 requests through 2 workers (and a callback receiver) on a primary, 2 replicas and 3
    sentinels (WAIT for 1 replica); SIGKILL the primary when half are acknowledged."""
    # A registration cut off by the kill waits out the hard task limit before it is looked up
    # (24 s with the shortest visibility timeout allowed, 30 s).
    stack = stack_factory(
        "--job-seconds", "4", sentinel=True, redis_wait_replicas=1, visibility_timeout=30
    )
    group = stack.group
    assert group is not None
    workers = [worker_factory(stack.settings, concurrency=2) for _ in range(2)]
    env = clean_env(stack.settings.environment())
    receiver = start_server("callbacks", "--port", "0", env=env, cwd=stack.root)
    stack.servers.append(receiver)
    ready = f"{receiver.url}/health/ready"
    assert httpx.get(ready, timeout=5).status_code == 200
    marker = f"failover-{time.monotonic_ns()}"
    submitter = _Submitter(stack, marker)
    submitter.thread.start()
    assert submitter.half.wait(120), "half the requests were not acknowledged in 120 s"

    old = group.kill_primary()
    killed = time.monotonic()
    while (promoted := group.master_address()) in (None, old):
        assert time.monotonic() - killed < 60, "no replica promoted within 60 s"
        time.sleep(0.05)
    failover_s = time.monotonic() - killed
    while _status(ready) != 200:  # the receiver finds the new primary on its own
        assert time.monotonic() - killed < 60, "the callback receiver not ready within 60 s"
        time.sleep(0.1)
    receiver_ready_s = time.monotonic() - killed

    submitter.thread.join(180)
    assert not submitter.thread.is_alive(), "the producer did not finish in 180 s"
    after = [t for t in submitter.acknowledged.values() if t > killed]
    writes_back_s = min(after) - killed if after else float("nan")
    ids = list(submitter.acknowledged)
    assert len(ids) == REQUESTS
    # Before waiting for them: a lost request would never become final, only time out.
    acknowledged_lost = len(ids) - len(stack.producer.records.get_many(ids))
    assert acknowledged_lost == 0, f"{acknowledged_lost} acknowledged request(s) have no record"

    records = stack.wait_final(ids, timeout=240)
    counts = stack.exactly_once(ids, records, marker)
    alive = sum(w.process is not None and w.process.poll() is None for w in workers)
    health = cli("health", "--check", "redis,workers", env=env, cwd=stack.root)
    assert health.returncode == 0, health.stdout + health.stderr
    assert b", 1 replica\n" in health.stdout  # the other replica follows the new primary
    assert promoted is not None
    assert f"(primary {promoted[0]}:{promoted[1]} of ".encode() in health.stdout
    figure("13 sentinel failover", **counts, acknowledged_lost=acknowledged_lost,
           failover_s=round(failover_s, 2), receiver_ready_s=round(receiver_ready_s, 2),
           writes_back_s=round(writes_back_s, 2),
           refused_submits_retried=submitter.refused, workers_alive=alive, old_primary=old[1],
           new_primary=promoted[1] if promoted else None,
           stall_s=stalls(stack.producer, ids))  # fmt: skip
    assert alive == len(workers)  # the same workers rode through the failover
