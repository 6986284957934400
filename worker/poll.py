"""Polling remote jobs, coalesced: one paged job-list pass covers many in-flight jobs.

For a batch of due requests the job list is read newest first from just before the oldest
job's registration; a job it does not return is looked up by id, and paging stops as soon as
one lookup per missing job would be cheaper than the remaining pages. Each request whose
status changed gets one transition: a progress event, or its final event. The next poll is
due by the job's stage, aligned to a grid so that polls of many jobs fall due together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from pallycon.codes import packaging_error
from pallycon.errors import CallError, ResponseTooLarge
from pallycon.models import JobInfo, JobListRequest
from pallycon.signing import format_timestamp
from worker.decisions import after_lookup_error, next_poll_at, pages_to_fetch
from worker.events import EventType, FailStage, State, event
from worker.runtime import Runtime
from worker.store import Change, Record
from worker.transitions import Outcome, commit, failed

log = logging.getLogger("pallycon_pack.poll")

#: Up to this many jobs, look each up by id instead of reading list pages.
DIRECT_LOOKUPS = 2
#: Pages smaller than this are not worth reading: the jobs are looked up one by one instead.
MIN_PAGE_UNIT = 4


def poll(rt: Runtime, request_ids: list[str], isolate: Callable[[str], None]) -> None:
    """Poll the remote jobs of these requests and record what changed.

    A request that was delivered in a batch before without the batch finishing (its worker
    died) is handed to ``isolate`` to be polled alone, so that one poison job cannot take its
    batch down with it again; past ``max_deliveries`` it is dead-lettered.
    """
    records = _tracked(rt, request_ids, isolate, alone=len(request_ids) == 1)
    if not records:
        return
    try:
        found, errors = _lookup(rt, records)
    except CallError as error:
        _retry(rt, records, error)
        return
    looked_up = [record for record in records if record.get("job_id") not in errors]
    commit(rt, [_outcome(rt, record, found.get(record.get("job_id"))) for record in looked_up])
    for record in records:
        if record.get("job_id") in errors:
            _retry(rt, [record], errors[record.get("job_id")])


def _tracked(
    rt: Runtime, request_ids: list[str], isolate: Callable[[str], None], *, alone: bool
) -> list[Record]:
    records = [r for r in rt.store.get_many(request_ids).values() if r.state == State.SUBMITTED]
    counts = rt.store.bump_many([record.request_id for record in records], "deliveries")
    kept, dead = [], []
    for record, deliveries in zip(records, counts, strict=True):
        if deliveries > rt.settings.max_deliveries:
            limit = rt.settings.max_deliveries
            message = f"polled more than {limit} times without finishing"
            dead.append(failed(rt, record, FailStage.DEAD_LETTER, "dead_letter", message))
        elif deliveries > 1 and not alone:
            isolate(record.request_id)
        else:
            kept.append(record)
    commit(rt, dead)
    return kept


def _lookup(rt: Runtime, records: list[Record]) -> tuple[dict[str, JobInfo], dict[str, CallError]]:
    """The jobs found (by id), and the lookups that failed (by job id).

    Many jobs are read from list pages, the rest looked up one by one; a failed page fails the
    whole round (raises), a failed lookup only its job.
    """
    wanted = {record.get("job_id") for record in records}
    found: dict[str, JobInfo] = {}
    errors: dict[str, CallError] = {}
    if rt.settings.poll_coalesce and len(wanted) > DIRECT_LOOKUPS:
        _read_pages(rt, records, wanted, found)
    for job_id in sorted(wanted - found.keys()):
        query = JobListRequest(region=rt.region, search_keyword=job_id, search_keyword_type="jobId")
        rt.store.count("poll lookups")
        try:
            jobs = rt.api.list_jobs(query).data
        except CallError as error:
            errors[job_id] = error
            continue
        found.update({job.job_id: job for job in jobs if job.job_id == job_id})
    return found, errors


def _read_pages(
    rt: Runtime, records: list[Record], wanted: set[str], found: dict[str, JobInfo]
) -> None:
    """Read job-list pages until every wanted job is found, or lookups are cheaper.

    A page larger than ``max_response_bytes`` halves the page size, which this process keeps
    for :data:`worker.runtime.PAGE_UNIT_MEMORY`; below :data:`MIN_PAGE_UNIT` the jobs are looked
    up one by one instead, so that no job is ever left unpolled because of the page size.
    """
    oldest = min(record.number("submitted_at") for record in records)
    since = format_timestamp(datetime.fromtimestamp(oldest - rt.settings.poll_window_margin, UTC))
    while (unit := rt.page_unit()) >= MIN_PAGE_UNIT:
        try:
            _read_pages_of(rt, unit, since, wanted, found)
            return
        except ResponseTooLarge as error:
            smaller = unit // 2
            rt.shrink_page_unit(smaller)
            rt.store.count("poll pages too large")
            log.warning(
                "a job-list page of %d jobs was too large (%s); pages of %d from now on",
                unit,
                error,
                smaller,
            )


def _read_pages_of(
    rt: Runtime, unit: int, since: str, wanted: set[str], found: dict[str, JobInfo]
) -> None:
    page, fetched, more = 1, 0, 1
    while more:
        query = JobListRequest.model_validate(
            {"region": rt.region, "from": since, "page_unit": unit, "page_index": page}
        )
        response = rt.api.list_jobs(query, only=wanted)
        rt.store.count("poll pages")
        fetched += 1
        found.update({job.job_id: job for job in response.data})
        missing = len(wanted - found.keys())
        more = pages_to_fetch(response.total_count, unit, fetched, missing) if missing else 0
        page += 1


def _outcome(rt: Runtime, record: Record, job: JobInfo | None) -> Outcome:
    """What one poll found: the request's end, a progress event, or just its next poll."""
    now = rt.clock()
    age = now - record.number("submitted_at")
    if (job is None or not job.status_info.terminal) and age > rt.settings.job_timeout:
        last = record.get("status") or "never seen in the job list"
        message = f"not finished within {rt.settings.job_timeout:g} s (last status: {last})"
        return failed(rt, record, FailStage.TIMEOUT, "timeout", message)
    if job is None:
        due = next_poll_at(now, None, rt.polling)
        fields = {"deliveries": "0", "last_seen": "missing"}
        return Outcome(Change(record, fields, schedule="poll", at=due))
    status = job.status_info
    if status.terminal:
        return _finished(rt, record, job)
    due = next_poll_at(now, status, rt.polling)
    fields = {"deliveries": "0", "poll_failures": "0"}
    if job.status == record.get("status"):
        return Outcome(Change(record, fields, schedule="poll", at=due))
    fields |= {"status": job.status, "status_meaning": status.meaning, "updated_at": repr(now)}
    change = event(
        EventType.PROGRESS,
        record.request_id,
        record.version + 1,
        now,
        job_id=job.job_id,
        status=job.status,
        meaning=status.meaning,
        stage=status.stage.value,
    )
    logged = {"job_id": job.job_id, "status": job.status}
    return Outcome(Change(record, fields, change, schedule="poll", at=due), log, "progress", logged)


def _finished(rt: Runtime, record: Record, job: JobInfo) -> Outcome:
    status = job.status_info
    if not status.success:
        code = job.error_code or job.status
        meaning = packaging_error(code).meaning if job.error_code else status.meaning
        message = job.error_message or meaning
        return failed(rt, record, FailStage.PACKAGING, code, message, status=job.status)
    now = rt.clock()
    body = record.body
    output = body["storage"]["output"]["path"]
    prefix = f"{output.rstrip('/')}/{body['content_id']}/"
    fields = {
        "state": State.COMPLETED.value,
        "status": job.status,
        "output_path": output,
        "status_meaning": status.meaning,
        "updated_at": repr(now),
        "finished_at": repr(now),
    }
    change = event(
        EventType.COMPLETED,
        record.request_id,
        record.version + 1,
        now,
        job_id=job.job_id,
        content_id=body["content_id"],
        output_path=output,
        output_prefix=prefix,
        status=job.status,
    )
    logged = {"job_id": job.job_id}
    return Outcome(Change(record, fields, change, finish=True), log, "completed", logged)


def _retry(rt: Runtime, records: list[Record], error: CallError) -> None:
    """A lookup failed: these requests are polled again after a backoff."""
    attempt = max(int(r.number("poll_failures")) for r in records) + 1
    decision = after_lookup_error(error, attempt, rt.retry, rt.rng, now=rt.clock())
    due = rt.clock() + max(decision.delay, rt.settings.retry_base)
    rt.store.count("poll retries")
    log.warning(
        "job lookup failed (%s); %d polls retried in %.1fs",
        decision.message,
        len(records),
        due - rt.clock(),
    )
    fields = {"deliveries": "0", "poll_failures": str(attempt)}
    commit(rt, [Outcome(Change(r, fields, schedule="poll", at=due)) for r in records])
