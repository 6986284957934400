"""Submitting a request: exactly one remote job per request.

State is written before the POST (``submitting``) and after it (``submitted`` with the job id).
A redelivered or retried task that finds ``submitting`` never POSTs blind: it looks the job up
by its unique remote name first, and registers again only when the job is still absent after
the grace period. Errors that provably happened before anything was created (connect errors,
429, retryable API codes) are retried with backoff; permanent ones end the request at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import wait

from pallycon.codes import INVALID_TIMESTAMP
from pallycon.errors import CallError
from pallycon.models import JobListRequest, JobRegisterRequest
from worker.decisions import (
    Action,
    Decision,
    after_lookup_error,
    after_register_error,
    known_api_code,
)
from worker.events import EventType, FailStage, State, event
from worker.logs import log_change
from worker.runtime import Runtime
from worker.store import Change, Record
from worker.transitions import Outcome, commit, fail, failed, moved

log = logging.getLogger("pallycon_pack.submit")


def submit_batch(rt: Runtime, request_ids: list[str], isolate: Callable[[str], None]) -> None:
    """Move each request of a batch forward: register its job, or reconcile an unknown outcome.

    The batch shares its Redis round trips: one read and one delivery count for all; then, for
    each group of ``submit_concurrency`` requests, one ``submitting`` mark and one fsync before
    their POSTs (sent at once) and one commit of their outcomes after. A request whose
    earlier delivery never finished (its worker died) is handed to ``isolate`` to be tried
    alone, so that one poison request cannot take its batch down again.
    """
    alone = len(request_ids) == 1
    records = rt.store.get_many(request_ids)
    live = []
    for request_id in request_ids:
        record = records.get(request_id)
        if record is None or record.state not in (State.ACCEPTED, State.SUBMITTING):
            continue  # unknown, already submitted or finished: a late or duplicate delivery
        if not alone and record.get("deliveries", "0") != "0":
            isolate(request_id)
            continue
        live.append(record)
    counts = rt.store.bump_many([record.request_id for record in live], "deliveries")
    fresh, ended = [], []
    for record, deliveries in zip(live, counts, strict=True):
        past_deadline = rt.clock() - record.number("created_at") > rt.settings.submit_deadline
        if deliveries > rt.settings.max_deliveries:
            ended.append(_dead_letter(rt, record))
        elif record.state == State.SUBMITTING:
            reconcile(rt, record, final=past_deadline)  # even at the deadline: the job may exist
        elif past_deadline:
            ended.append(_gave_up(rt, record))
        else:
            fresh.append(record)
    commit(rt, ended)
    register(rt, fresh)


def _dead_letter(rt: Runtime, record: Record) -> Outcome:
    message = f"delivered more than {rt.settings.max_deliveries} times without finishing"
    if record.state == State.SUBMITTING:
        message += f"; its job may exist as {record.get('job_name')}"
    return failed(rt, record, FailStage.DEAD_LETTER, "dead_letter", message)


def _gave_up(rt: Runtime, record: Record, note: str = "") -> Outcome:
    last = record.get("last_error") or "no attempt finished"
    message = f"not submitted within {rt.settings.submit_deadline:g} s; last error: {last}{note}"
    return failed(rt, record, FailStage.SUBMIT, record.get("last_code") or "deadline", message)


def register(rt: Runtime, records: list[Record]) -> None:
    """POST each request's job, with ``submitting`` recorded (and fsynced) before its POST.

    In groups of ``submit_concurrency``, sent at once: should this process die, at most one
    group is caught between its mark and its POSTs, and only that group has to wait out the
    hard time limit before being registered again.
    """
    size = rt.settings.submit_concurrency
    for start in range(0, len(records), size):
        _register_group(rt, records[start : start + size])


def _register_group(rt: Runtime, records: list[Record]) -> None:
    now = rt.clock()
    # Written before the POST. Should this process die mid-call, the schedule entry brings the
    # request back after the grace and the read timeout, and the lookup settles it.
    safety = now + rt.settings.reconcile_grace + rt.settings.read_timeout
    marks = [
        Change(record, _submitting_fields(record, now), schedule="submit", at=safety)
        for record in records
    ]
    marked = [
        moved(mark.record, mark.fields)
        for mark, done in zip(marks, rt.store.apply(marks), strict=True)
        if done
    ]
    if not marked:
        return
    rt.store.durable()  # never POST before "submitting" is on disk
    posts = [rt.senders().submit(_post, rt, record) for record in marked]
    try:
        wait(posts)
    finally:  # even if one raised or the task was interrupted: what is done is recorded
        done = [p for p in posts if p.done() and not p.cancelled() and p.exception() is None]
        commit(rt, [post.result() for post in done])
    for post in posts:
        post.result()  # a POST that raised (not a CallError) fails the task, as it would alone


def _submitting_fields(record: Record, now: float) -> dict[str, str]:
    return {
        "state": State.SUBMITTING.value,
        "attempts": str(int(record.number("attempts")) + 1),
        "submitting_at": repr(now),
        "updated_at": repr(now),
    }


def _post(rt: Runtime, record: Record) -> Outcome:
    """Register the job of a request marked ``submitting``: the outcome to commit."""
    try:
        request = JobRegisterRequest.model_validate(
            record.body | {"job_name": record.get("job_name")}
        )
        job_id = rt.api.register_job(request).job_id or ""
    except CallError as error:
        attempts = int(record.number("attempts"))
        decision = after_register_error(error, attempts, rt.retry, rt.rng, now=rt.clock())
        return _after_post_error(rt, record, decision)
    except Exception as exc:  # a defect, or a record this code cannot read: not the API's doing
        log.exception("registering request %s failed", record.request_id)
        return _broken(rt, record, exc)
    return _submitted(rt, record, job_id)


def _broken(rt: Runtime, record: Record, exc: Exception) -> Outcome:
    """The attempt ended in an unexpected error: reconcile after the grace, as for a lost
    answer, but without clearing the delivery count, so that a request that fails this way
    every time is dead-lettered after ``max_deliveries``."""
    now = rt.clock()
    message = f"{type(exc).__name__}: {exc}"[:500]
    fields = {
        "state": State.SUBMITTING.value,
        "last_error": message,
        "last_code": "error",
        "attempt_ended_at": repr(now),
        "updated_at": repr(now),
    }
    at = now + rt.settings.reconcile_grace
    return Outcome(Change(record, fields, schedule="submit", at=at))


def reconcile(rt: Runtime, record: Record, *, final: bool = False) -> None:
    """The registration's outcome is unknown: find the job, or register again after grace.

    ``final`` (past the submit deadline): a job that is found is still tracked; one that is
    surely absent ends the request instead of being registered again.
    """
    name = record.get("job_name")
    query = JobListRequest(region=rt.region, search_keyword=name, search_keyword_type="jobName")
    rt.store.count("reconciliations")
    try:
        found = sorted(
            (j for j in rt.api.iter_jobs(query) if j.job_name == name),
            key=lambda j: int(j.job_id) if j.job_id.isdigit() else 0,
        )
    except CallError as error:
        attempts = int(record.number("lookup_failures")) + 1
        decision = after_lookup_error(error, attempts, rt.retry, rt.rng, now=rt.clock())
        if final:
            note = f"; its job may exist as {name}: lookups fail ({error})"
            commit(rt, [_gave_up(rt, record, note)])
            return
        if decision.action is Action.FAIL:
            fail(rt, record, FailStage.SUBMIT, decision.code, decision.message)
            return
        # Still unknown whether the job exists: stay "submitting", look again later.
        extra = {"lookup_failures": str(attempts)}
        retry = _retried(
            rt, record, State.SUBMITTING, decision, extra, counter="reconcile lookup retry"
        )
        commit(rt, [retry])
        return
    if found:
        if len(found) > 1:
            log.error("request %s has %d remote jobs named %s", record.request_id, len(found), name)
        commit(rt, [_submitted(rt, record, found[0].job_id)])
        return
    now = rt.clock()
    settled = settled_at(rt, record)
    if now < settled:
        # Too early to tell: look again then. This delivery was not a failure, so the count
        # goes back to what it was (not to 0: it counts the failures since the request last
        # moved on, so that an attempt that dies every time ends as dead_letter).
        before = {"deliveries": record.get("deliveries", "0")}
        rt.store.transition(record, before, schedule="submit", at=settled)
        return
    if final:
        commit(rt, [_gave_up(rt, record)])
        return
    last_code = record.get("last_code")
    if last_code.startswith(("A", "Z")) and not known_api_code(last_code):
        # The registration was answered with a code nobody knows, and no job came of it.
        fail(rt, record, FailStage.SUBMIT, last_code, record.get("last_error"))
        return
    log_change(log, record.request_id, "reconciled: absent, registering again")
    fields = {"state": State.ACCEPTED.value, "updated_at": repr(now)}
    if rt.store.transition(record, fields, schedule="submit", at=now):
        register(rt, [moved(record, fields)])


def settled_at(rt: Runtime, record: Record) -> float:
    """When a job still absent from the job list is surely not coming: safe to register again.

    If the last attempt recorded its own end, the job had ``reconcile_grace`` to show up in
    the list. If it did not (its worker died mid-call), the attempt may still be running until
    Celery's hard time limit kills it, so that long is added.
    """
    started, ended = record.number("submitting_at"), record.number("attempt_ended_at")
    grace = rt.settings.reconcile_grace
    if ended >= started:
        return ended + grace
    return started + rt.settings.task_time_limit + grace


def submitted(rt: Runtime, record: Record, job_id: str) -> None:
    """Record that the request's job was registered as ``job_id``."""
    commit(rt, [_submitted(rt, record, job_id)])


def _submitted(rt: Runtime, record: Record, job_id: str) -> Outcome:
    now = rt.clock()
    fields = {
        "state": State.SUBMITTED.value,
        "job_id": job_id,
        "submitted_at": repr(now),
        "updated_at": repr(now),
        "deliveries": "0",
        "last_error": "",
        "last_code": "",
        "lookup_failures": "0",
    }
    change = event(
        EventType.SUBMITTED,
        record.request_id,
        record.version + 1,
        now,
        job_id=job_id,
        job_name=record.get("job_name"),
        attempts=int(record.number("attempts")),
    )
    first_poll = now + rt.settings.poll_interval
    return Outcome(
        Change(record, fields, change, schedule="poll", at=first_poll, index_job=job_id),
        log,
        "submitted",
        {"job_id": job_id},
    )


def _after_post_error(rt: Runtime, record: Record, decision: Decision) -> Outcome:
    """The POST failed: fail, resend (nothing was created) or reconcile (it may have been)."""
    if decision.action is Action.FAIL:
        return failed(rt, record, FailStage.SUBMIT, decision.code, decision.message)
    state = State.ACCEPTED if decision.action is Action.RESEND else State.SUBMITTING
    extra = {"attempt_ended_at": repr(rt.clock())}
    return _retried(rt, record, state, decision, extra, counter=f"submit {decision.action.value}")


def _retried(
    rt: Runtime,
    record: Record,
    state: State,
    decision: Decision,
    extra: dict[str, str],
    *,
    counter: str,
) -> Outcome:
    """The request tried again (as ``state``) after the decision's delay."""
    now = rt.clock()
    fields = {
        "state": state.value,
        "last_error": decision.message,
        "last_code": decision.code,
        "updated_at": repr(now),
        "deliveries": "0",
        **extra,
    }
    rt.store.count(counter)
    if decision.code == INVALID_TIMESTAMP:
        log.warning("the API refused our timestamp: %s", decision.message)
    return Outcome(
        Change(record, fields, schedule="submit", at=now + decision.delay),
        log,
        f"{state.value}: retry in {decision.delay:.1f}s",
        {"code": decision.code, "error": decision.message},
    )
