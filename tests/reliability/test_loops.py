"""The worker's background loops: a loop that fails is visible (log and heartbeat) and goes on."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pallycon_worker.loops import read_health

from support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.heavy]


def _health(stack: Stack, loop: str) -> dict[str, Any]:
    store = stack.producer
    found = read_health(store.redis, store.keys.heartbeats, time.time())
    return next(h for h in found if h["loop"] == loop)


def _until(stack: Stack, loop: str, check, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            health = _health(stack, loop)
            if check(health):
                return health
        except StopIteration:
            pass
        assert time.monotonic() < deadline, f"{loop} never reached the expected health"
        time.sleep(0.2)


def test_a_loop_that_fails_is_restarted_visibly_and_recovers(stack_factory, worker_factory):
    """The submit schedule's key made a string: every sweep raises WRONGTYPE. The sweeper is
    restarted with a backoff, its heartbeat says so, and it carries on once the key is fixed."""
    stack = stack_factory("--job-seconds", "1")
    worker = worker_factory(stack.settings)
    healthy = _until(stack, "sweeper", lambda h: h["healthy"])
    assert healthy["restarts"] == 0
    store = stack.producer
    store.redis.set(store.keys.submit_schedule, "not a sorted set")
    broken = _until(stack, "sweeper", lambda h: h["restarts"] >= 2)
    assert broken["failing"]
    assert not broken["healthy"]
    assert "WRONGTYPE" in broken["error"]
    intake = _health(stack, "intake")
    assert intake["healthy"]  # one loop's failure does not take the other down
    store.redis.delete(store.keys.submit_schedule)
    recovered = _until(stack, "sweeper", lambda h: h["healthy"])
    assert recovered["restarts"] >= 2
    request_id = stack.producer.submit(stack.body("after-repair"))
    assert stack.wait_final([request_id], timeout=30)[request_id].state.value == "completed"
    log = worker.log.read_text(errors="replace")
    assert "sweeper loop failed; restarting it" in log
    assert worker.process is not None
    assert worker.process.poll() is None
