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
from pallycon.models import JobRegisterRequest, WireOptions, api_dict, api_json, validate_request
from worker.decisions import remote_job_name
from worker.events import EventType, FailStage, State, event
from worker.store import Created, RequestStore

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


#: Job registrations are compared in the longer of the two spellings of the protection key.
_LONGEST_WIRE = WireOptions(protection_key="protection_type")


def check_size(request: JobRegisterRequest, job_name: str, max_api_json: int) -> None:
    """Refuse a request whose API JSON, as it will be sent, is over ``max_api_json`` bytes."""
    size = len(api_json(request.model_copy(update={"job_name": job_name}), _LONGEST_WIRE))
    if size > max_api_json:
        raise InvalidRequest(
            [
                FieldError(
                    "body",
                    f"{size} bytes of API JSON, over the limit of {max_api_json} bytes "
                    "that can be sent to the API (see docs/RESULTS.md, request size)",
                )
            ]
        )


@dataclass(frozen=True)
class Prepared:
    """A validated request, ready to be recorded."""

    request_id: str
    body_hash: str
    fields: dict[str, str]
    event: dict[str, Any]


def prepare(
    body: Any,
    request_id: str | None,
    now: float,
    *,
    max_api_json: int,
    entry_id: str | None = None,
) -> Prepared:
    """Validate a request and build its record and first event (raises InvalidRequest).

    ``entry_id``: the intake stream entry it came from, kept in the record and its event.
    """
    request_id = check_request_id(request_id) if request_id else new_request_id()
    request = validate_request(JobRegisterRequest, body)
    name = remote_job_name(request.job_name, request_id)
    check_size(request, name, max_api_json)
    fields = {
        "state": State.ACCEPTED.value,
        "body": json.dumps(api_dict(request), ensure_ascii=False),
        "job_name": name,
        "content_id": request.content_id,
        "created_at": repr(now),
        "updated_at": repr(now),
        "attempts": "0",
    } | ({"entry_id": entry_id} if entry_id else {})
    accepted = event(
        EventType.ACCEPTED,
        request_id,
        1,
        now,
        content_id=request.content_id,
        job_name=name,
        entry_id=entry_id,
    )
    return Prepared(request_id, body_hash(request), fields, accepted)


def accept(
    store: RequestStore,
    body: Any,
    request_id: str | None,
    now: float,
    *,
    retry_at: float,
    max_api_json: int,
) -> Accepted:
    """Validate and record a request; raises InvalidRequest or RequestConflict.

    The caller sends the submit task at once; ``retry_at`` is when the sweeper dispatches it
    again should that message never arrive.
    """
    ready = prepare(body, request_id, now, max_api_json=max_api_json)
    outcome = store.create(
        ready.request_id, ready.body_hash, ready.fields, ready.event, submit_at=retry_at
    )
    if outcome == "conflict":
        raise RequestConflict(ready.request_id)
    store.durable()
    return Accepted(ready.request_id, created=outcome == "created")


def refuse(
    store: RequestStore,
    request_id: str,
    errors: list[FieldError],
    now: float,
    *,
    entry_id: str,
    stage: FailStage = FailStage.VALIDATION,
    code: str = "invalid_request",
) -> Created:
    """Record an intake entry that cannot become a request as a failed request of that id,
    with an event naming the fields; the store's outcome ("created" unless the id is taken:
    the earlier request stands, untouched)."""
    message = "; ".join(str(error) for error in errors)
    fields = {
        "state": State.FAILED.value,
        "body": "null",
        "created_at": repr(now),
        "updated_at": repr(now),
        "error_stage": stage.value,
        "error_code": code,
        "error_message": message,
        "entry_id": entry_id,
    }
    failed = event(
        EventType.FAILED,
        request_id,
        1,
        now,
        stage=stage.value,
        code=code,
        message=message,
        fields=[{"field": e.field, "message": e.message} for e in errors],
        entry_id=entry_id,
    )
    digest = hashlib.sha256(message.encode("utf-8")).hexdigest()
    return store.create(request_id, f"{code}:{digest}", fields, failed, submit_at=None)
