"""Changes shared by the submit and poll steps: failing a request, committing changes.

A step decides its changes first (an :class:`Outcome` each: the change and the log line it
earns) and commits them together: one Redis round trip for a whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.events import EventType, FailStage, State, event
from worker.logs import log_change
from worker.runtime import Runtime
from worker.store import Change, Record

log = logging.getLogger("pallycon_pack.requests")


@dataclass(frozen=True)
class Outcome:
    """A change to commit, and the line to log once it is applied (none if ``message`` is '')."""

    change: Change
    logger: logging.Logger = log
    message: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


def commit(rt: Runtime, outcomes: Sequence[Outcome]) -> list[bool]:
    """Apply the outcomes' changes in one round trip and log those applied.

    A change made from a version someone else has moved on from is not applied (False).
    """
    applied = rt.store.apply([outcome.change for outcome in outcomes])
    for outcome, done in zip(outcomes, applied, strict=True):
        if done and outcome.message:
            log_change(
                outcome.logger, outcome.change.record.request_id, outcome.message, **outcome.fields
            )
    return applied


def moved(record: Record, fields: dict[str, str]) -> Record:
    """``record`` as it is after a transition with ``fields`` succeeded."""
    data = {**record.data, **fields}
    return Record(record.request_id, State(data["state"]), record.version + 1, data)


def failed(
    rt: Runtime, record: Record, stage: FailStage, code: str, message: str, status: str = ""
) -> Outcome:
    """The request's end as failed, with an event that says where and why."""
    now = rt.clock()
    status = status or record.get("status")
    fields = {
        "state": State.FAILED.value,
        "error_stage": stage.value,
        "error_code": code,
        "error_message": message,
        "status": status,
        "updated_at": repr(now),
        "finished_at": repr(now),
    }
    change = event(
        EventType.FAILED,
        record.request_id,
        record.version + 1,
        now,
        stage=stage.value,
        code=code,
        message=message,
        job_id=record.get("job_id") or None,
        status=status or None,
    )
    logged = {"stage": stage.value, "code": code, "job_id": record.get("job_id") or None}
    return Outcome(
        Change(record, fields, change, finish=True), log, "failed", logged | {"error": message}
    )


def fail(
    rt: Runtime, record: Record, stage: FailStage, code: str, message: str, status: str = ""
) -> bool:
    """End the request as failed now (see :func:`failed`)."""
    return commit(rt, [failed(rt, record, stage, code, message, status)])[0]
