"""Admitting a packaging request: validate, name, deduplicate by request id, record, schedule.

The same function serves the Python producer API and the Redis stream intake, so both apply
the same rules. A request is recorded and put on the submit schedule in one atomic step: from
then on it cannot be lost, whether or not the fast-path task message is ever delivered.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pallycon_config.rules import check_site_id as check_site_id_shape

from pallycon.errors import FieldError, InvalidRequest
from pallycon.models import (
    NAME_MAX_BYTES,
    JobRegisterRequest,
    WireOptions,
    api_dict,
    api_json,
    validate_request,
)
from pallycon_store.durability import Durability
from pallycon_store.events import EventType, FailStage, State, event
from pallycon_store.failures import FailureCode
from pallycon_store.record import Fields
from pallycon_store.records import Created, NewRequest, Records

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

#: The largest producer metadata, in bytes of compact JSON (UTF-8); larger is refused.
MAX_METADATA_BYTES = 2048


class RequestConflict(Exception):
    """The request id is taken by a request with a different body."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        super().__init__(f"request id {request_id!r} is already used with a different body")


@dataclass(frozen=True)
class Accepted:
    request_id: str
    created: bool  # False: the same request was submitted before (nothing new enqueued)


TOKEN_LENGTH = 10


def request_token(request_id: str) -> str:
    """A short stable token of the request id, carried in the remote job name."""
    return hashlib.sha256(request_id.encode("utf-8")).hexdigest()[:TOKEN_LENGTH]


def remote_job_name(job_name: str, request_id: str) -> str:
    """``<job_name>-<token>``, at most 50 bytes: unique per request, so a lost answer to the
    registration can be found again in the job list."""
    room = NAME_MAX_BYTES - TOKEN_LENGTH - 1
    head = job_name.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return f"{head}-{request_token(request_id)}"


def new_request_id() -> str:
    return uuid.uuid4().hex


def check_request_id(request_id: str) -> str:
    if not REQUEST_ID_RE.match(request_id):
        raise InvalidRequest(
            [FieldError("request_id", "1-128 of letters, digits and . _ : - (starting alnum)")]
        )
    return request_id


def check_site_id(site_id: Any) -> str:
    """The site a request names ("" for none); raises InvalidRequest naming ``site_id``.
    Whether a site of that id is served is the caller's to check (:class:`SiteUnknown`)."""
    if site_id is None or site_id == "":
        return ""
    try:
        if not isinstance(site_id, str):
            raise ValueError("must be a string: a PallyCon site id, e.g. TUTO")
        return check_site_id_shape(site_id)  # PALLYCON_SITE_ID's rule
    except ValueError as exc:
        raise InvalidRequest([FieldError("site_id", str(exc))]) from None


def unknown_site(site_id: str, known: list[str]) -> FieldError:
    """The error for a request naming a site no worker serves (or naming none, where there is
    no default site)."""
    served = ", ".join(known) if known else "none announced yet"
    if not site_id:
        return FieldError("site_id", f"no site named, and no default site (sites served: {served})")
    return FieldError("site_id", f"unknown site {site_id!r} (sites served: {served})")


def check_metadata(metadata: Any) -> str:
    """The producer's metadata as compact JSON text ("" for none: ``None`` or ``{}``); raises
    InvalidRequest naming the field ``metadata`` and why.

    Metadata is a JSON object (its values anything JSON, nested or not) of at most
    :data:`MAX_METADATA_BYTES` bytes as compact JSON. It is kept in the record and carried in
    every event of the request; it is not part of the body, so it does not make a request
    different (a resubmission under the same id keeps the first one's metadata).
    """
    if metadata is None:
        return ""
    if not isinstance(metadata, Mapping):
        kind = "a list" if isinstance(metadata, list | tuple) else type(metadata).__name__
        raise InvalidRequest([FieldError("metadata", f"must be a JSON object, not {kind}")])
    if not metadata:
        return ""
    try:
        text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequest([FieldError("metadata", f"not JSON: {exc}")]) from None
    size = len(text.encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        message = f"{size} bytes of compact JSON, over the limit of {MAX_METADATA_BYTES}"
        raise InvalidRequest([FieldError("metadata", message)])
    return text


def parse_metadata(text: str | None) -> Any:
    """Metadata given as JSON text (the intake stream's field), parsed; raises InvalidRequest.
    The result still has to pass :func:`check_metadata`."""
    if text is None or text == "":
        return None
    if len(text) > 4 * MAX_METADATA_BYTES:  # not parsed at all: far over the limit
        message = f"{len(text)} characters, over the limit of {MAX_METADATA_BYTES} bytes"
        raise InvalidRequest([FieldError("metadata", message)])
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest([FieldError("metadata", f"not JSON: {exc}")]) from None


def body_hash(request: JobRegisterRequest, site_id: str = "") -> str:
    """Equal for equivalent bodies (key order, case of formats) for the same site, and only
    for those. A request that names no site hashes as before sites existed."""
    canonical = json.dumps(api_dict(request), sort_keys=True, separators=(",", ":"))
    if site_id:
        canonical = f"{site_id}\n{canonical}"
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


def prepare(
    body: Any,
    request_id: str | None,
    now: float,
    *,
    max_api_json: int,
    entry_id: str | None = None,
    metadata: Any = None,
    site_id: Any = None,
) -> NewRequest:
    """Validate a request and build its record and first event (raises InvalidRequest naming
    every bad field, the body's and ``metadata``'s).

    ``entry_id``: the intake stream entry it came from, kept in the record and its event.
    ``metadata``: the producer's JSON object (see :func:`check_metadata`), kept in the record
    and carried in its events. ``site_id``: the PallyCon site it is for (None or "": the
    default site), its shape checked here.
    """
    errors: list[FieldError] = []
    try:
        meta = check_metadata(metadata)
    except InvalidRequest as exc:
        errors += exc.errors
    site = ""
    try:
        site = check_site_id(site_id)
    except InvalidRequest as exc:
        errors += exc.errors
    request_id = check_request_id(request_id) if request_id else new_request_id()
    try:
        request = validate_request(JobRegisterRequest, body)
    except InvalidRequest as exc:
        raise InvalidRequest(errors + exc.errors) from None
    if errors:
        raise InvalidRequest(errors)
    name = remote_job_name(request.job_name, request_id)
    check_size(request, name, max_api_json)
    fields = Fields(
        state=State.ACCEPTED,
        body=json.dumps(api_dict(request), ensure_ascii=False),
        job_name=name,
        content_id=request.content_id,
        created_at=now,
        updated_at=now,
        attempts=0,
    )
    if entry_id:
        fields["entry_id"] = entry_id
    if meta:
        fields["metadata"] = meta
    if site:
        fields["site_id"] = site
    accepted = event(
        EventType.ACCEPTED,
        request_id,
        now,
        content_id=request.content_id,
        job_name=name,
        entry_id=entry_id,
        site_id=site or None,
        metadata=json.loads(meta) if meta else None,
    )
    return NewRequest(request_id, body_hash(request, site), fields, accepted)


def accept(
    records: Records,
    durability: Durability,
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
    server = durability.server()
    outcome = records.create(ready, submit_at=retry_at)
    if outcome == "conflict":
        raise RequestConflict(ready.request_id)
    durability.wait(server)
    return Accepted(ready.request_id, created=outcome == "created")


def refuse(
    records: Records,
    request_id: str,
    errors: list[FieldError],
    now: float,
    *,
    entry_id: str,
    stage: FailStage = FailStage.VALIDATION,
    code: FailureCode = FailureCode.INVALID_REQUEST,
    metadata: str = "",
) -> Created:
    """Record an intake entry that cannot become a request as a failed request of that id,
    with an event naming the fields; the store's outcome ("created" unless the id is taken:
    the earlier request stands, untouched). ``metadata``: the entry's, if valid (compact JSON
    from :func:`check_metadata`), kept and carried in the event as for an accepted request."""
    message = "; ".join(str(error) for error in errors)
    fields = Fields(
        state=State.FAILED,
        body="null",
        created_at=now,
        updated_at=now,
        error_stage=stage.value,
        error_code=code,
        error_message=message,
        entry_id=entry_id,
    )
    if metadata:
        fields["metadata"] = metadata
    failed = event(
        EventType.FAILED,
        request_id,
        now,
        stage=stage.value,
        code=code,
        message=message,
        fields=[{"field": e.field, "message": e.message} for e in errors],
        entry_id=entry_id,
        metadata=json.loads(metadata) if metadata else None,
    )
    digest = hashlib.sha256(message.encode("utf-8")).hexdigest()
    return records.create(
        NewRequest(request_id, f"{code}:{digest}", fields, failed), submit_at=None
    )
