"""The poll step's decisions, pure: record + the job as listed + now + policy -> the change.

:mod:`pallycon_worker.poll` reads the job list and commits what these decide. Each is a table test
(tests/unit/test_step_rules.py; the step itself in tests/integration/test_steps.py).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pallycon.codes import Stage, packaging_error
from pallycon.errors import CallError
from pallycon.models import JobInfo
from pallycon_store.events import EventType, FailStage, State, event
from pallycon_store.failures import FailureCode
from pallycon_store.record import Fields, Record
from pallycon_store.records import Change
from pallycon_worker.decisions import Decision, after_lookup_error, next_poll_at
from pallycon_worker.outcome import Outcome, StepPolicy, dead_lettered, failed


def sort_out(
    counted: Sequence[tuple[Record, int]], now: float, policy: StepPolicy
) -> tuple[list[Record], list[Outcome]]:
    """The requests to poll, and the ends of those delivered too often (dead letters)."""
    kept, dead = [], []
    for record, deliveries in counted:
        if deliveries > policy.max_deliveries:
            dead.append(dead_lettered(record, "polled", policy.max_deliveries, now))
        else:
            kept.append(record)
    return kept, dead


def after_poll(record: Record, job: JobInfo | None, now: float, policy: StepPolicy) -> Outcome:
    """What one poll found (``None``: the job is not in the list): the request's end, a
    progress event, or just its next poll."""
    age = now - max(record.submitted_at, record.retried_at)  # a resumed job gets its time again
    if (job is None or not job.status_info.terminal) and age > policy.job_timeout:
        last = record.status or "never seen in the job list"
        message = f"not finished within {policy.job_timeout:g} s (last status: {last})"
        return failed(record, FailStage.TIMEOUT, FailureCode.TIMEOUT, message, now)
    if job is None:
        due = next_poll_at(now, None, policy.polling)
        return Outcome(Change(record, Fields(deliveries=0, last_seen="missing"), None, "poll", due))
    status = job.status_info
    if status.terminal:
        return finished(record, job, now)
    due = next_poll_at(now, status, policy.polling)
    fields = Fields(deliveries=0, poll_failures=0)
    if job.status == record.status:
        return Outcome(Change(record, fields, schedule="poll", at=due))
    fields |= Fields(status=job.status, status_meaning=status.meaning, updated_at=now)
    change = event(
        EventType.PROGRESS,
        record.request_id,
        now,
        job_id=job.job_id,
        status=job.status,
        meaning=status.meaning,
        stage=status.stage.value,
    )
    logged = {"job_id": job.job_id, "status": job.status}
    return Outcome(Change(record, fields, change, schedule="poll", at=due), "progress", logged)


def finished(record: Record, job: JobInfo, now: float) -> Outcome:
    """The job has ended: the request completes, ends stopped (stopped at PallyCon: WM200), or
    fails with the job's error."""
    status = job.status_info
    if status.stage is Stage.STOPPED:
        return stopped(record, job, now)
    if not status.success:
        code = job.error_code or job.status
        meaning = packaging_error(code).meaning if job.error_code else status.meaning
        message = job.error_message or meaning
        return failed(record, FailStage.PACKAGING, code, message, now, status=job.status)
    body = record.parsed_body()
    output = body["storage"]["output"]["path"]
    prefix = f"{output.rstrip('/')}/{body['content_id']}/"
    fields = Fields(
        state=State.COMPLETED,
        status=job.status,
        output_path=output,
        status_meaning=status.meaning,
        updated_at=now,
        finished_at=now,
    )
    change = event(
        EventType.COMPLETED,
        record.request_id,
        now,
        job_id=job.job_id,
        content_id=body["content_id"],
        output_path=output,
        output_prefix=prefix,
        status=job.status,
    )
    return Outcome(Change(record, fields, change, finish=True), "completed", {"job_id": job.job_id})


def stopped(record: Record, job: JobInfo, now: float) -> Outcome:
    """The job was stopped at PallyCon (its Console: WM100 then WM200): the request ends
    ``stopped``, neither failed nor stuck."""
    message = f"job {job.job_id} was stopped at PallyCon ({job.status}: {job.status_info.meaning})"
    fields = Fields(
        state=State.STOPPED,
        status=job.status,
        status_meaning=job.status_info.meaning,
        error_message=message,
        updated_at=now,
        finished_at=now,
    )
    change = event(EventType.STOPPED, record.request_id, now, job_id=job.job_id, status=job.status)
    logged = {"job_id": job.job_id, "status": job.status}
    return Outcome(Change(record, fields, change, finish=True), "stopped", logged)


def after_poll_failed(
    records: Sequence[Record], error: CallError, now: float, policy: StepPolicy, rng: random.Random
) -> tuple[Decision, float, list[Outcome]]:
    """A lookup failed: these requests are polled again after a backoff (at least
    ``retry.base``). The decision, when they are due, and their changes."""
    attempt = max(record.poll_failures for record in records) + 1
    decision = after_lookup_error(error, attempt, policy.retry, rng, now=now)
    due = now + max(decision.delay, policy.retry.base)
    fields = Fields(deliveries=0, poll_failures=attempt)
    changes = [Outcome(Change(record, fields, schedule="poll", at=due)) for record in records]
    return decision, due, changes
