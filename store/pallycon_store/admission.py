"""Admitting a packaging request: validate, name, deduplicate by request id, record, schedule.

Two steps, one path, taken by the Python producer API (``Producer.submit_many``), the Redis
stream intake and ``submit --batch``'s check: :func:`prepare` validates :class:`Submission` s
and builds their records (the site turned into its stored form by a :class:`SiteBook`, so that
every spelling of a site is one request), :func:`admit` records them. A request is recorded and
put on its submit lane in one atomic step: from then on it cannot be lost; a sweeper takes it
from there when its turn comes (:mod:`pallycon_store.flow`). What a caller does with a refusal
or a conflict (raise, record a failed request, report a line) is the caller's.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pallycon.errors import FieldError, InvalidRequest
from pallycon.models import (
    NAME_MAX_BYTES,
    JobRegisterRequest,
    WireOptions,
    api_dict,
    api_json,
    validate_request,
)
from pallycon_config import Settings
from pallycon_config.site_ref import SiteBook, parse_site_id
from pallycon_store.durability import Durability
from pallycon_store.events import EventType, FailStage, State, event
from pallycon_store.failures import FailureCode
from pallycon_store.flow import DEFAULT_PRIORITY, parse_priority
from pallycon_store.record import Fields
from pallycon_store.records import Created, NewRequest, Records

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

#: The largest producer metadata, in bytes of compact JSON (UTF-8); larger is refused.
MAX_METADATA_BYTES = 2048


class RequestConflict(Exception):
    """Request ids taken by requests with a different body: :attr:`request_ids` (at least one;
    :attr:`request_id` is the first)."""

    def __init__(self, *request_ids: str) -> None:
        if not request_ids:
            raise ValueError("RequestConflict: name at least one request id")
        self.request_ids = request_ids
        self.request_id = request_ids[0]
        if len(request_ids) == 1:
            said = f"request id {request_ids[0]!r} is"
        else:
            said = "request ids " + ", ".join(repr(i) for i in request_ids) + " are"
        super().__init__(f"{said} already used with a different body")


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
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate (JSON's "\ud800"): not text Redis can keep
        raise InvalidRequest(
            [FieldError("metadata", "not valid Unicode (a lone surrogate)")]
        ) from None
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


@dataclass(frozen=True)
class Submission:
    """One request as a caller hands it over: parsed from its input, not yet validated."""

    body: Any  # the job registration, a JSON object
    request_id: str | None = None  # None: a new id
    metadata: Any = None  # the producer's JSON object (see check_metadata)
    site_id: Any = None  # None, "", the default site's id or another id
    entry_id: str | None = None  # the intake stream entry it came from
    priority: Any = None  # high, normal or bulk (None or "": normal)


@dataclass(frozen=True)
class Limits:
    """The largest API JSON a request may have, in bytes."""

    max_api_json: int  # for the default site
    max_api_json_any_site: int  # for a named site (its id's length unknown here: the longest)

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_api_json_bytes, settings.max_api_json_bytes_any_site)

    def of_site(self, site: str) -> int:
        """The limit of a request for the stored ``site``."""
        return self.max_api_json_any_site if site else self.max_api_json


def prepare(
    submissions: Sequence[Submission], now: float, *, sites: SiteBook, limits: Limits
) -> list[NewRequest]:
    """Validate every submission and build its record and first event; writes nothing.

    The site is turned into its stored form by ``sites`` (an unknown one is an error naming
    ``site_id``), and the limit and the body hash are those of that form, so that every
    spelling of a site is one request. Raises one InvalidRequest naming every bad field of
    every submission (``[index].field`` when there are several) and every id given twice with
    different bodies. An id given twice with the same body is prepared twice (one request).
    """
    prepared, errors = [], []
    first: dict[str, tuple[int, str]] = {}  # request id -> where it came first, its body hash
    for index, submission in enumerate(submissions):
        prefix = f"[{index}]." if len(submissions) > 1 else ""
        try:
            ready = _prepare_one(submission, now, sites, limits)
        except InvalidRequest as exc:
            errors += [FieldError(f"{prefix}{e.field}", e.message) for e in exc.errors]
            continue
        seen = first.setdefault(ready.request_id, (index, ready.body_hash))
        if seen[1] != ready.body_hash:
            message = f"also given at [{seen[0]}] with a different body"
            errors.append(FieldError(f"{prefix}request_id", message))
        prepared.append(ready)
    if errors:
        raise InvalidRequest(errors)
    return prepared


def _prepare_one(submission: Submission, now: float, sites: SiteBook, limits: Limits) -> NewRequest:
    """One submission's record and first event (InvalidRequest naming every bad field: the
    metadata's, the site's and the body's; a bad request id alone)."""
    errors: list[FieldError] = []
    try:
        meta = check_metadata(submission.metadata)
    except InvalidRequest as exc:
        errors += exc.errors
    site = ""
    try:
        site = sites.stored(parse_site_id(submission.site_id))
    except InvalidRequest as exc:
        errors += exc.errors
    priority = DEFAULT_PRIORITY
    try:
        priority = parse_priority(submission.priority)
    except InvalidRequest as exc:
        errors += exc.errors
    given = submission.request_id
    request_id = check_request_id(given) if given else new_request_id()
    try:
        request = validate_request(JobRegisterRequest, submission.body)
    except InvalidRequest as exc:
        raise InvalidRequest(errors + exc.errors) from None
    if errors:
        raise InvalidRequest(errors)
    name = remote_job_name(request.job_name, request_id)
    check_size(request, name, limits.of_site(site))
    entry_id = submission.entry_id
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
    if priority != DEFAULT_PRIORITY:  # not written for normal: as before priorities existed
        fields["priority"] = priority.value
    accepted = event(
        EventType.ACCEPTED,
        request_id,
        now,
        content_id=request.content_id,
        job_name=name,
        entry_id=entry_id,
        site_id=site or None,
        priority=priority.value if priority != DEFAULT_PRIORITY else None,
        metadata=json.loads(meta) if meta else None,
    )
    return NewRequest(request_id, body_hash(request, site), fields, accepted)


def admit(
    records: Records,
    durability: Durability,
    prepared: Sequence[NewRequest],
    *,
    submit_at: float | Literal["now"] = "now",
    confirm: bool = True,
) -> list[Created]:
    """Record prepared requests (their ids distinct) and put them on their submit lanes due at
    ``submit_at`` (``"now"``: by Redis's clock; a sweeper is woken to take them by priority and
    site), all or nothing, in one atomic step: each one's outcome (``created``,
    ``duplicate``; on a ``conflict`` nothing at all is written and the others are ``skipped``).

    ``confirm``: then wait until Redis has the write on disk and on the replicas asked for
    (:class:`Durability`; not after a conflict, which wrote nothing). The intake passes False:
    it acknowledges its entry only after this write, and the AOF keeps writes in order, so no
    crash can keep the acknowledgement without the record; a wait per entry would cost the
    intake its throughput.
    """
    server = durability.server() if confirm else None
    outcomes = records.create_many(prepared, submit_at=submit_at)
    if server is not None and "conflict" not in outcomes:
        ids = [item.request_id for item in prepared]
        durability.wait(server, present=lambda: len(records.get_many(ids)) == len(ids))
    return outcomes


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
