"""The submit step's decisions, pure: record + what was observed + now + policy -> the change.

:mod:`pallycon_worker.submit` reads, calls the API and commits what these decide. Each is a table
test (tests/unit/test_step_rules.py; the step itself in tests/integration/test_steps.py).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from pallycon.codes import INVALID_TIMESTAMP
from pallycon.errors import ApiError, CallError
from pallycon.models import JobInfo
from pallycon_store.counters import Metric
from pallycon_store.events import EventType, FailStage, State, event
from pallycon_store.failures import FailureCode
from pallycon_store.record import Fields, Record
from pallycon_store.records import Change
from pallycon_worker.decisions import (
    Action,
    Decision,
    after_lookup_error,
    after_register_error,
    known_api_code,
)
from pallycon_worker.outcome import Outcome, StepPolicy, dead_lettered, failed

#: An unexpected error is recorded in ``last_error`` up to this many characters.
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class SubmitPlan:
    ended: list[Outcome] = field(default_factory=list)  # dead-lettered, or past the deadline
    reconcile: list[tuple[Record, bool]] = field(default_factory=list)  # (record, final)
    register: list[Record] = field(default_factory=list)


def plan(counted: Sequence[tuple[Record, int]], now: float, policy: StepPolicy) -> SubmitPlan:
    """What to do with each request run, given its delivery count (this one included)."""
    result = SubmitPlan()
    for record, deliveries in counted:
        # From its creation, or from when an operator re-drove it (store/redrive.py)
        past_deadline = now - max(record.created_at, record.retried_at) > policy.submit_deadline
        if deliveries > policy.max_deliveries:
            result.ended.append(dead_lettered(record, "delivered", policy.max_deliveries, now))
        elif record.state == State.SUBMITTING:
            # Even at the deadline: the job may exist, and is then still tracked.
            result.reconcile.append((record, past_deadline))
        elif past_deadline:
            result.ended.append(gave_up(record, now, policy))
        else:
            result.register.append(record)
    return result


def gave_up(record: Record, now: float, policy: StepPolicy, note: str = "") -> Outcome:
    last = record.last_error or "no attempt finished"
    message = f"not submitted within {policy.submit_deadline:g} s; last error: {last}{note}"
    return failed(record, FailStage.SUBMIT, record.last_code or FailureCode.DEADLINE, message, now)


def submitting(
    record: Record, now: float, policy: StepPolicy, *, cap: int = 0, run: str = ""
) -> Change:
    """The mark written (and fsynced) before a registration is sent, gated: not made while the
    request's site is paused or has ``cap`` requests in flight (0: no cap). ``run``: the identity
    of the Redis server it is written to ("": unknown).

    Should the sender die mid-call, the schedule entry brings the request back after the grace
    and the read timeout, and the lookup settles it (:func:`settled_at`).
    """
    fields = Fields(
        state=State.SUBMITTING,
        attempts=record.attempts + 1,
        submitting_at=now,
        mark_run=run,
        updated_at=now,
    )
    safety = now + policy.reconcile_grace + policy.read_timeout
    return Change(record, fields, schedule="submit", at=safety, gate=cap)


def unmarked(before: Record, marked: Record, now: float, policy: StepPolicy) -> Change:
    """The ``submitting`` mark taken back: Redis did not confirm it (replicas, fsync, or a
    failover in between) and nothing was sent, so there is nothing to look up. The request
    is as ``before`` again (its delivery not counted) and is registered after a short backoff,
    not after the hard time limit a mark left standing would cost. Should Redis go on failing,
    the submit deadline still ends it."""
    fields = Fields(
        state=before.state,
        attempts=before.attempts,
        submitting_at=before.submitting_at,
        mark_run=before.mark_run,
        deliveries=before.deliveries,  # Redis failed, not this request: not a poison count
        updated_at=now,
    )
    return Change(marked, fields, schedule="submit", at=now + policy.retry.base)


def registered(record: Record, job_id: str, now: float, policy: StepPolicy) -> Outcome:
    """The request's job exists as ``job_id``: track it."""
    fields = Fields(
        state=State.SUBMITTED,
        job_id=job_id,
        submitted_at=now,
        updated_at=now,
        deliveries=0,
        last_error="",
        last_code="",
        unknown_code="",
        unknown_message="",
        lookup_failures=0,
    )
    change = event(
        EventType.SUBMITTED,
        record.request_id,
        now,
        job_id=job_id,
        job_name=record.job_name,
        attempts=record.attempts,
    )
    first_poll = now + policy.polling.interval
    return Outcome(
        Change(record, fields, change, schedule="poll", at=first_poll, index_job=job_id),
        "submitted",
        {"job_id": job_id},
    )


def after_post_error(
    record: Record, error: CallError, now: float, policy: StepPolicy, rng: random.Random
) -> Outcome:
    """The registration failed: fail, resend (nothing was created) or reconcile (it may
    have been)."""
    decision = after_register_error(error, record.attempts, policy.retry, rng, now=now)
    if decision.action is Action.FAIL:
        ended = failed(record, FailStage.SUBMIT, decision.code, decision.message, now)
        # The attempt's end is known: a retry's lookup (store/redrive.py) waits the grace for
        # the job to show, not the hard time limit for a sender that might still be running.
        ended.change.fields["attempt_ended_at"] = now
        return ended
    state = State.ACCEPTED if decision.action is Action.RESEND else State.SUBMITTING
    metric = Metric.SUBMIT_RESENDS if state == State.ACCEPTED else Metric.SUBMIT_RECONCILES
    # An answer with a code nobody knows: if no job came of it, the request fails with that
    # code (instead of being registered again).
    unknown = isinstance(error, ApiError) and not known_api_code(error.code)
    extra = Fields(
        attempt_ended_at=now,
        unknown_code=decision.code if unknown else "",
        unknown_message=decision.message if unknown else "",
    )
    return retried(record, state, decision, extra, now, metric)


def broken(record: Record, error: Exception, now: float, policy: StepPolicy) -> Outcome:
    """The attempt ended in an unexpected error: reconcile after the grace, as for a lost
    answer, but without clearing the delivery count, so that a request that fails this way
    every time is dead-lettered after ``max_deliveries``."""
    fields = Fields(
        state=State.SUBMITTING,
        last_error=f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS],
        last_code=FailureCode.ERROR,
        attempt_ended_at=now,
        updated_at=now,
    )
    return Outcome(Change(record, fields, schedule="submit", at=now + policy.reconcile_grace))


def retried(
    record: Record, state: State, decision: Decision, extra: Fields, now: float, metric: Metric
) -> Outcome:
    """The request tried again (as ``state``) after the decision's delay."""
    fields = Fields(
        state=state,
        last_error=decision.message,
        last_code=decision.code,
        updated_at=now,
        deliveries=0,
    )
    fields.update(extra)
    clock_refused = decision.code == INVALID_TIMESTAMP
    return Outcome(
        Change(record, fields, schedule="submit", at=now + decision.delay),
        f"{state.value}: retry in {decision.delay:.1f}s"
        + ("; the API refused our timestamp" if clock_refused else ""),
        {"code": decision.code, "error": decision.message},
        (metric,),
        "warning" if clock_refused else "info",
    )


# --- Reconciling: the outcome of a registration is unknown -----------------------------------


@dataclass(frozen=True)
class Reconciled:
    outcome: Outcome
    register: bool = False  # once applied: register the request again (it is accepted now)


def after_lookup(
    record: Record,
    jobs: Sequence[JobInfo],
    now: float,
    policy: StepPolicy,
    *,
    final: bool,
    run: str = "",
) -> Reconciled:
    """What the job list says about a request in ``submitting``: ``jobs`` are those named
    like its job (oldest first).

    ``final`` (past the submit deadline): a job that is found is still tracked; one that is
    surely absent ends the request instead of being registered again. ``run``: the identity of
    the Redis server the record was read from ("": unknown).
    """
    if jobs:
        return Reconciled(registered(record, jobs[0].job_id, now, policy))
    settled = settled_at(record, policy, run)
    if now < settled:
        # Too early to tell: look again then. This delivery was not a failure, so the count
        # goes back to what it was (not to 0: it counts the failures since the request last
        # moved on, so that an attempt that dies every time ends as dead_letter).
        again = Change(record, Fields(deliveries=record.deliveries), schedule="submit", at=settled)
        return Reconciled(Outcome(again))
    if final:
        return Reconciled(gave_up(record, now, policy))
    if record.unknown_code:
        # The registration was answered with a code nobody knows, and no job came of it.
        code, message = record.unknown_code, record.unknown_message
        return Reconciled(failed(record, FailStage.SUBMIT, code, message, now))
    fields = Fields(state=State.ACCEPTED, updated_at=now)
    # Made only if the sender (if alive) has not said since that the registration leaves
    again = Change(record, fields, schedule="submit", at=now, sent_before=record.sent_at)
    return Reconciled(Outcome(again, "reconciled: absent, registering again"), register=True)


def after_lookup_failed(
    record: Record,
    error: CallError,
    now: float,
    policy: StepPolicy,
    rng: random.Random,
    *,
    final: bool,
) -> Outcome:
    """The lookup of a request in ``submitting`` failed: it stays unknown whether its job
    exists, so the request stays ``submitting`` and is looked up again later."""
    attempts = record.lookup_failures + 1
    decision = after_lookup_error(error, attempts, policy.retry, rng, now=now)
    if final:
        note = f"; its job may exist as {record.job_name}: lookups fail ({error})"
        return gave_up(record, now, policy, note)
    if decision.action is Action.FAIL:
        return failed(record, FailStage.SUBMIT, decision.code, decision.message, now)
    extra = Fields(lookup_failures=attempts)
    return retried(record, State.SUBMITTING, decision, extra, now, Metric.RECONCILE_LOOKUP_RETRIES)


def settled_at(record: Record, policy: StepPolicy, run: str = "") -> float:
    """When a job still absent from the job list is surely not coming: safe to register again.
    ``run``: the identity (``Durability.identity``: run id and replication id) of the Redis
    server ``record`` was read from ("": unknown).

    - The last attempt recorded its own end: the job had ``reconcile_grace`` to show up.
    - It recorded that its POST was about to leave (``sent_at``): the POST lands within the
      client's own timeouts (:attr:`StepPolicy.post_bound`), then the grace.
    - Neither, and the record was read from the very Redis server the mark was made on, in the
      same life (same run id and replication id: no write can have been lost since): the POST
      never left; at once.
    - Neither, and Redis may have lost writes since (restarted, failed over, or unknown): the
      attempt may still be running until Celery's hard time limit kills it, so that long is
      added.

    A sender still alive writes ``sent_at`` (``Records.leaving``) only on the version it marked,
    and the change that registers the request again is refused once ``sent_at`` is later than
    the record it was decided on: a late sender and a reconciler cannot both go ahead.
    """
    started, ended = record.submitting_at, record.attempt_ended_at
    if ended >= started:
        return ended + policy.reconcile_grace
    if record.sent_at >= started:
        return record.sent_at + policy.post_bound + policy.reconcile_grace
    if record.mark_run and record.mark_run == run:
        return started
    return started + policy.task_time_limit + policy.reconcile_grace
