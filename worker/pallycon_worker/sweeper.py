"""The sweeper: claims due entries of the two schedules and dispatches short tasks.

Runs in every worker at once: the claim is atomic, so each entry goes to one sweeper, and a
claimed entry comes back by itself after the lease should its task be lost.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery

from pallycon_store import heartbeats
from pallycon_store.messages import send_poll, send_submit
from pallycon_worker.loops import TRANSIENT, LoopHealth, next_pause
from pallycon_worker.runtime import Runtime

log = logging.getLogger("pallycon_pack.sweeper")

#: How often a sweeper drops the index entries of expired finished records and the heartbeats
#: of workers gone away, and announces its sites again (seconds).
TRIM_INTERVAL = 60.0


def sweep_once(rt: Runtime, app: Celery) -> tuple[int, int]:
    """Claim what is due now and send it to the queues: (submits, polls) dispatched."""
    s = rt.settings
    now = rt.clock()
    submits = rt.shared.schedules.claim("submit", now, s.lease_seconds, s.sweep_batch)
    send_submit(app, submits)
    polls = rt.shared.schedules.claim("poll", now, s.lease_seconds, s.sweep_batch)
    send_poll(app, polls)
    return len(submits), len(polls)


def sweep_forever(rt: Runtime, app: Celery, stop: threading.Event, health: LoopHealth) -> None:
    """Sweep every ``sweep_interval`` until ``stop``; Redis outages are waited out.

    Any other error is left to the supervisor (see :mod:`pallycon_worker.loops`), which restarts it.
    """
    pause = rt.settings.sweep_interval
    overview = rt.shared.overview()
    trimmed_at = 0.0
    while not stop.wait(pause):
        try:
            sweep_once(rt, app)
            if rt.clock() - trimmed_at >= TRIM_INTERVAL:
                overview.trim(rt.clock(), rt.settings.record_ttl)
                heartbeats.prune(rt.shared.redis, rt.shared.keys, rt.clock())
                rt.announce()  # again: pp:sites may have been lost (a Redis without AOF)
                trimmed_at = rt.clock()
            health.ok("sweeper")
            pause = rt.settings.sweep_interval
        except TRANSIENT as exc:
            pause = next_pause(pause)
            log.warning("sweep failed (%s); next in %.1fs", exc, pause)
            health.failed("sweeper", exc)
