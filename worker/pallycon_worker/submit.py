"""Submitting a request: exactly one remote job per request. Reads, calls and commits; the
decisions are :mod:`pallycon_worker.submit_rules`.

State is written before the POST (``submitting``) and after it (``submitted`` with the job id).
A redelivered or retried task that finds ``submitting`` never POSTs blind: it looks the job up
by its unique remote name first, and registers again only when the job is still absent after
the grace period. Errors that provably happened before anything was created (connect errors,
429, retryable API codes) are retried with backoff; permanent ones end the request at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import wait

import httpx

from pallycon.errors import CallError
from pallycon.models import JobListRequest, JobRegisterRequest
from pallycon_store.connect import REDIS_AWAY
from pallycon_store.counters import Metric
from pallycon_store.events import State
from pallycon_store.record import Record
from pallycon_store.records import Applied
from pallycon_worker import submit_rules as rules
from pallycon_worker.outcome import Outcome, Triage, triage
from pallycon_worker.ratelimit import PREPAID
from pallycon_worker.runtime import Runtime

log = logging.getLogger("pallycon_pack.submit")

#: The states a submit task moves forward.
HANDLED = (State.ACCEPTED, State.SUBMITTING)
#: A mark refused by its site's flow control (paused, at its cap): the request waits its turn.
GATED = (Applied.PAUSED, Applied.FULL)


def submit_batch(rt: Runtime, request_ids: list[str], isolate: Callable[[str], None]) -> None:
    """Move each request of a batch forward: register its job, or reconcile an unknown outcome.

    The batch shares its Redis round trips: one read and one delivery count for all, one
    ``submitting`` mark and one fsync for all before their POSTs (``submit_concurrency`` at a
    time), and one commit per group of outcomes after. A request whose
    earlier delivery never finished is handed to ``isolate`` to be tried alone.
    """
    alone = len(request_ids) == 1
    rt.unsettled.settle()  # what this process could not write before, first
    records = rt.shared.records.get_many(request_ids, rt.server_clock)
    run = []
    for request_id in dict.fromkeys(request_ids):  # each once, in order
        decided = triage(records.get(request_id), HANDLED, alone=alone)
        if decided is Triage.ISOLATE:
            isolate(request_id)
        elif decided is Triage.RUN:
            run.append(records[request_id])
    run = rt.served(run, "submit")
    counts = rt.shared.records.count_deliveries([record.request_id for record in run])
    plan = rules.plan(list(zip(run, counts, strict=True)), rt.clock(), rt.policy)
    # Off the dispatched count: those to register once marked (then they count in flight, so
    # the sweeper woken cannot send more than a cap allows), the others now
    registering = {record.request_id for record in plan.register}
    _started(rt, [r for r in records.values() if r.request_id not in registering])
    rt.commit(plan.ended)
    # The server the records were read from (a fresh read: a restarted Redis has another)
    server_run = rt.shared.durability.identity() if plan.reconcile else ""
    for record, final in plan.reconcile:
        reconcile(rt, record, final=final, run=server_run)
    register(rt, plan.register)


def register(rt: Runtime, records: list[Record]) -> None:
    """POST each request's job, with ``submitting`` recorded (and fsynced) before its POST.

    The whole batch is marked in one round trip and made durable with one wait (with
    ``appendfsync everysec`` a wait lasts until the next fsync, up to a second: one per batch,
    not one per group of POSTs). The POSTs then go out ``submit_concurrency`` at a time: a
    group's tokens are taken, its ``sent_at`` written (version-checked, one round trip), its
    POSTs sent, its outcomes committed before the next group. A mark's schedule entry is due
    again after the reconcile grace and the read timeout (a sweeper then looks the job up);
    the entries of the requests still waiting for their turn are pushed on before that, so
    that a slow batch (rate-limit waits, slow answers) is not looked up while it is sent.

    Interrupted (the soft time limit, a POST that raised, Redis away), the requests not sent
    are taken back, and outcomes not written are kept: written as soon as Redis answers
    (:class:`pallycon_worker.runtime.Unsettled`). Should the process die, what it marked is
    told apart by ``sent_at``: what never left is registered again at the lookup, what may
    have left waits for the client's timeouts (:func:`pallycon_worker.submit_rules.settled_at`):
    never sent twice, only later.
    """
    try:
        marked = _mark(rt, records)
    finally:
        _started(rt, records)  # the sweeper may dispatch more of these sites
    before = {record.request_id: record for record in records}
    size = rt.settings.submit_concurrency
    safety = rt.policy.reconcile_grace + rt.policy.read_timeout
    pushed = rt.clock()
    unsent = list(marked)
    try:
        while unsent:
            if rt.clock() - pushed > safety / 2:
                pushed = rt.clock()
                rt.shared.schedules.defer_submits(unsent, pushed + safety)
            group = unsent[:size]
            leaving = _leave(rt, group)  # tokens taken, sent_at written: about to leave
            unsent = unsent[len(group) :]
            posts = [rt.senders().submit(_post, rt, record) for record in leaving]
            try:
                wait(posts)
            finally:  # even if the task was interrupted: what is done is recorded
                done = [
                    p for p in posts if p.done() and not p.cancelled() and p.exception() is None
                ]
                if not all(p.done() for p in posts):  # interrupted: POSTs still running
                    rt.drop_senders()  # later ones must not queue behind them, past sent_at
                rt.commit_or_keep([post.result() for post in done])
            for post in posts:
                post.result()  # a POST that raised (not a CallError) fails the task
    except NotSent as exc:
        log.warning("registrations stopped (%s); the rest of the batch is taken back", exc)
    finally:
        if unsent:  # nothing was sent for these: registered again soon, not looked up late
            _take_back(rt, [(before[r.request_id], r) for r in unsent], patience=0)


def _started(rt: Runtime, records: Iterable[Record]) -> None:
    """These requests' tasks have started (and those to register are marked): off their
    sites' dispatched counts, and a sweeper woken. Best effort: should Redis be away, they
    stop counting by themselves after ``pallycon_store.flow.DISPATCH_EXPIRY``."""
    by_site: dict[str, list[str]] = {}
    for record in records:
        by_site.setdefault(record.site_id, []).append(record.request_id)
    if by_site:
        with contextlib.suppress(*REDIS_AWAY):
            rt.shared.flow.started(by_site)


def _leave(rt: Runtime, group: list[Record]) -> list[Record]:
    """Take each request's API token, then write that its registration is about to leave
    (``sent_at``, version-checked, one round trip): the records as written, those moved on
    meanwhile (taken back by a reconciler that found them never sent, cancelled) left out.
    Should no token come in time or Redis be away, nothing of the group is sent (raised)."""
    for record in group:
        limiter = rt.site(record.site_id).limiter
        if limiter is not None:
            try:
                limiter.acquire("POST", "pack")
            except httpx.TransportError as exc:  # no token in time, or Redis away: not sent
                raise NotSent(str(exc)) from exc
    now = rt.clock()
    written = rt.shared.records.leaving(group, now)
    return [
        dataclasses.replace(record, sent_at=now)
        for record, ok in zip(group, written, strict=True)
        if ok
    ]


class NotSent(Exception):
    """A group of registrations could not be sent (no API token in time, or Redis away for
    it): the batch stops, and what it marked and did not send is taken back."""


def _mark(rt: Runtime, records: list[Record]) -> list[Record]:
    """Mark ``records`` ``submitting`` and wait until the marks are durable: the records as
    marked (those another worker had moved on or cancelled are left out; those of a site
    paused or at its cap go back to their lane, in their place). Should Redis not confirm the
    marks, they are taken back (nothing was sent) and the error raised."""
    if not records:
        return []
    now, policy = rt.clock(), rt.policy
    server = rt.shared.durability.server()
    run = rt.shared.durability.known_identity()
    marks = [
        rules.submitting(record, now, policy, cap=rt.site(record.site_id).max_in_flight, run=run)
        for record in records
    ]
    applied = rt.shared.records.apply_each(marks)
    held = [m.record for m, a in zip(marks, applied, strict=True) if a in GATED]
    if held:
        rt.shared.schedules.requeue_submits(held)
        log.info(
            "%d request(s) back in their lane: their site is paused or at its cap",
            len(held),
            extra={"fields": {"request_ids": [r.request_id for r in held][:10]}},
        )
    kept = [m for m, a in zip(marks, applied, strict=True) if a is Applied.DONE]
    marked = [m.record.moved(m.fields) for m in kept]
    if not marked:
        return []
    try:
        rt.shared.durability.wait(server, present=lambda: _marked(rt, marked))
    except REDIS_AWAY:
        # Nothing was sent: take the marks back, so that these requests are registered again
        # soon rather than looked up after the hard time limit.
        _take_back(rt, [(m.record, after) for m, after in zip(kept, marked, strict=True)])
        raise
    return marked


def _marked(rt: Runtime, marked: list[Record]) -> bool:
    """Whether the server now answering holds every one of these marks (as marked)."""
    found = rt.shared.records.get_many([record.request_id for record in marked])
    return all(
        (now := found.get(record.request_id)) is not None
        and now.version == record.version
        and now.submitting_at == record.submitting_at
        for record in marked
    )


#: How long a submit waits for Redis to come back to take back marks it could not confirm:
#: a restart or a Sentinel failover takes a few seconds. Past it the marks stay, and the
#: requests are looked up after the hard time limit (the worst case, never a duplicate).
TAKE_BACK_PATIENCE = 15.0


def _take_back(
    rt: Runtime, marks: list[tuple[Record, Record]], patience: float = TAKE_BACK_PATIENCE
) -> None:
    """Undo ``submitting`` marks that were not sent (``(before, marked)`` records), retrying
    while Redis is away for up to ``patience`` seconds, then keeping them to write once it is
    back (:attr:`Runtime.unsettled`). A mark that Redis lost is not undone: the change is
    version-checked, so it applies only to the mark as it was written."""
    deadline, pause = time.monotonic() + patience, 0.25
    while True:
        now = rt.clock()
        changes = [rules.unmarked(before, after, now, rt.policy) for before, after in marks]
        try:
            rt.shared.records.apply(changes)
            return
        except REDIS_AWAY:
            if time.monotonic() + pause > deadline:
                rt.unsettled.keep([Outcome(change) for change in changes])
                raise
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _post(rt: Runtime, record: Record) -> Outcome:
    """Register the job of a request marked ``submitting`` whose token is taken: the outcome
    to commit."""
    site = rt.site(record.site_id)
    prepaid = PREPAID.set(site.limiter is not None)
    try:
        request = JobRegisterRequest.model_validate(
            record.parsed_body() | {"job_name": record.job_name}
        )
        job_id = site.api.register_job(request).job_id or ""
    except CallError as error:
        return rules.after_post_error(record, error, rt.clock(), rt.policy, rt.rng)
    except Exception as exc:  # a defect, or a record this code cannot read: not the API's doing
        log.exception("registering request %s failed", record.request_id)
        return rules.broken(record, exc, rt.clock(), rt.policy)
    finally:
        PREPAID.reset(prepaid)
    return rules.registered(record, job_id, rt.clock(), rt.policy)


def reconcile(rt: Runtime, record: Record, *, final: bool = False, run: str = "") -> None:
    """The registration's outcome is unknown: find the job, or register again after grace."""
    name, site = record.job_name, rt.site(record.site_id)
    query = JobListRequest(region=site.region, search_keyword=name, search_keyword_type="jobName")
    rt.shared.counters.add(Metric.RECONCILIATIONS)
    try:
        found = sorted(
            (job for job in site.api.iter_jobs(query) if job.job_name == name),
            key=lambda job: int(job.job_id) if job.job_id.isdigit() else 0,
        )
    except CallError as error:
        outcome = rules.after_lookup_failed(
            record, error, rt.clock(), rt.policy, rt.rng, final=final
        )
        rt.commit([outcome])
        return
    if len(found) > 1:
        log.error("request %s has %d remote jobs named %s", record.request_id, len(found), name)
    result = rules.after_lookup(record, found, rt.clock(), rt.policy, final=final, run=run)
    if rt.commit([result.outcome])[0] and result.register:
        register(rt, [record.moved(result.outcome.change.fields)])


def submitted(rt: Runtime, record: Record, job_id: str) -> None:
    """Record that the request's job was registered as ``job_id``."""
    rt.commit([rules.registered(record, job_id, rt.clock(), rt.policy)])
