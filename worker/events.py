"""The request states and the result events: schema version 1 (docs/RESULTS.md). Pure.

Every event is one JSON object with these fields, plus those of its type::

    schema      1
    event_id    "<request_id>:<version>": unique, stable across redelivery (dedupe on it)
    type        accepted | submitted | progress | completed | failed
    request_id  the producer's request id
    ts          UTC time of the change, ISO 8601

    accepted    content_id, job_name
    submitted   job_id, job_name, attempts
    progress    job_id, status (WM code or word), meaning, stage
    completed   job_id, content_id, output_path, status
    failed      stage (validation|submit|packaging|timeout|dead_letter), code, message,
                job_id and status when known
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1


class State(StrEnum):
    ACCEPTED = "accepted"  # recorded, not yet sent
    SUBMITTING = "submitting"  # a POST may be in flight or its answer lost: reconcile first
    SUBMITTED = "submitted"  # the remote job exists; being polled
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (State.COMPLETED, State.FAILED)


class EventType(StrEnum):
    ACCEPTED = "accepted"
    SUBMITTED = "submitted"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"


class FailStage(StrEnum):
    VALIDATION = "validation"
    SUBMIT = "submit"
    PACKAGING = "packaging"
    TIMEOUT = "timeout"
    DEAD_LETTER = "dead_letter"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def event(kind: EventType, request_id: str, version: int, at: float, **data: Any) -> dict[str, Any]:
    """A result event for the change that makes the record's version ``version``."""
    return {
        "schema": SCHEMA_VERSION,
        "event_id": f"{request_id}:{version}",
        "type": kind.value,
        "request_id": request_id,
        "ts": iso(at),
        **{key: value for key, value in data.items() if value is not None},
    }
