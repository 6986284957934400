"""The emulator's storages and jobs, and how a job moves through its statuses. Pure: no I/O.

A job's status is a function of time: it passes through the guide's sequence (``WM000`` ...
``WM030``, the DRM steps only when DRM is asked for) in equal steps over ``job_seconds``. A job
whose input is missing or empty stops at ``WM021100`` (downloading) and ends as ``WM999`` with
``WM900013`` at the same moment a good job would reach ``WM030``.

With slots (the most jobs of one site working at once), a job's sequence starts when it gets a
slot (:func:`seat`, first registered first served), not at its registration: until then it is
``WM000``. A stopped job is ``WM100`` from its stop on and ``WM200`` ``stop_seconds`` later; it
holds its slot until then (one stopped while waiting never takes one).
"""

from __future__ import annotations

import heapq
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
STOPPING, STOPPED = "WM100", "WM200"


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
    #: When its sequence began: when it got its slot (``None``: at its registration).
    started_at: datetime | None = None
    #: When it was stopped (``None``: never), and how long its stop takes to complete.
    stopped_at: datetime | None = None
    stop_seconds: float = 0.0
    #: The job list's entry, by (time zone, status style), once the job has ended.
    entries: dict[tuple[str | None, str], dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def steps(self) -> tuple[str, ...]:
        return _FAILED_SEQUENCE if self.failure else status_sequence(self.request.drm)

    @property
    def run_start(self) -> datetime:
        """When its sequence began (or will begin): its slot's time, else its registration."""
        return self.reg_date if self.started_at is None else self.started_at

    @property
    def end_date(self) -> datetime:
        """When it reaches its last status: the end of its sequence, or of its stop."""
        if self.stopped_at is not None:
            return self.stopped_at + timedelta(seconds=self.stop_seconds)
        return self.run_start + timedelta(seconds=self.duration)

    @property
    def holds_slot(self) -> bool:
        """Whether it occupies a slot for a while (from :attr:`run_start` to :attr:`end_date`):
        not when it takes no time, nor when it was stopped before its sequence began."""
        began = self.stopped_at is None or self.stopped_at > self.run_start
        return began and self.end_date > self.run_start

    def stopping(self, now: datetime) -> bool:
        """Whether it has been stopped by ``now`` (``WM100``, then ``WM200``)."""
        return self.stopped_at is not None and now >= self.stopped_at

    def position(self, now: datetime) -> int:
        """Index into :attr:`steps` at time ``now``, its stop aside."""
        last = len(self.steps) - 1
        start = self.run_start
        if self.duration <= 0 or now >= start + timedelta(seconds=self.duration):
            return last
        elapsed = (now - start).total_seconds()
        return min(last - 1, max(0, int(elapsed / (self.duration / last))))

    def ended(self, now: datetime) -> bool:
        """Whether the job is in its last status (nothing about it changes any more)."""
        return STATUS_CODES[self.status(now)].terminal

    def status(self, now: datetime) -> str:
        if self.stopping(now):
            return STOPPED if now >= self.end_date else STOPPING
        return self.steps[self.position(now)]

    def changed_at(self, now: datetime) -> datetime:
        """When the job entered its current status."""
        if self.stopped_at is not None and now >= self.stopped_at:
            return self.end_date if now >= self.end_date else self.stopped_at
        index = self.position(now)
        step = self.duration / (len(self.steps) - 1)
        return self.run_start + timedelta(seconds=step * index)

    def start_date(self, now: datetime) -> datetime | None:
        """When the job left ``WM000`` for its sequence (``None`` while ready, and for good if
        it was stopped before)."""
        until = now if self.stopped_at is None else min(now, self.stopped_at)
        if self.position(until) == 0:
            return None
        return self.run_start + timedelta(seconds=self.duration / (len(self.steps) - 1))


@dataclass
class Store:
    """Everything the emulator keeps for one site."""

    storages: dict[str, Storage] = field(default_factory=dict)
    jobs: dict[int, Job] = field(default_factory=dict)
    #: With slots: when each slot in use frees, after every job so far (a heap; see :func:`seat`).
    slots_free: list[datetime] = field(default_factory=list)
    _storage_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _job_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))

    def next_storage_id(self) -> str:
        return f"ST{next(self._storage_ids):06d}"

    def next_job_id(self) -> int:
        return next(self._job_ids)


# --- Slots and stops ---------------------------------------------------------------------------


def seat(job: Job, slots_free: list[datetime], slots: int) -> None:
    """Give ``job`` its slot among ``slots`` (0: unlimited), after the jobs registered before it:
    its sequence starts at its registration, or when the first slot frees if all are taken.
    ``slots_free`` (a heap of when each slot in use frees) is updated. A job stopped before it
    got a slot takes none: its sequence never begins (it starts and stops at its stop)."""
    if not slots:
        job.started_at = job.reg_date
        return
    full = len(slots_free) >= slots
    opens = max(job.reg_date, slots_free[0]) if full else job.reg_date
    if job.stopped_at is not None and job.stopped_at <= opens:
        job.started_at = job.stopped_at
        return
    job.started_at = opens
    if full:
        heapq.heapreplace(slots_free, job.end_date)
    else:
        heapq.heappush(slots_free, job.end_date)


def stop_refused(job: Job, now: datetime) -> str | None:
    """Why ``job`` cannot be stopped at ``now`` (it has ended, or is stopping), or None."""
    status = job.status(now)
    if job.ended(now):
        return f"job {job.job_id} has ended ({status})"
    if job.stopping(now):
        return f"job {job.job_id} is already stopping ({status})"
    return None


def stop(store: Store, job: Job, now: datetime, stop_seconds: float, slots: int) -> None:
    """Stop ``job`` at ``now`` (``WM100``; ``WM200`` ``stop_seconds`` later), and seat the
    site's jobs again: the slot it held, or the place it waited for, goes to the next in line."""
    job.stopped_at = now
    job.stop_seconds = stop_seconds
    if slots:
        store.slots_free = []
        for each in store.jobs.values():  # in registration order
            seat(each, store.slots_free, slots)


@dataclass(frozen=True)
class SlotUse:
    """A site's slots at one moment: jobs working (holding a slot), jobs waiting for one, and
    the most jobs working at once so far."""

    working: int
    waiting: int
    working_peak: int


def slot_use(jobs: Iterable[Job], now: datetime) -> SlotUse:
    """How ``jobs`` (one site's) use their slots at ``now``, and the peak up to ``now``."""
    working = waiting = 0
    changes: list[tuple[datetime, int]] = []
    for job in jobs:
        if job.reg_date <= now < job.run_start:
            waiting += 1
        if not job.holds_slot or job.run_start > now:
            continue
        changes.append((job.run_start, 1))
        if job.end_date <= now:
            changes.append((job.end_date, -1))
        else:
            working += 1
    return SlotUse(working, waiting, _peak(changes))


def _peak(changes: list[tuple[datetime, int]]) -> int:
    """The highest running sum of ``changes`` in time order (a release before a take at the
    same moment: a slot freed at t is free for a job starting at t)."""
    peak = running = 0
    for _, change in sorted(changes):
        running += change
        peak = max(peak, running)
    return peak


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
