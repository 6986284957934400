"""Cancelling requests (``pallycon-pack cancel``, ``Producer.cancel``): kept in Redis, so a
cancel outlives any restart (unlike Celery's revokes, held in workers' memory).

A cancel is one version-checked change (``transition.lua``) to ``cancelled``, a final state:

- a request not yet registered (``accepted``) is never registered: a worker about to register
  it marks it ``submitting`` from the version it read, and that mark is refused once the
  cancel has moved the version on (or the cancel is, if the mark came first: then it is
  cancelled as one that may be registered);
- a request that may be registered (``submitting``, ``submitted``): PallyCon has no call to
  cancel a job, so tracking stops and the event says the job may still run at PallyCon (stop
  it in PallyCon Console: a job stopped there ends ``stopped``);
- a finished request is left as it is.

The decision is pure (:func:`plan_cancel`, table-tested); :func:`cancel` reads, decides and
commits, reading again when a worker changed the request in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pallycon_store.events import EventType, State, event
from pallycon_store.record import Fields, Record
from pallycon_store.records import Applied, Change, Records

#: Reads-and-tries of one cancel racing a worker's changes before it gives up (each change a
#: worker makes moves a request on; a handful in a row is already unlikely).
CANCEL_TRIES = 5

#: The longest reason kept, in characters.
MAX_REASON = 200


class CancelOutcome(StrEnum):
    CANCELLED = "cancelled"  # never registered, and never will be
    STOPPED_TRACKING = "stopped_tracking"  # tracking stopped: its job may still run
    FINISHED = "finished"  # already finished: nothing done
    UNKNOWN = "unknown"  # no such request (or its record expired)
    BUSY = "busy"  # changed by a worker at every try: try again


@dataclass(frozen=True)
class Cancel:
    """What a cancel of one request did (or would do), and why."""

    request_id: str
    outcome: CancelOutcome
    message: str
    change: Change | None = None

    @property
    def done(self) -> bool:
        return self.outcome in (CancelOutcome.CANCELLED, CancelOutcome.STOPPED_TRACKING)


def plan_cancel(record: Record | None, request_id: str, now: float, reason: str) -> Cancel:
    """What cancelling ``record`` at ``now`` does (see the module's docstring). Pure."""
    if record is None:
        return Cancel(request_id, CancelOutcome.UNKNOWN, "no such request (or its record expired)")
    if record.state.final:
        message = f"already {record.state.value}: nothing to cancel"
        return Cancel(request_id, CancelOutcome.FINISHED, message)
    reason = " ".join(reason.split())[:MAX_REASON]
    registered = record.state != State.ACCEPTED
    if registered:
        job = f"job {record.job_id}" if record.job_id else f"a job named {record.job_name}"
        outcome = CancelOutcome.STOPPED_TRACKING
        message = (
            f"tracking stopped; {job} may still run at PallyCon, which has no cancel call "
            "(stop it in PallyCon Console)"
        )
    else:
        outcome, message = CancelOutcome.CANCELLED, "cancelled before it was registered"
    fields = Fields(
        state=State.CANCELLED,
        updated_at=now,
        finished_at=now,
        error_message=f"{message}" + (f"; reason: {reason}" if reason else ""),
    )
    change = event(
        EventType.CANCELLED,
        request_id,
        now,
        reason=reason or None,
        registered=registered,
        job_id=record.job_id or None,
    )
    return Cancel(request_id, outcome, message, Change(record, fields, change, finish=True))


def cancel(records: Records, request_id: str, now: float, reason: str = "") -> Cancel:
    """Cancel one request (see the module's docstring): what was done."""
    for _ in range(CANCEL_TRIES):
        planned = plan_cancel(records.get(request_id), request_id, now, reason)
        if planned.change is None:
            return planned
        (applied,) = records.apply_each([planned.change])
        if applied is Applied.DONE:
            return planned
        if applied is Applied.GONE:
            return plan_cancel(None, request_id, now, reason)
    message = f"changed by a worker at each of {CANCEL_TRIES} tries: run the cancel again"
    return Cancel(request_id, CancelOutcome.BUSY, message)
