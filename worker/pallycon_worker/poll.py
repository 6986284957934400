"""Polling remote jobs, coalesced: one paged job-list pass covers many in-flight jobs.

For a batch of due requests the job list is read newest first from just before the oldest
job's registration; a job it does not return is looked up by id, and paging stops as soon as
one lookup per missing job would be cheaper than the remaining pages. Each request whose
status changed gets one transition: a progress event, or its final event. The next poll is
due by the job's stage, aligned to a grid so that polls of many jobs fall due together.

This module reads, calls and commits; the decisions are :mod:`pallycon_worker.poll_rules`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from pallycon.errors import CallError, ResponseTooLarge
from pallycon.models import JobInfo, JobListRequest
from pallycon.signing import format_timestamp
from pallycon_store.connect import REDIS_AWAY
from pallycon_store.counters import Metric
from pallycon_store.events import State
from pallycon_store.record import Record
from pallycon_worker import poll_rules as rules
from pallycon_worker.decisions import pages_to_fetch
from pallycon_worker.outcome import Triage, triage
from pallycon_worker.runtime import Runtime, SiteRuntime

log = logging.getLogger("pallycon_pack.poll")

#: Up to this many jobs, look each up by id instead of reading list pages.
DIRECT_LOOKUPS = 2
#: Pages smaller than this are not worth reading: the jobs are looked up one by one instead.
MIN_PAGE_UNIT = 4


def poll(rt: Runtime, request_ids: list[str], isolate: Callable[[str], None]) -> None:
    """Poll the remote jobs of these requests and record what changed.

    A request that was delivered in a batch before without the batch finishing (its worker
    died) is handed to ``isolate`` to be polled alone, so that one poison job cannot take its
    batch down with it again; past ``max_deliveries`` it is dead-lettered. Cut short by
    Redis going away, the polls are made due again as soon as it answers (not after the
    claim's lease).
    """
    try:
        _poll(rt, request_ids, isolate)
    except REDIS_AWAY:
        rt.unsettled.keep_polls(request_ids)
        raise


def _poll(rt: Runtime, request_ids: list[str], isolate: Callable[[str], None]) -> None:
    tracked = _tracked(rt, request_ids, isolate, alone=len(request_ids) == 1)
    by_site: dict[str, list[Record]] = {}
    for record in tracked:  # job ids are per site: one coalesced pass per site
        by_site.setdefault(rt.book.stored(record.site_id), []).append(record)
    for site_id, records in by_site.items():
        _poll_site(rt, rt.sites[site_id], records)


def _poll_site(rt: Runtime, site: SiteRuntime, records: list[Record]) -> None:
    """Poll the jobs of one site's requests and record what changed."""
    try:
        found, errors = _lookup(site, rt, records)
    except CallError as error:
        _retry(rt, records, error)
        return
    now, policy = rt.clock(), rt.policy
    looked_up = [record for record in records if record.job_id not in errors]
    rt.commit(
        [rules.after_poll(record, found.get(record.job_id), now, policy) for record in looked_up]
    )
    for record in records:
        if record.job_id in errors:
            _retry(rt, [record], errors[record.job_id])


def _tracked(
    rt: Runtime, request_ids: list[str], isolate: Callable[[str], None], *, alone: bool
) -> list[Record]:
    records = rt.shared.records.get_many(request_ids, rt.server_clock)
    run = []
    for request_id in dict.fromkeys(request_ids):  # each once, in order
        decided = triage(records.get(request_id), (State.SUBMITTED,), alone=alone)
        if decided is Triage.ISOLATE:
            isolate(request_id)
        elif decided is Triage.RUN:
            run.append(records[request_id])
    run = rt.served(run, "poll")
    counts = rt.shared.records.count_deliveries([record.request_id for record in run])
    kept, dead = rules.sort_out(list(zip(run, counts, strict=True)), rt.clock(), rt.policy)
    rt.commit(dead)
    return kept


def _lookup(
    site: SiteRuntime, rt: Runtime, records: list[Record]
) -> tuple[dict[str, JobInfo], dict[str, CallError]]:
    """The jobs found (by id), and the lookups that failed (by job id).

    Many jobs are read from list pages, the rest looked up one by one; a failed page fails the
    whole round (raises), a failed lookup only its job.
    """
    wanted = {record.job_id for record in records}
    found: dict[str, JobInfo] = {}
    errors: dict[str, CallError] = {}
    if rt.settings.poll_coalesce and len(wanted) > DIRECT_LOOKUPS:
        _read_pages(site, rt, records, wanted, found)
    for job_id in sorted(wanted - found.keys()):
        query = JobListRequest(
            region=site.region, search_keyword=job_id, search_keyword_type="jobId"
        )
        rt.shared.counters.add(Metric.POLL_LOOKUPS)
        try:
            jobs = site.api.list_jobs(query).data
        except CallError as error:
            errors[job_id] = error
            continue
        found.update({job.job_id: job for job in jobs if job.job_id == job_id})
    return found, errors


def _read_pages(
    site: SiteRuntime,
    rt: Runtime,
    records: list[Record],
    wanted: set[str],
    found: dict[str, JobInfo],
) -> None:
    """Read job-list pages until every wanted job is found, or lookups are cheaper.

    A page larger than ``max_response_bytes`` halves the page size, which this process keeps
    for :data:`pallycon_worker.runtime.PAGE_UNIT_MEMORY`; below :data:`MIN_PAGE_UNIT` the jobs are
    looked up one by one instead, so that no job is ever left unpolled because of the page size.
    """
    oldest = min(record.submitted_at for record in records)
    since = format_timestamp(datetime.fromtimestamp(oldest - rt.settings.poll_window_margin, UTC))
    while (unit := rt.page_unit()) >= MIN_PAGE_UNIT:
        try:
            _read_pages_of(site, rt, unit, since, wanted, found)
            return
        except ResponseTooLarge as error:
            smaller = unit // 2
            rt.shrink_page_unit(smaller)
            rt.shared.counters.add(Metric.POLL_PAGES_TOO_LARGE)
            log.warning(
                "a job-list page of %d jobs was too large (%s); pages of %d from now on",
                unit,
                error,
                smaller,
            )


def _read_pages_of(
    site: SiteRuntime,
    rt: Runtime,
    unit: int,
    since: str,
    wanted: set[str],
    found: dict[str, JobInfo],
) -> None:
    page, fetched, more = 1, 0, 1
    while more:
        query = JobListRequest.model_validate(
            {"region": site.region, "from": since, "page_unit": unit, "page_index": page}
        )
        response = site.api.list_jobs(query, only=wanted)
        rt.shared.counters.add(Metric.POLL_PAGES)
        fetched += 1
        found.update({job.job_id: job for job in response.data})
        missing = len(wanted - found.keys())
        more = pages_to_fetch(response.total_count, unit, fetched, missing) if missing else 0
        page += 1


def _retry(rt: Runtime, records: list[Record], error: CallError) -> None:
    """A lookup failed: these requests are polled again after a backoff."""
    now = rt.clock()
    decision, due, outcomes = rules.after_poll_failed(records, error, now, rt.policy, rt.rng)
    rt.shared.counters.add(Metric.POLL_RETRIES)
    log.warning(
        "job lookup failed (%s); %d polls retried in %.1fs",
        decision.message,
        len(records),
        due - now,
    )
    rt.commit(outcomes)
