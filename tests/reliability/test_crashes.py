"""Figures 1, 2 and 4: worker crashes, a Redis crash, ambiguous registrations. Real processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from support.queue import stalls
from support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.heavy]


def _assert_exactly_once(
    stack: Stack,
    ids: list[str],
    records: dict[str, Any],
    marker: str,
    figure: Callable[..., None],
    name: str,
    **extra: Any,
) -> None:
    figure(name, **stack.exactly_once(ids, records, marker), **extra)


def test_figure_1_worker_crashes(stack_factory, worker_factory, figure):
    """1,000 requests in flight, half of them for a second site; SIGKILL a pool child twice and
    the main process three times."""
    stack = stack_factory("--job-seconds", "8", two_sites=True)
    worker = worker_factory(stack.settings, concurrency=4)
    marker = f"crash-{time.monotonic_ns()}"
    started = time.monotonic()
    ids: list[str] = []
    submitter = threading.Thread(
        target=lambda: ids.extend(stack.submit(f"{marker}-{n}", n) for n in range(1000))
    )
    submitter.start()
    kills = []
    for kind in ("child", "main", "child", "main", "main"):
        time.sleep(2.5)
        if kind == "child":
            kills.append(("child", worker.kill_child()))
        else:
            worker.kill_main()
            kills.append(("main", 0))
            worker.restart()
    submitter.join()
    records = stack.wait_final(ids, timeout=240)
    elapsed = time.monotonic() - started
    _assert_exactly_once(stack, ids, records, marker, figure, "1 worker crashes", kills=len(kills),
                         seconds=round(elapsed, 1),
                         stall_s=stalls(stack.producer, ids),
                         lease_s=stack.settings.lease_seconds)  # fmt: skip


def test_figure_2_redis_crash_and_restart(stack_factory, worker_factory, figure):
    """SIGKILL Redis (AOF on) mid-run and start it again: nothing accepted is lost or doubled
    (half of the requests for a second site)."""
    stack = stack_factory("--job-seconds", "6", two_sites=True)
    worker = worker_factory(stack.settings, concurrency=4)
    marker = f"redis-{time.monotonic_ns()}"
    ids = [stack.submit(f"{marker}-{n}", n) for n in range(300)]
    time.sleep(3)
    stack.redis.kill()
    down = time.monotonic()
    time.sleep(2)
    stack.redis.start()
    restarted_after = time.monotonic() - down
    records = stack.wait_final(ids, timeout=240)
    assert worker.process is not None
    assert worker.process.poll() is None  # the same worker rode through
    _assert_exactly_once(stack, ids, records, marker, figure, "2 redis crash", redis_down_s=round(restarted_after, 1),
                         stall_s=stalls(stack.producer, ids))  # fmt: skip


def test_figure_4_ambiguous_registrations(stack_factory, worker_factory, figure):
    """Accept-then-drop on 10 % of registrations: still exactly one remote job per request (half
    of them for a second site, where a lost answer is looked up)."""
    stack = stack_factory("--job-seconds", "3", "--drop-rate", "0.1", "--seed", "4", two_sites=True)
    worker_factory(stack.settings, concurrency=4)
    marker = f"ambiguous-{time.monotonic_ns()}"
    ids = [stack.submit(f"{marker}-{n}", n) for n in range(300)]
    records = stack.wait_final(ids, timeout=240)
    counts = stack.emulator.control("stats")["counts"]
    drops = counts.get("fault drop", 0)
    assert drops >= 10
    counters = stack.producer.redis.hgetall(stack.producer.keys.counters)
    _assert_exactly_once(stack, ids, records, marker, figure, "4 accept-then-drop", dropped=drops,
                         reconciliations=int(counters.get("reconciliations", 0)),
                         registrations_sent=counts["POST pack"])  # fmt: skip


def test_figure_2_the_demo_resumes_after_a_redis_crash(tmp_path, figure):
    """The demo on an external Redis that crashes mid-run (once its requests are submitted,
    while the worker registers them) and comes back still exits 0."""
    import subprocess
    import sys
    import threading

    from support.env import clean_env
    from support.redis_server import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    lines: list[bytes] = []
    demo = subprocess.Popen(
        [sys.executable, "-m", "pallycon_pack", "demo", "--jobs", "12", "--job-seconds", "8",
         "--timeout", "150"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
        env=clean_env(PALLYCON_REDIS_URL=server.url),
    )  # fmt: skip
    stdout = demo.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any(b"submitted 12 requests" in line for line in lines):
            assert demo.poll() is None, b"".join(lines)[-3000:]
            assert time.monotonic() < deadline, b"".join(lines)[-3000:]
            time.sleep(0.05)
        server.kill()
        time.sleep(2)
        server.start()
        try:
            demo.wait(timeout=240)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo did not end in 240 s:\n{b''.join(lines)[-3000:]!r}")
        reader.join(10)
    finally:  # nothing left running or open, whatever failed
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        reader.join(10)
        stdout.close()
        server.stop()
    text = b"".join(lines).decode(errors="replace")
    figure("2 demo through a redis crash", exit_code=demo.returncode)
    logs = "".join(
        f"\n--- {log.name}:\n{log.read_text(errors='replace')[-4000:]}"
        for log in sorted((tmp_path / "build" / "demo-logs").glob("*/*.log"))
    )
    assert demo.returncode == 0, text[-3000:] + logs
    assert "all 13 requests ended as expected" in text
    assert "Redis unreachable" in text  # the crash happened while it was following


@pytest.mark.parametrize("lease", [2.0, 8.0])
def test_recovery_time_after_sigkill_follows_the_lease(
    stack_factory, worker_factory, figure, lease
):
    """Kill every worker process while polls are in flight; a new worker resumes them once the
    lease has run out: the recovery time is the lease (plus a sweep)."""
    stack = stack_factory("--job-seconds", "120", lease_seconds=lease, read_timeout=5.0)
    worker = worker_factory(stack.settings, concurrency=4)
    ids = [stack.producer.submit(stack.body(f"recovery-{lease}-{n}")) for n in range(40)]
    deadline = time.monotonic() + 30
    while {r.state.value for r in stack.producer.records.get_many(ids).values()} != {"submitted"}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    stack.emulator.set_faults(latency=2.0)  # every poll now holds its claim for two seconds
    schedule = stack.producer.keys.poll_schedule
    claimed = 0
    while not claimed:  # kill while the worker holds claims: their scores sit a lease ahead
        horizon = time.time() + lease / 2
        claimed = stack.producer.redis.zcount(schedule, horizon, "+inf")
        assert time.monotonic() < deadline + 30
    worker.kill_all()
    killed = time.monotonic()
    # Taken after the kill: from here on only a new worker can move a record.
    before = {rid: r.version for rid, r in stack.producer.records.get_many(ids).items()}
    held = dict(stack.producer.redis.zrangebyscore(schedule, horizon, "+inf", withscores=True))
    stack.emulator.set_faults()
    worker.restart()
    restarted = time.monotonic() - killed
    moved_at: dict[str, float] = {}
    while len(moved_at) < len(ids):
        now = time.time()
        for rid, record in stack.producer.records.get_many(ids).items():
            if record.version > before[rid]:
                moved_at.setdefault(rid, now)
        assert time.monotonic() - killed < lease + 60
        time.sleep(0.05)
    recovery = time.monotonic() - killed
    # A held claim comes back when its lease ends, not before (lower bound), and soon after.
    early = {rid: round(held[rid] - moved_at[rid], 2) for rid in held if moved_at[rid] < held[rid]}
    assert not early, f"moved before their lease ended (s early): {early}"
    figure("recovery after SIGKILL", lease_s=lease, claims_held=claimed,
           worker_restart_s=round(restarted, 1),
           all_requests_moving_again_s=round(recovery, 1))  # fmt: skip
    assert recovery < lease + restarted + 5
