"""The worker's background loops: a loop that fails is visible (log and heartbeat) and goes on."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pallycon_pack.health import Thresholds, judge
from pallycon_store.fleet import Fleet, Snapshot
from pallycon_store.heartbeats import Heartbeat
from pallycon_store.keys import Keys
from pallycon_store.wiring import Store
from support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.heavy]


def _snapshot(store: Store, *, apart: bool = False) -> Snapshot:
    """The fleet as ``health``, ``stats`` and the exporter read it. ``apart``: from a copy of
    the heartbeats under another prefix (while the submit schedule's key is broken, a snapshot
    of the real keys fails as a whole: it reads that key too)."""
    if not apart:
        return store.fleet().snapshot(time.time())
    copy = Keys(f"{store.keys.prefix}-copy")
    store.redis.copy(store.keys.heartbeats, copy.heartbeats, replace=True)
    return Fleet(store.redis, copy).snapshot(time.time())


def _until(
    store: Store, loop: str, check: Callable[[Heartbeat], bool], *, apart: bool = False
) -> tuple[Heartbeat, Snapshot]:
    """The loop's heartbeat once ``check`` holds for it, and the snapshot it was read in."""
    deadline = time.monotonic() + 30
    while True:
        snapshot = _snapshot(store, apart=apart)
        found = [h for h in snapshot.heartbeats if h.loop == loop]
        if found and check(found[0]):
            return found[0], snapshot
        assert time.monotonic() < deadline, f"{loop} never reached the expected health: {found}"
        time.sleep(0.2)


def test_a_loop_that_fails_is_restarted_visibly_and_recovers(stack_factory, worker_factory):
    """The submit schedule's key made a string: every sweep raises WRONGTYPE. The sweeper is
    restarted with a backoff, its heartbeat says so (as the fleet's reader and `health` see
    it), and it carries on once the key is fixed."""
    stack: Stack = stack_factory("--job-seconds", "1")
    worker = worker_factory(stack.settings)
    store = Store.of(stack.settings)
    healthy, snapshot = _until(store, "sweeper", lambda h: h.healthy())
    assert healthy.restarts == 0
    assert judge("workers", snapshot, Thresholds()).detail == "1 worker answering"
    store.redis.set(store.keys.submit_schedule, "not a sorted set")
    broken, snapshot = _until(store, "sweeper", lambda h: h.restarts >= 2, apart=True)
    assert broken.failing
    assert not broken.healthy()
    assert "WRONGTYPE" in broken.error
    intake = next(h for h in snapshot.heartbeats if h.loop == "intake")
    assert intake.healthy()  # one loop's failure does not take the other down
    verdict = judge("workers", snapshot, Thresholds())
    assert verdict.ok  # the intake loop answers
    assert verdict.detail.startswith(f"1 worker answering; unhealthy: {broken.node}/sweeper (")
    assert "WRONGTYPE" in verdict.detail  # the loop's reason, as its heartbeat says it
    store.redis.delete(store.keys.submit_schedule)
    recovered, _ = _until(store, "sweeper", lambda h: h.healthy())
    assert recovered.restarts >= 2
    request_id = stack.producer.submit(stack.body("after-repair"))
    assert stack.wait_final([request_id], timeout=30)[request_id].state.value == "completed"
    log = worker.log.read_text(errors="replace")
    assert "sweeper loop failed; restarting it" in log
    assert worker.process is not None
    assert worker.process.poll() is None
