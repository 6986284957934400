"""The sweeper: takes what is due from the submit lanes (by priority and site, within each
site's room: :mod:`pallycon_worker.flow_rules`) and the poll schedule, and dispatches short tasks.

Runs in every worker at once: the take and the claim are atomic, so each entry goes to one
sweeper, and a claimed entry comes back by itself after the lease should its task be lost. A
sweeper sweeps every ``sweep_interval``, and at once when woken (requests recorded, a place at
PallyCon freed, a submit task started: :meth:`pallycon_store.flow.Flow.wait`).
"""

from __future__ import annotations

import logging
import threading
import time

from celery import Celery

from pallycon_store import heartbeats
from pallycon_store.messages import send_poll, send_submit
from pallycon_store.sites import book
from pallycon_worker import flow_rules
from pallycon_worker.flow_rules import Credits, SiteLimits
from pallycon_worker.loops import TRANSIENT, LoopHealth, next_pause
from pallycon_worker.runtime import Runtime

log = logging.getLogger("pallycon_pack.sweeper")

#: How often a sweeper drops the index entries of expired finished records and the heartbeats
#: of workers gone away, and announces its sites again (seconds).
TRIM_INTERVAL = 60.0
#: The shortest time between two sweeps of one sweeper, in seconds (woken by a flood of kicks).
MIN_GAP = 0.05


def sweep_once(
    rt: Runtime, app: Celery, credits: dict[str, Credits] | None = None, *, polls: bool = True
) -> tuple[int, int]:
    """Take what is due now and send it to the queues: (submits, polls) dispatched.
    ``credits``: the priorities' credits per site, kept between sweeps; ``polls``: claim the
    due polls too (a sweep woken early takes submissions only, so that polls keep coming due
    together, one job-list pass for many)."""
    s = rt.settings
    now = rt.clock()
    submits = dispatch_submits(rt, app, now, credits if credits is not None else {})
    claimed = rt.shared.schedules.claim_polls(now, s.lease_seconds, s.sweep_batch) if polls else []
    send_poll(app, claimed)
    return submits, len(claimed)


def dispatch_submits(rt: Runtime, app: Celery, now: float, credits: dict[str, Credits]) -> int:
    """Take the requests to register next from the submit lanes, each site within its room,
    and send their tasks (a site's requests together, :func:`flow_rules.task_size` per task):
    how many."""
    flow = rt.shared.flow
    served = rt.served_limits()
    lanes = flow.lanes(served)
    limits = dict(served)
    strays = {lane.site_id for lane in lanes} - served.keys()
    if strays:  # requests of sites this worker does not serve: sent on only if none does
        announced = book(rt.shared.redis, rt.shared.keys)
        for site in strays:
            if not (site and site in announced.ids) and not (not site and announced.default):
                limits[site] = SiteLimits(rate=1.0)  # a worker fails them (not served)
    snapshot = flow.snapshot(now, lanes, rt.server_clock)
    counts = flow_rules.plan(snapshot, limits, credits)
    lookups = flow_rules.lookups(snapshot, limits)
    # Every lane with something due, so that its site's lookups are taken even with no place
    due = {lane: counts.get(lane, 0) for lane, n in snapshot.due.items() if n}
    marked_before = now - rt.settings.reconcile_grace  # no lookup falls due sooner
    taken = flow.take(now, rt.settings.lease_seconds, due, lookups, marked_before=marked_before)
    for site, ids in taken.items():
        rate = limits[site].rate if site in limits else 1.0
        send_submit(app, ids, chunk=flow_rules.task_size(rate))
    return sum(len(ids) for ids in taken.values())


def sweep_forever(rt: Runtime, app: Celery, stop: threading.Event, health: LoopHealth) -> None:
    """Sweep every ``sweep_interval`` until ``stop``; Redis outages are waited out.

    Any other error is left to the supervisor (see :mod:`pallycon_worker.loops`), which restarts it.
    """
    pause = rt.settings.sweep_interval
    overview = rt.shared.overview()
    trimmed_at = 0.0
    credits: dict[str, Credits] = {}
    waited = False  # the last round ended waiting for a kick or the interval
    polled = 0.0  # when polls were last claimed (monotonic)
    while not stop.is_set():
        try:
            if not waited:  # the first round, or after a failure
                stop.wait(pause)
            if stop.is_set():
                break
            started = time.monotonic()
            polls_due = started - polled >= rt.settings.sweep_interval
            sweep_once(rt, app, credits, polls=polls_due)
            if polls_due:
                polled = started
            if rt.clock() - trimmed_at >= TRIM_INTERVAL:
                moved = rt.shared.flow.sort_old_schedule(rt.settings.site_id)
                if moved:
                    log.info("%d waiting request(s) moved to their site's lanes", moved)
                overview.trim(rt.clock(), rt.settings.record_ttl)
                heartbeats.prune(rt.shared.redis, rt.shared.keys, rt.clock())
                rt.announce()  # again: pp:sites may have been lost (a Redis without AOF)
                trimmed_at = rt.clock()
            health.ok("sweeper")
            pause = rt.settings.sweep_interval
            if rt.shared.flow.wait(pause):  # woken: not more often than MIN_GAP apart
                stop.wait(max(0.0, MIN_GAP - (time.monotonic() - started)))
            waited = True
        except TRANSIENT as exc:
            waited = False
            pause = next_pause(pause)
            log.warning("sweep failed (%s); next in %.1fs", exc, pause)
            health.failed("sweeper", exc)
