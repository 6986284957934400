"""The worker's background loops: a loop that fails is visible (log and heartbeat) and goes on."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from pallycon_store.heartbeats import Heartbeat
from pallycon_store.wiring import Store

from pallycon_pack.ops_commands import Thresholds, judge
from support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.heavy]


def _health(store: Store, loop: str) -> Heartbeat:
    """The loop's heartbeat as ``health``, ``stats`` and the exporter read it (StopIteration
    when the fleet shows none)."""
    found = store.fleet().snapshot(time.time()).heartbeats
    return next(h for h in found if h.loop == loop)


def _until(
    store: Store, loop: str, check: Callable[[Heartbeat], bool], timeout: float = 30
) -> Heartbeat:
    deadline = time.monotonic() + timeout
    while True:
        try:
            health = _health(store, loop)
            if check(health):
                return health
        except StopIteration:
            pass
        assert time.monotonic() < deadline, f"{loop} never reached the expected health"
        time.sleep(0.2)


def test_a_loop_that_fails_is_restarted_visibly_and_recovers(stack_factory, worker_factory):
    """The submit schedule's key made a string: every sweep raises WRONGTYPE. The sweeper is
    restarted with a backoff, its heartbeat says so (as the fleet's reader and `health` see
    it), and it carries on once the key is fixed."""
    stack: Stack = stack_factory("--job-seconds", "1")
    worker = worker_factory(stack.settings)
    store = Store.of(stack.settings)
    healthy = _until(store, "sweeper", lambda h: h.healthy())
    assert healthy.restarts == 0
    assert judge("workers", store.fleet().snapshot(time.time()), Thresholds()).ok
    store.redis.set(store.keys.submit_schedule, "not a sorted set")
    broken = _until(store, "sweeper", lambda h: h.restarts >= 2)
    assert broken.failing
    assert not broken.healthy()
    assert "WRONGTYPE" in broken.error
    verdict = judge("workers", store.fleet().snapshot(time.time()), Thresholds())
    assert f"unhealthy: {broken.node}/sweeper" in verdict.detail
    intake = _health(store, "intake")
    assert intake.healthy()  # one loop's failure does not take the other down
    store.redis.delete(store.keys.submit_schedule)
    recovered = _until(store, "sweeper", lambda h: h.healthy())
    assert recovered.restarts >= 2
    request_id = stack.producer.submit(stack.body("after-repair"))
    assert stack.wait_final([request_id], timeout=30)[request_id].state.value == "completed"
    log = worker.log.read_text(errors="replace")
    assert "sweeper loop failed; restarting it" in log
    assert worker.process is not None
    assert worker.process.poll() is None
