"""Accepting a packaging request: validate, deduplicate by request id, record, schedule.

The same function serves the Python producer API and the Redis stream intake, so both apply
the same rules. A request is recorded and put on the submit schedule in one atomic step: from
then on it cannot be lost, whether or not the fast-path task message is ever delivered.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from pallycon.errors import FieldError, InvalidRequest
from pallycon.models import JobRegisterRequest, api_dict, validate_request
from worker.decisions import remote_job_name
from worker.events import EventType, FailStage, State, event
from worker.store import RequestStore

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class RequestConflict(Exception):
    """The request id is taken by a request with a different body."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        super().__init__(f"request id {request_id!r} is already used with a different body")


@dataclass(frozen=True)
class Accepted:
    request_id: str
    created: bool  # False: the same request was submitted before (nothing new enqueued)


def new_request_id() -> str:
    return uuid.uuid4().hex


def check_request_id(request_id: str) -> str:
    if not REQUEST_ID_RE.match(request_id):
        raise InvalidRequest(
            [FieldError("request_id", "1-128 of letters, digits and . _ : - (starting alnum)")]
        )
    return request_id


def body_hash(request: JobRegisterRequest) -> str:
    """Equal for equivalent bodies (key order, case of formats) and only for those."""
    canonical = json.dumps(api_dict(request), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Prepared:
    """A validated request, ready to be recorded."""

    request_id: str
    body_hash: str
    fields: dict[str, str]
    event: dict[str, Any]


def prepare(body: Any, request_id: str | None, now: float) -> Prepared:
    """Validate a request and build its record and first event (raises InvalidRequest)."""
    request_id = check_request_id(request_id) if request_id else new_request_id()
    request = validate_request(JobRegisterRequest, body)
    name = remote_job_name(request.job_name, request_id)
    fields = {
        "state": State.ACCEPTED.value,
        "body": json.dumps(api_dict(request), ensure_ascii=False),
        "job_name": name,
        "content_id": request.content_id,
        "created_at": repr(now),
        "updated_at": repr(now),
        "attempts": "0",
    }
    accepted = event(
        EventType.ACCEPTED, request_id, 1, now, content_id=request.content_id, job_name=name
    )
    return Prepared(request_id, body_hash(request), fields, accepted)


def accept(
    store: RequestStore, body: Any, request_id: str | None, now: float, *, retry_at: float
) -> Accepted:
    """Validate and record a request; raises InvalidRequest or RequestConflict.

    The caller sends the submit task at once; ``retry_at`` is when the sweeper dispatches it
    again should that message never arrive.
    """
    ready = prepare(body, request_id, now)
    outcome = store.create(
        ready.request_id, ready.body_hash, ready.fields, ready.event, submit_at=retry_at
    )
    if outcome == "conflict":
        raise RequestConflict(ready.request_id)
    store.durable()
    return Accepted(ready.request_id, created=outcome == "created")


def reject(store: RequestStore, request_id: str, errors: list[FieldError], now: float) -> bool:
    """Record a request that failed validation as failed, with an event naming the fields.

    Returns False when the id was already taken (the earlier request stands).
    """
    message = "; ".join(str(error) for error in errors)
    fields = {
        "state": State.FAILED.value,
        "body": "null",
        "created_at": repr(now),
        "updated_at": repr(now),
        "error_stage": FailStage.VALIDATION.value,
        "error_code": "invalid_request",
        "error_message": message,
    }
    failed = event(
        EventType.FAILED,
        request_id,
        1,
        now,
        stage=FailStage.VALIDATION.value,
        code="invalid_request",
        message=message,
        fields=[{"field": e.field, "message": e.message} for e in errors],
    )
    digest = hashlib.sha256(message.encode("utf-8")).hexdigest()
    return (
        store.create(request_id, f"invalid:{digest}", fields, failed, submit_at=None) == "created"
    )
