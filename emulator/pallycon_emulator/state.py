"""The emulator's storages and jobs, and how a job moves through its statuses. Pure: no I/O.

A job's status is a function of time: it passes through the guide's sequence (``WM000`` ...
``WM030``, the DRM steps only when DRM is asked for) in equal steps over ``job_seconds``. A job
whose input is missing or empty stops at ``WM021100`` (downloading) and ends as ``WM999`` with
``WM900013`` at the same moment a good job would reach ``WM030``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from pydantic import SecretStr

from pallycon.codes import STATUS_CODES, PackagingError, status_sequence
from pallycon.models import JobListRequest, JobRegisterRequest, StorageListRequest
from pallycon.signing import TIMESTAMP_FORMAT, parse_timestamp

T = TypeVar("T")

_FAILED_SEQUENCE = ("WM000", "WM010", "WM020", "WM021100", "WM999")


@dataclass
class Storage:
    storage_id: str
    storage_name: str
    type: str
    id: str
    password: SecretStr = field(repr=False)
    aws_bucket: str
    description: str | None
    region: str
    reg_date: datetime


@dataclass
class Job:
    job_id: int
    request: JobRegisterRequest
    reg_date: datetime
    duration: float
    failure: PackagingError | None = None
    finished: bool = False
    #: The job list's entry, by (time zone, status style), once the job has ended.
    entries: dict[tuple[str | None, str], dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def steps(self) -> tuple[str, ...]:
        return _FAILED_SEQUENCE if self.failure else status_sequence(self.request.drm)

    @property
    def end_date(self) -> datetime:
        return self.reg_date + timedelta(seconds=self.duration)

    def position(self, now: datetime) -> int:
        """Index into :attr:`steps` at time ``now``."""
        last = len(self.steps) - 1
        if self.duration <= 0 or now >= self.end_date:
            return last
        elapsed = (now - self.reg_date).total_seconds()
        return min(last - 1, max(0, int(elapsed / (self.duration / last))))

    def ended(self, now: datetime) -> bool:
        """Whether the job is in its last status (nothing about it changes any more)."""
        return self.position(now) == len(self.steps) - 1

    def status(self, now: datetime) -> str:
        return self.steps[self.position(now)]

    def changed_at(self, now: datetime) -> datetime:
        """When the job entered its current status."""
        index = self.position(now)
        step = self.duration / (len(self.steps) - 1)
        return self.reg_date + timedelta(seconds=step * index)

    def start_date(self, now: datetime) -> datetime | None:
        """When the job left ``WM000`` (``None`` while still ready)."""
        if self.position(now) == 0:
            return None
        return self.reg_date + timedelta(seconds=self.duration / (len(self.steps) - 1))


@dataclass
class Store:
    """Everything the emulator keeps for one site."""

    storages: dict[str, Storage] = field(default_factory=dict)
    jobs: dict[int, Job] = field(default_factory=dict)
    _storage_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _job_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))

    def next_storage_id(self) -> str:
        return f"ST{next(self._storage_ids):06d}"

    def next_job_id(self) -> int:
        return next(self._job_ids)


# --- Searching and paging ---------------------------------------------------------------------


def offset(time_zone: str | None) -> timezone:
    """The ``time_zone`` option (``hh:mm``, optionally signed) as a tzinfo; UTC when absent."""
    if not time_zone:
        return UTC
    sign = -1 if time_zone.startswith("-") else 1
    hours, minutes = time_zone.lstrip("+-").split(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))


def render_date(moment: datetime | None, zone: timezone) -> str:
    """A date as the guide writes it, in ``zone`` (``Z`` for UTC, else the offset)."""
    if moment is None:
        return ""
    if zone.utcoffset(None) == timedelta(0):
        return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)
    return moment.astimezone(zone).isoformat(timespec="seconds")


def _window(moment: datetime, start: str | None, end: str | None, zone: timezone) -> bool:
    """``from``/``to`` are wall-clock times in ``zone``, inclusive."""
    return _bounds(start, end, zone)(moment)


def _bounds(start: str | None, end: str | None, zone: timezone) -> Callable[[datetime], bool]:
    """:func:`_window` with its bounds parsed once: for a whole job list, not per job."""
    shift = zone.utcoffset(None) or timedelta(0)
    low = parse_timestamp(start) - shift if start else None
    high = parse_timestamp(end) - shift if end else None
    return lambda moment: (low is None or moment >= low) and (high is None or moment <= high)


STATUS_GROUPS: dict[str, frozenset[str]] = {
    "ready": frozenset({"WM000"}),
    "success": frozenset({"WM030"}),
    "failed": frozenset({"WM999"}),
    "complete": frozenset({"WM030", "WM999"}),
    "working": frozenset(code for code, entry in STATUS_CODES.items() if not entry.terminal),
    "process": frozenset(
        code for code, entry in STATUS_CODES.items() if not entry.terminal and code != "WM000"
    ),
    "stop": frozenset({"WM100", "WM200"}),
}


def _keyword(job: Job, kind: str | None, keyword: str | None) -> bool:
    if not kind or keyword is None:
        return True
    needle = keyword.lower()
    if kind == "jobId":
        return str(job.job_id) == keyword.strip()
    if kind == "cid":
        return needle in job.request.content_id.lower()
    return needle in job.request.job_name.lower()


def job_matches(job: Job, query: JobListRequest, now: datetime) -> bool:
    """Whether ``job`` passes every search option of ``query``."""
    return job_filter(query, now)(job)


def job_filter(query: JobListRequest, now: datetime) -> Callable[[Job], bool]:
    """:func:`job_matches` for one query, prepared once for a whole job list."""
    within = _bounds(query.from_, query.to, offset(query.time_zone))
    statuses = STATUS_GROUPS[query.search_status] if query.search_status else None

    def matches(job: Job) -> bool:
        request = job.request
        return (
            _keyword(job, query.search_keyword_type, query.search_keyword)
            and (query.search_type is None or (query.search_type == "drm") == request.drm)
            and (statuses is None or job.status(now) in statuses)
            and (
                query.search_condition is None or query.search_condition in request.streaming_format
            )
            and within(job.reg_date)
        )

    return matches


def storage_matches(storage: Storage, query: StorageListRequest) -> bool:
    kind, keyword = query.search_keyword_type, query.search_keyword
    if kind and keyword is not None:
        value = storage.storage_id if kind == "storageId" else storage.storage_name
        if keyword.lower() not in value.lower():
            return False
    return (
        storage.region == query.region
        and storage.type == query.storage_type
        and _window(storage.reg_date, query.from_, query.to, offset(query.time_zone))
    )


def page(items: Iterable[T], page_unit: int | None, page_index: int | None, cap: int) -> list[T]:
    """One page (defaults: 25 per page, page 1; ``page_unit`` clamped to ``cap``)."""
    unit = min(page_unit or 25, cap)
    start = ((page_index or 1) - 1) * unit
    return list(itertools.islice(items, start, start + unit))
