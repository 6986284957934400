"""Figures 15 to 18: flow control under faults. A cap on the jobs in flight holds through worker
and Redis crashes and leaks no place; a paused site registers nothing until resumed; a cancel
racing the workers never lets a request it reports cancelled be registered; a job stopped at
PallyCon ends its request ``stopped``. Real processes; invariants only, never timings."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pallycon_store.cancel import CancelOutcome
from pallycon_store.records import Applied
from pallycon_store.wiring import Store
from pallycon_worker.outcome import StepPolicy
from pallycon_worker.submit_rules import submitting
from support.queue import events_of, eventually
from support.recovery import timelines
from support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

#: Polls fast enough that a place frees soon after its job ends (jobs of well under a second).
QUICK_POLLS = {"poll_interval": 0.25, "poll_busy_interval": 0.25, "poll_grid": 0.1}


def _slot_use(stack: Stack) -> dict[str, int]:
    """The emulator's use of the default site's slots (``working``, ``waiting``, ``working_peak``)."""
    site = stack.settings.credentials().site_id
    use: dict[str, int] = stack.emulator.control("stats")["slots"][site]
    return use


def _registrations(stack: Stack) -> int:
    """Job registrations the emulator has received."""
    return int(stack.emulator.control("stats")["counts"].get("POST pack", 0))


def test_figure_15_the_cap_holds_through_worker_and_redis_crashes(
    stack_factory, worker_factory, figure
):
    """200 requests through a cap of 5 jobs in flight (the emulator works on 5 at once): one of
    two workers SIGKILLed twice and Redis SIGKILLed and restarted on its AOF while they drain;
    0 lost, 0 duplicate remote jobs, never more than 5 working at PallyCon, and no place held
    once all have finished."""
    # A POST cut off by a kill after its sent_at is waited for connect + 2 x read timeout:
    # 5 s reads keep that (and so the places it holds) to 16 s, not 66.
    stack = stack_factory(
        "--job-seconds", "0.3", "--slots", "5", max_in_flight=5, visibility_timeout=30,
        read_timeout=5.0, **QUICK_POLLS,
    )  # fmt: skip
    victim = worker_factory(stack.settings, concurrency=2)
    worker_factory(stack.settings, concurrency=2)
    marker = f"cap-{time.monotonic_ns()}"
    started = time.monotonic()
    ids = stack.producer.submit_many([stack.body(f"{marker}-{n}") for n in range(200)])
    faults = []
    for fault in ("worker", "redis", "worker"):
        time.sleep(3)
        if fault == "worker":
            victim.kill_all()
            victim.restart()
        else:
            stack.redis.kill()
            time.sleep(2)
            stack.redis.start()
        faults.append(fault)
    faults_ended = time.time()
    records = stack.wait_final(ids, timeout=240)
    unfinished = {
        rid: (r.state.value, r.error_stage, r.error_code, r.error_message)
        for rid, r in records.items() if r.state.value != "completed"
    }  # fmt: skip
    assert not unfinished, unfinished
    counts = stack.exactly_once(ids, records, marker)
    use = _slot_use(stack)
    left = stack.producer.redis.scard(stack.producer.keys.in_flight(""))
    # The tail: the last request to end, after the faults ended, and what held it up.
    lines = timelines(stack.producer, ids)
    last = max(lines, key=lambda rid: lines[rid].ended)
    figure("15 cap through crashes", **counts, cap=5, faults=faults,
           seconds=round(time.monotonic() - started, 1),
           tail_after_faults_s=round(max(0.0, lines[last].ended - faults_ended), 1),
           slowest=lines[last].describe(faults_ended),
           working_peak=use["working_peak"], in_flight_left=left)  # fmt: skip
    assert use["working_peak"] <= 5, use
    assert use["waiting"] == 0, use
    assert left == 0


def test_requests_holding_every_place_of_the_cap_are_looked_up_and_the_site_goes_on(
    stack_factory, worker_factory
):
    """A cap of 2 held by two requests whose worker died between its mark and its POST (their
    places stay held, as they must: a job might exist), 6 requests waiting behind: once due,
    the lookups are taken although the cap leaves no place (before, nothing was taken ever
    again: the site stalled for good) and ahead of the older waiting ones; both are
    registered again, and all 8 complete, each with one remote job."""
    stack = stack_factory("--job-seconds", "0.3", max_in_flight=2, read_timeout=1.0)
    store = Store.of(stack.settings)
    marker = f"held-{time.monotonic_ns()}"
    held = stack.producer.submit_many([stack.body(f"{marker}-held-{n}") for n in range(2)])
    found = store.records.get_many(held)
    policy, run = StepPolicy.of(stack.settings), store.durability.identity()
    marks = [submitting(found[rid], time.time(), policy, cap=2, run=run) for rid in held]
    assert store.records.apply_each(marks) == [Applied.DONE, Applied.DONE]  # the dead worker's
    assert store.flow.in_flight("") == 2
    waiting = stack.producer.submit_many([stack.body(f"{marker}-{n}") for n in range(6)])
    worker = worker_factory(stack.settings)
    records = stack.wait_final(held + waiting, timeout=60)
    stack.exactly_once(held + waiting, records, marker)
    log = worker.log.read_text(errors="replace")
    assert log.count("reconciled: absent, registering again") == 2, log[-3000:]
    assert store.flow.in_flight("") == 0


def test_figure_16_a_paused_site_registers_nothing_until_resumed(
    stack_factory, worker_factory, figure
):
    """The default site paused, 30 requests submitted, workers running for 3 s: no registration
    reaches the emulator and all stay accepted; resumed, all complete, each with one job."""
    stack = stack_factory("--job-seconds", "1")
    worker_factory(stack.settings)
    flow = Store.of(stack.settings).flow
    assert flow.pause("", "maintenance at PallyCon", time.time())
    marker = f"pause-{time.monotonic_ns()}"
    ids = stack.producer.submit_many([stack.body(f"{marker}-{n}") for n in range(30)])
    time.sleep(3)  # 30 sweep intervals: a sweeper that ignored the pause would have sent them
    held = {r.state.value for r in stack.producer.records.get_many(ids).values()}
    during = _registrations(stack)
    assert during == 0
    assert held == {"accepted"}
    assert flow.resume("", time.time()) is not None
    records = stack.wait_final(ids, timeout=60)
    counts = stack.exactly_once(ids, records, marker)
    figure(
        "16 pause", **counts, registrations_while_paused=during, states_while_paused=sorted(held)
    )


def test_figure_17_a_cancel_racing_the_workers_never_lets_a_cancelled_request_be_registered(
    stack_factory, worker_factory, figure
):
    """300 requests at 50 registrations/s through two workers; every other one cancelled at once
    from 8 threads while they are being registered: each reported ``cancelled`` has no job at
    PallyCon, each reported ``stopped_tracking`` at most one, and the others complete with one."""
    stack = stack_factory("--job-seconds", "4", api_rate=50.0, api_burst=10)
    worker_factory(stack.settings)
    worker_factory(stack.settings)
    marker = f"cancel-{time.monotonic_ns()}"
    ids = stack.producer.submit_many([stack.body(f"{marker}-{n}") for n in range(300)])
    content = {rid: f"{marker}-{n}" for n, rid in enumerate(ids)}
    eventually(lambda: _registrations(stack), lambda n: n >= 30)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda rid: stack.producer.cancel(rid, "figure 17"), ids[::2]))
    kept = ids[1::2]
    records = stack.wait_final(ids, timeout=120)
    jobs = stack.remote_content_ids(marker)
    by_outcome: dict[str, int] = {}
    for cancelled in outcomes:
        by_outcome[cancelled.outcome.value] = by_outcome.get(cancelled.outcome.value, 0) + 1
    registered_anyway = [
        c.request_id for c in outcomes
        if c.outcome is CancelOutcome.CANCELLED and jobs[content[c.request_id]]
    ]  # fmt: skip
    tracked_twice = [
        c.request_id for c in outcomes
        if c.outcome is CancelOutcome.STOPPED_TRACKING and jobs[content[c.request_id]] > 1
    ]  # fmt: skip
    kept_jobs = [jobs[content[rid]] for rid in kept]
    figure("17 cancel racing workers", requests=len(ids), cancels=len(outcomes), **by_outcome,
           cancelled_but_registered=len(registered_anyway),
           stopped_tracking_with_a_job=sum(
               bool(jobs[content[c.request_id]]) for c in outcomes
               if c.outcome is CancelOutcome.STOPPED_TRACKING
           ),
           kept_completed=sum(records[rid].state.value == "completed" for rid in kept),
           kept_duplicates=sum(n > 1 for n in kept_jobs), kept_lost=sum(n == 0 for n in kept_jobs))  # fmt: skip
    assert set(by_outcome) <= {"cancelled", "stopped_tracking"}, by_outcome
    assert by_outcome.get("cancelled", 0) > 0  # the race was run: some were not registered yet
    assert not registered_anyway
    assert not tracked_twice
    assert all(records[c.request_id].state.value == "cancelled" for c in outcomes)
    assert {records[rid].state.value for rid in kept} == {"completed"}
    assert kept_jobs == [1] * len(kept)


def test_figure_18_a_job_stopped_at_pallycon_ends_its_request_stopped(
    stack_factory, worker_factory, figure
):
    """A registered job stopped as PallyCon Console does (WM100, then WM200): its request ends
    ``stopped`` with a ``stopped`` event, not ``failed``."""
    stack = stack_factory("--job-seconds", "60")
    worker_factory(stack.settings)
    request_id = stack.producer.submit(stack.body(f"stop-{time.monotonic_ns()}"))
    record = eventually(
        lambda: stack.producer.records.get(request_id), lambda r: r is not None and bool(r.job_id)
    )
    assert record is not None
    stack.emulator.stop_job(record.job_id)
    final = stack.wait_final([request_id], timeout=60)[request_id]
    types = [e["type"] for e in events_of(stack.producer, request_id)]
    figure("18 stopped at pallycon", state=final.state.value, status=final.status, events=types)
    assert final.state.value == "stopped"
    assert final.status == "WM200"
    assert "stopped" in types
    assert "failed" not in types
