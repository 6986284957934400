"""Figure 3: the API fails every call (503, then timeouts) for 60 s; everything completes."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

OUTAGE_S = 60.0


def test_figure_3_api_outage(stack_factory, worker_factory, figure):
    """30 s of 503s, then 30 s of calls that time out; then recovery: all complete, one job each,
    the workers never restart, and retries back off (calls per second fall during the outage)."""
    stack = stack_factory("--job-seconds", "3", read_timeout=1.0, retry_cap=10.0)
    worker = worker_factory(stack.settings, concurrency=4)
    emulator = stack.emulator
    marker = f"outage-{time.monotonic_ns()}"
    ids = [stack.producer.submit(stack.body(f"{marker}-{n}")) for n in range(50)]
    time.sleep(2)  # these are registered and being polled
    emulator.set_faults(error_rate=1.0, error_statuses=[503])
    ids += [stack.producer.submit(stack.body(f"{marker}-{n}")) for n in range(50, 100)]
    calls = []  # (seconds into the outage, API requests so far)

    def sample(t0: float) -> None:
        counts = emulator.control("stats")["counts"]
        sent = sum(
            v for k, v in counts.items() if k.startswith(("GET ", "POST ", "PUT ", "fault "))
        )
        calls.append((round(time.monotonic() - t0, 1), sent))

    start = time.monotonic()
    while time.monotonic() - start < OUTAGE_S / 2:
        sample(start)
        time.sleep(5)
    emulator.set_faults(latency=3.0)  # every call now outlives the client's 1 s read timeout
    while time.monotonic() - start < OUTAGE_S:
        sample(start)
        time.sleep(5)
    sample(start)
    emulator.set_faults()
    records = stack.wait_final(ids, timeout=240)
    assert worker.process is not None
    assert worker.process.poll() is None  # no crash, no restart
    log = worker.log.read_text(errors="replace")
    assert log.count(" ready.") == 1
    rates = [round((b[1] - a[1]) / max(b[0] - a[0], 0.1), 1) for a, b in pairwise(calls)]
    counters = stack.producer.redis.hgetall(stack.producer.keys.counters)
    jobs = stack.remote_jobs(marker)
    completed = sum(r.state.value == "completed" for r in records.values())
    figure("3 api outage", requests=len(ids), completed=completed, remote_jobs=len(jobs),
           duplicate_remote_jobs=len(jobs) - len(set(jobs)), outage_s=OUTAGE_S,
           api_calls_during_outage=calls[-1][1] - calls[0][1], calls_per_s_every_5s=rates,
           submit_resend=int(counters.get("submit resend", 0)),
           submit_reconcile=int(counters.get("submit reconcile", 0)),
           reconcile_lookup_retries=int(counters.get("reconcile lookup retry", 0)),
           poll_retries=int(counters.get("poll retries", 0)))  # fmt: skip
    assert completed == len(ids)
    assert sorted(jobs) == sorted(r.job_id for r in records.values())
    # 503s are answered at once, so within that first half only backoff can slow the calls
    # (in the second half every call also takes the 3 s it times out after).
    errors_only = [r for (_, b), r in zip(pairwise(calls), rates, strict=True) if b[0] <= 31]
    assert len(errors_only) >= 5
    assert errors_only[-1] < errors_only[0] / 2  # backing off
    assert rates[-1] < rates[0]
