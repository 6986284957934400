"""The request states and the result events: schema version 2 (docs/RESULTS.md). Pure.

Every event is one JSON object with these fields, plus those of its type::

    schema      2
    event_id    "<request_id>:<version>" ("intake:<entry id>" for rejected): unique, stable
                across redelivery (dedupe on it)
    type        accepted | submitted | progress | completed | failed | cancelled | stopped
                | rejected
    request_id  the producer's request id
    ts          UTC time of the change, ISO 8601

    accepted    content_id, job_name; entry_id when it came from the intake stream
    submitted   job_id, job_name, attempts
    progress    job_id, status (WM code or word), meaning, stage
    completed   job_id, content_id, output_path, status
    failed      stage (validation|submit|packaging|timeout|dead_letter), code, message,
                job_id and status when known; entry_id when refused at the intake stream
    cancelled   reason, registered (whether a job may exist at PallyCon: it then may still
                run, PallyCon has no cancel), job_id when known: cancelled on request
                (``pallycon-pack cancel``, ``Producer.cancel``)
    stopped     job_id, status (WM200): stopped at PallyCon (its Console), not failed
    rejected    entry_id, code (invalid_request|conflict|duplicate|dead_letter), message,
                fields: an intake entry that created no request and changed none (its
                request id was taken); the request of that id, if any, is untouched

A ``failed`` event's ``code`` is one of ours (``FailureCode``, :mod:`pallycon_store.failures`)
or PallyCon's; a ``rejected`` event's is always ours. ``failures.explain`` says what each means.

Every event of a request that carries producer metadata has it as ``metadata`` (the object);
an event following an operator's retry has ``retry`` (its number): see docs/RESULTS.md.

Version 2 added ``rejected`` and ``entry_id``; nothing of version 1 changed meaning. The
``cancelled`` and ``stopped`` types came later, within version 2: a consumer that does not know
a type keeps reading (docs/RESULTS.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 2


class State(StrEnum):
    ACCEPTED = "accepted"  # recorded, not yet sent
    SUBMITTING = "submitting"  # a POST may be in flight or its answer lost: reconcile first
    SUBMITTED = "submitted"  # the remote job exists; being polled
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # on request, before or after it was registered
    STOPPED = "stopped"  # stopped at PallyCon (WM200)

    @property
    def final(self) -> bool:
        return self in (State.COMPLETED, State.FAILED, State.CANCELLED, State.STOPPED)

    @property
    def in_flight(self) -> bool:
        """Whether a request in this state holds one of its site's places at PallyCon: its
        registration may have been sent, and its job has not finished."""
        return self in (State.SUBMITTING, State.SUBMITTED)


class EventType(StrEnum):
    ACCEPTED = "accepted"
    SUBMITTED = "submitted"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    REJECTED = "rejected"


class FailStage(StrEnum):
    VALIDATION = "validation"
    SUBMIT = "submit"
    PACKAGING = "packaging"
    TIMEOUT = "timeout"
    DEAD_LETTER = "dead_letter"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def event(kind: EventType, request_id: str, at: float, **data: Any) -> dict[str, Any]:
    """A result event, without its ``event_id``: the script that writes it with its change
    stamps ``"<request_id>:<version>"`` from the version it writes (store/transition.lua)."""
    return {
        "schema": SCHEMA_VERSION,
        "type": kind.value,
        "request_id": request_id,
        "ts": iso(at),
        **{key: value for key, value in data.items() if value is not None},
    }


def rejected(
    entry_id: str, request_id: str, at: float, code: str, message: str, **data: Any
) -> dict[str, Any]:
    """The one outcome of an intake entry that created no request (see the module's table)."""
    made = event(
        EventType.REJECTED, request_id, at, entry_id=entry_id, code=code, message=message, **data
    )
    return {"event_id": f"intake:{entry_id}"} | made
