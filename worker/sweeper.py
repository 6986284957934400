"""The sweeper: claims due entries of the two schedules and dispatches short tasks.

Runs in every worker at once: the claim is atomic, so each entry goes to one sweeper, and a
claimed entry comes back by itself after the lease should its task be lost.
"""

from __future__ import annotations

import logging
import threading

import redis
from celery import Celery

from worker.dispatch import send_poll, send_submit
from worker.runtime import Runtime

log = logging.getLogger("pallycon_pack.sweeper")

POLL_CHUNK = 5000
SUBMIT_CHUNK = 50  # registrations are sent one by one: small batches keep every worker busy


def sweep_once(rt: Runtime, app: Celery) -> tuple[int, int]:
    """Claim what is due now and send it to the queues: (submits, polls) dispatched."""
    s = rt.settings
    now = rt.clock()
    submits = rt.store.claim("submit", now, s.lease_seconds, s.sweep_batch)
    for start in range(0, len(submits), SUBMIT_CHUNK):
        send_submit(app, submits[start : start + SUBMIT_CHUNK])
    polls = rt.store.claim("poll", now, s.lease_seconds, s.sweep_batch)
    for start in range(0, len(polls), POLL_CHUNK):
        send_poll(app, polls[start : start + POLL_CHUNK])
    return len(submits), len(polls)


def sweep_forever(rt: Runtime, app: Celery, stop: threading.Event) -> None:
    """Sweep every ``sweep_interval`` until ``stop``; survive Redis outages."""
    pause = rt.settings.sweep_interval
    while not stop.wait(pause):
        try:
            sweep_once(rt, app)
            pause = rt.settings.sweep_interval
        except (redis.RedisError, OSError) as exc:
            pause = min(pause * 2, 10.0)
            log.warning("sweep failed (%s); next in %.1fs", exc, pause)
        except Exception:  # the sweeper must not die: log and keep sweeping
            log.exception("sweep failed")
            pause = min(pause * 2, 10.0)
