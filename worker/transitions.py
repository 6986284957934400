"""Changes shared by the submit and poll steps: failing a request, following a transition."""

from __future__ import annotations

import logging

from worker.events import EventType, FailStage, State, event
from worker.logs import log_change
from worker.runtime import Runtime
from worker.store import Record

log = logging.getLogger("pallycon_pack.requests")


def moved(record: Record, fields: dict[str, str]) -> Record:
    """``record`` as it is after a transition with ``fields`` succeeded."""
    data = {**record.data, **fields}
    return Record(record.request_id, State(data["state"]), record.version + 1, data)


def fail(
    rt: Runtime, record: Record, stage: FailStage, code: str, message: str, status: str = ""
) -> bool:
    """End the request as failed, with an event that says where and why."""
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
    done = rt.store.transition(record, fields, change, finish=True)
    if done:
        log_change(
            log,
            record.request_id,
            "failed",
            stage=stage.value,
            code=code,
            job_id=record.get("job_id") or None,
            error=message,
        )
    return done
