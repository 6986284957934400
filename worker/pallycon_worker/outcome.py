"""What a step decides: an :class:`Outcome` (the change to commit, its log line, its counters),
under a :class:`StepPolicy` (the settings a step's decisions read). Pure.

Steps decide first and commit after (``Runtime.commit``): one Redis round trip for a batch, and
the log line and counters only for changes that were applied.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pallycon_config import Settings
from pallycon_store.counters import Metric
from pallycon_store.events import EventType, FailStage, State, event
from pallycon_store.failures import FailureCode
from pallycon_store.record import Fields, Record
from pallycon_store.records import Change
from pallycon_store.schedules import Schedule
from pallycon_worker.decisions import PollPolicy, RetryPolicy


@dataclass(frozen=True)
class Outcome:
    """A change to commit; once applied, ``message`` is logged (unless '') with ``fields`` at
    ``level`` and each of ``counts`` counted."""

    change: Change
    message: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    counts: tuple[Metric, ...] = ()
    level: Literal["info", "warning"] = "info"


@dataclass(frozen=True)
class StepPolicy:
    """The settings that the submit and poll decisions read."""

    max_deliveries: int
    submit_deadline: float
    reconcile_grace: float
    read_timeout: float
    connect_timeout: float
    task_time_limit: float
    job_timeout: float
    retry: RetryPolicy
    polling: PollPolicy

    @property
    def post_bound(self) -> float:
        """The longest a registration can take to land once it has left (its token taken):
        connecting, writing and reading, each bounded by the client's timeouts."""
        return self.connect_timeout + 2 * self.read_timeout

    @classmethod
    def of(cls, s: Settings) -> StepPolicy:
        return cls(
            max_deliveries=s.max_deliveries,
            submit_deadline=s.submit_deadline,
            reconcile_grace=s.reconcile_grace,
            read_timeout=s.read_timeout,
            connect_timeout=s.connect_timeout,
            task_time_limit=s.task_time_limit,
            job_timeout=s.job_timeout,
            retry=RetryPolicy(s.retry_base, s.retry_cap, s.reconcile_grace),
            polling=PollPolicy(s.poll_interval, s.poll_busy_interval, s.poll_grid),
        )


def failed(
    record: Record, stage: FailStage, code: str, message: str, now: float, status: str = ""
) -> Outcome:
    """The request's end as failed, with an event that says where and why: ``code`` is one of
    ours (:class:`~pallycon_store.failures.FailureCode`) or PallyCon's."""
    status = status or record.status
    fields = Fields(
        state=State.FAILED,
        error_stage=stage.value,
        error_code=code,
        error_message=message,
        status=status,
        updated_at=now,
        finished_at=now,
    )
    change = event(
        EventType.FAILED,
        record.request_id,
        now,
        stage=stage.value,
        code=code,
        message=message,
        job_id=record.job_id or None,
        status=status or None,
    )
    logged = {"stage": stage.value, "code": code, "job_id": record.job_id or None}
    return Outcome(
        Change(record, fields, change, finish=True), "failed", logged | {"error": message}
    )


def dead_lettered(record: Record, doing: str, limit: int, now: float) -> Outcome:
    """The request ends as ``dead_letter``: delivered more than ``limit`` times unfinished."""
    message = f"{doing} more than {limit} times without finishing"
    if record.state == State.SUBMITTING:
        message += f"; its job may exist as {record.job_name}"
    return failed(record, FailStage.DEAD_LETTER, FailureCode.DEAD_LETTER, message, now)


class Triage(StrEnum):
    RUN = "run"
    ISOLATE = "isolate"  # delivered before without finishing: run it alone, in its own task
    SKIP = "skip"  # unknown, or not in a state this step handles: a late or duplicate message


def triage(record: Record | None, states: Collection[State], *, alone: bool) -> Triage:
    """Whether a step runs a request of its batch now (submit and poll alike).

    A request whose earlier delivery never finished (its worker died mid-batch) is run alone,
    so that one poison request cannot take a batch down twice.
    """
    if record is None or record.state not in states:
        return Triage.SKIP
    if record.deliveries > 0 and not alone:
        return Triage.ISOLATE
    return Triage.RUN


def not_served(
    record: Record,
    message: str,
    now: float,
    policy: StepPolicy,
    schedule: Schedule,
    *,
    elsewhere: bool,
) -> Outcome:
    """The request names a site this worker does not serve. If another worker serves it
    (``elsewhere``: announced), or the request's job may exist at that site (it was sent), it
    is left on ``schedule`` for a worker that serves the site, after the retry cap: a worker
    whose sites file lacks it, during a rolling change. The submit deadline and the job
    timeout still end it. Not sent, and no worker serves the site: it fails, nothing is sent
    (``pallycon-pack retry`` takes it up again once the site is served)."""
    if record.state == State.ACCEPTED and not elsewhere:
        return failed(
            record, FailStage.VALIDATION, FailureCode.UNKNOWN_SITE, f"site_id: {message}", now
        )
    later = Change(record, Fields(updated_at=now), schedule=schedule, at=now + policy.retry.cap)
    note = f"not served by this worker ({message}); left to a worker that serves its site"
    return Outcome(later, note, {"site_id": record.site_id}, level="warning")
