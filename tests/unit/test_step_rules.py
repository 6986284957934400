"""The submit and poll steps' decisions, as tables: record + observation + now -> change."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest

from pallycon.errors import ApiError, OutcomeUnknown, RequestNotSent, ServerError
from pallycon.models import JobInfo
from pallycon_config import Settings
from pallycon_store.counters import Metric
from pallycon_store.events import FailStage, State
from pallycon_store.record import Record, decode, encode
from pallycon_worker import poll_rules, submit_rules
from pallycon_worker.outcome import StepPolicy, Triage, triage
from support.samples import job_body

NOW = 1_800_000_000.0
POLICY = dataclasses.replace(
    StepPolicy.of(Settings(_env_file=None)),
    max_deliveries=3,
    submit_deadline=600.0,
    reconcile_grace=10.0,
    read_timeout=30.0,
    task_time_limit=240.0,
    job_timeout=3600.0,
)


def record(state: State = State.ACCEPTED, **fields) -> Record:
    base: dict[str, Any] = {
        "body": json.dumps(job_body()),
        "job_name": "episode-1-abc",
        "created_at": NOW - 5,
        "submitting_at": NOW - 60,
        "submitted_at": NOW - 60,
    }
    return Record("r1", state, 3, **(base | fields))


def job(status: str, **extra) -> JobInfo:
    return JobInfo.model_validate({"job_id": "77", "status": status} | extra)


# --- The record's codec ---------------------------------------------------------------------


def test_the_codec_round_trips_every_type():
    original = record(State.SUBMITTING, attempts=2, unknown_code="Z9", last_error="x; y")
    stored = encode(
        {
            k: v
            for k, v in dataclasses.asdict(original).items()
            if k not in ("request_id", "version", "events")
        }
    ) | {"version": "3", "events": original.events}
    assert stored["state"] == "submitting"
    assert stored["attempts"] == "2"
    assert stored["created_at"] == repr(NOW - 5)
    assert decode("r1", stored) == original


def test_a_record_written_by_another_version_stays_readable():
    """Unknown fields are ignored; missing ones read as their defaults."""
    got = decode("r1", {"state": "accepted", "version": "1", "future_field": "z", "attempts": ""})
    assert (got.state, got.version, got.attempts, got.job_id) == (State.ACCEPTED, 1, 0, "")


def test_writing_a_field_the_record_does_not_have_is_refused():
    with pytest.raises(ValueError, match="not a writable field of the request record: atempts"):
        encode({"atempts": 1})
    with pytest.raises(ValueError, match="version"):  # only the scripts write it
        encode({"version": 7})
    with pytest.raises(ValueError, match="events"):
        encode({"events": "1-0"})


# --- Triage: which requests of a batch run --------------------------------------------------


@pytest.mark.parametrize(
    ("state", "deliveries", "alone", "expected"),
    [
        (State.ACCEPTED, 0, False, Triage.RUN),
        (State.ACCEPTED, 1, False, Triage.ISOLATE),  # its batch died: alone next time
        (State.ACCEPTED, 1, True, Triage.RUN),
        (State.SUBMITTING, 0, False, Triage.RUN),
        (State.SUBMITTED, 0, False, Triage.SKIP),  # a late or duplicate message
        (State.COMPLETED, 0, True, Triage.SKIP),
    ],
)
def test_triage(state, deliveries, alone, expected):
    handled = (State.ACCEPTED, State.SUBMITTING)
    assert triage(record(state, deliveries=deliveries), handled, alone=alone) is expected


def test_an_unknown_request_is_skipped():
    assert triage(None, (State.ACCEPTED,), alone=True) is Triage.SKIP


# --- Submit ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "deliveries", "age", "ends_as", "then"),
    [
        (State.ACCEPTED, 1, 5, None, "register"),
        (State.ACCEPTED, 4, 5, "dead_letter", None),  # past max_deliveries (3)
        (State.SUBMITTING, 1, 5, None, "reconcile"),
        (State.SUBMITTING, 1, 700, None, "reconcile final"),  # the job may exist: look
        (State.ACCEPTED, 1, 700, "submit", None),  # past the deadline, never sent: give up
    ],
)
def test_plan(state, deliveries, age, ends_as, then):
    rec = record(state, created_at=NOW - age)
    plan = submit_rules.plan([(rec, deliveries)], NOW, POLICY)
    ended = [o.change.fields.get("error_stage") for o in plan.ended]
    assert ended == ([ends_as] if ends_as else [])
    if then == "register":
        assert plan.register == [rec]
    if then and then.startswith("reconcile"):
        assert plan.reconcile == [(rec, then == "reconcile final")]


def test_the_mark_before_a_registration():
    """submitting, one more attempt, when and on which Redis server it was marked; due for a
    lookup after the grace and the read timeout; gated on the site's cap."""
    change = submit_rules.submitting(record(attempts=1), NOW, POLICY, cap=7, run="r1")
    assert change.fields == {
        "state": State.SUBMITTING,
        "attempts": 2,
        "submitting_at": NOW,
        "mark_run": "r1",
        "updated_at": NOW,
    }
    assert (change.schedule, change.at) == ("submit", NOW + 10 + 30)  # grace + read timeout
    assert change.gate == 7


@pytest.mark.parametrize("state", [State.ACCEPTED, State.SUBMITTING])
def test_a_mark_redis_did_not_confirm_is_taken_back(state: State):
    before = record(state, attempts=1)
    mark = submit_rules.submitting(before, NOW, POLICY)
    marked = before.moved(mark.fields)
    change = submit_rules.unmarked(before, marked, NOW + 2, POLICY)
    assert change.record is marked  # applied from the mark's version: nothing else moved it
    assert change.fields == {
        "state": state,
        "attempts": 1,
        "submitting_at": NOW - 60,
        "mark_run": "",
        "deliveries": 0,
        "updated_at": NOW + 2,
    }
    assert (change.schedule, change.at) == ("submit", NOW + 2 + POLICY.retry.base)


GRACE = POLICY.reconcile_grace


@pytest.mark.parametrize(
    ("fields", "run", "settled"),
    [
        # The attempt recorded its end: the grace after it
        ({"attempt_ended_at": NOW + 5}, "A", NOW + 5 + GRACE),
        # Its POST was about to leave at NOW + 1: the client's timeouts, then the grace
        ({"sent_at": NOW + 1}, "A", NOW + 1 + POLICY.post_bound + GRACE),
        ({"sent_at": NOW + 1}, "B", NOW + 1 + POLICY.post_bound + GRACE),
        # Never said it leaves, read from the server it was marked on: it never left
        ({}, "A", NOW),
        # ... from another server (restarted, failed over: writes may be lost), or unknown
        ({}, "B", NOW + POLICY.task_time_limit + GRACE),
        ({}, "", NOW + POLICY.task_time_limit + GRACE),
        ({"mark_run": ""}, "", NOW + POLICY.task_time_limit + GRACE),
        # A sent_at of an earlier attempt says nothing of this one
        ({"sent_at": NOW - 100}, "A", NOW),
    ],
)
def test_when_a_job_still_absent_is_surely_not_coming(fields, run, settled):
    """Only a registration that may have left waits, and no longer than its POST can take to
    land; one that never left (its mark on this very server, no sent_at) is settled at once;
    the hard time limit is waited only when Redis may have lost what the sender wrote."""
    marked = dataclasses.replace(
        record(State.SUBMITTING), **{"submitting_at": NOW, "mark_run": "A", **fields}
    )
    assert submit_rules.settled_at(marked, POLICY, run) == settled


def test_registering_again_is_refused_once_the_sender_says_it_leaves():
    """The change that registers an absent, never-sent request again is guarded on sent_at:
    a live sender that writes sent_at after the lookup read the record wins."""
    rec = dataclasses.replace(record(State.SUBMITTING), submitting_at=NOW, mark_run="A")
    result = submit_rules.after_lookup(rec, [], NOW + 1, POLICY, final=False, run="A")
    assert result.register
    assert result.outcome.change.sent_before == rec.sent_at


def test_registered():
    outcome = submit_rules.registered(record(State.SUBMITTING, attempts=1), "77", NOW, POLICY)
    change = outcome.change
    assert change.fields["state"] == State.SUBMITTED
    assert change.fields["deliveries"] == 0
    assert (change.schedule, change.at, change.index_job) == ("poll", NOW + 10, "77")
    assert change.event is not None
    assert change.event["type"] == "submitted"
    assert "event_id" not in change.event  # the script stamps it
    assert (change.event["job_id"], change.event["attempts"]) == ("77", 1)


@pytest.mark.parametrize(
    ("error", "state", "metric", "unknown"),
    [
        (RequestNotSent("refused"), State.ACCEPTED, Metric.SUBMIT_RESENDS, False),
        (ServerError(503), State.SUBMITTING, Metric.SUBMIT_RECONCILES, False),
        (OutcomeUnknown("read timeout"), State.SUBMITTING, Metric.SUBMIT_RECONCILES, False),
        (
            ApiError("Z9999", "nobody knows", retryable=False),
            State.SUBMITTING,
            Metric.SUBMIT_RECONCILES,
            True,
        ),
    ],
)
def test_after_a_failed_registration(error, state, metric, unknown):
    rec = record(State.SUBMITTING, attempts=1)
    outcome = submit_rules.after_post_error(rec, error, NOW, POLICY, random.Random(1))
    fields = outcome.change.fields
    assert (fields["state"], fields["deliveries"]) == (state, 0)
    assert fields["unknown_code"] == ("Z9999" if unknown else "")
    assert fields["attempt_ended_at"] == NOW
    assert outcome.counts == (metric,)
    assert outcome.change.schedule == "submit"
    assert outcome.change.at > NOW


def test_a_permanent_registration_error_fails_the_request():
    rec = record(State.SUBMITTING, attempts=1)
    outcome = submit_rules.after_post_error(
        rec, ApiError("A1000", "bad field", retryable=False), NOW, POLICY, random.Random(1)
    )
    assert outcome.change.fields["state"] == State.FAILED
    assert (outcome.change.fields["error_stage"], outcome.change.fields["error_code"]) == (
        "submit", "A1000",
    )  # fmt: skip
    assert outcome.change.finish
    # answered: a retry looks the job up after the grace, not after the hard time limit
    assert outcome.change.fields["attempt_ended_at"] == NOW
    retried = dataclasses.replace(rec.moved(outcome.change.fields), submitting_at=NOW - 1)
    assert submit_rules.settled_at(retried, POLICY) == NOW + POLICY.reconcile_grace


def test_a_refused_timestamp_is_logged_as_a_warning():
    rec = record(State.SUBMITTING, attempts=1)
    refused = ApiError("A1002", "timestamp", retryable=True)
    outcome = submit_rules.after_post_error(rec, refused, NOW, POLICY, random.Random(1))
    assert outcome.level == "warning"
    assert "the API refused our timestamp" in outcome.message


# --- Reconcile ------------------------------------------------------------------------------


SUBMITTING = {"submitting_at": NOW - 100, "attempt_ended_at": NOW - 100, "deliveries": 2}


@pytest.mark.parametrize(
    ("fields", "found", "final", "expected"),
    [
        ({}, ["77"], False, "submitted 77"),
        ({}, ["77"], True, "submitted 77"),  # past the deadline, found: still tracked
        ({"attempt_ended_at": NOW - 5}, [], False, "wait"),  # within the grace: look again
        ({"attempt_ended_at": 0.0}, [], False, "wait"),  # its worker died: the hard limit too
        ({}, [], False, "register again"),
        ({}, [], True, "failed submit"),
        ({"unknown_code": "Z9999", "last_code": "Z9999"}, [], False, "failed submit Z9999"),
        # lookups failed in between: the registration's unknown code still decides
        (
            {"unknown_code": "Z9999", "last_code": "MalformedResponse"},
            [],
            False,
            "failed submit Z9999",
        ),
    ],
)
def test_after_a_lookup(fields, found, final, expected):
    rec = record(State.SUBMITTING, **(SUBMITTING | fields))
    jobs = [job("WM000", job_id=job_id) for job_id in found]
    result = submit_rules.after_lookup(rec, jobs, NOW, POLICY, final=final)
    change = result.outcome.change
    state = change.fields.get("state")
    if expected.startswith("submitted"):
        assert (state, change.index_job) == (State.SUBMITTED, expected.split()[1])
    elif expected == "wait":
        assert change.fields == {"deliveries": 2}  # this delivery was no failure
        assert change.at == submit_rules.settled_at(rec, POLICY) > NOW
    elif expected == "register again":
        assert (state, result.register) == (State.ACCEPTED, True)
    else:
        assert (state, change.fields["error_stage"]) == (State.FAILED, "submit")
        if expected.endswith("Z9999"):
            assert change.fields["error_code"] == "Z9999"


def test_a_failed_lookup_keeps_the_request_submitting():
    rec = record(State.SUBMITTING, **SUBMITTING)
    outcome = submit_rules.after_lookup_failed(
        rec, ServerError(503), NOW, POLICY, random.Random(1), final=False
    )
    assert outcome.change.fields["state"] == State.SUBMITTING
    assert outcome.change.fields["lookup_failures"] == 1
    assert outcome.counts == (Metric.RECONCILE_LOOKUP_RETRIES,)
    final = submit_rules.after_lookup_failed(
        rec, ServerError(503), NOW, POLICY, random.Random(1), final=True
    )
    assert final.change.fields["state"] == State.FAILED
    assert "its job may exist as episode-1-abc" in final.change.fields["error_message"]


# --- Poll -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "listed", "age", "expected"),
    [
        ("WM000", "WM000", 60, "unchanged"),
        ("WM000", "WM022100", 60, "progress"),
        ("WM022100", "WM030", 60, "completed"),
        ("WM022100", "WM999", 60, "failed packaging"),
        ("WM000", None, 60, "missing"),
        ("WM000", None, 4000, "failed timeout"),  # past job_timeout (3600 s)
        ("WM000", "WM022100", 4000, "failed timeout"),
    ],
)
def test_after_a_poll(last, listed, age, expected):
    rec = record(State.SUBMITTED, status=last, job_id="77", submitted_at=NOW - age)
    found = job(listed) if listed else None
    outcome = poll_rules.after_poll(rec, found, NOW, POLICY)
    change = outcome.change
    if expected == "unchanged":
        assert (change.fields, change.event) == ({"deliveries": 0, "poll_failures": 0}, None)
        assert change.schedule == "poll"
    elif expected == "progress":
        assert change.event is not None
        assert (change.event["type"], change.event["stage"]) == ("progress", "watermarking")
        assert change.at % POLICY.polling.grid == 0
    elif expected == "completed":
        assert change.finish
        assert change.event is not None
        assert change.event["output_prefix"] == "out/episode-1/"
    elif expected == "missing":
        assert change.fields == {"deliveries": 0, "last_seen": "missing"}
    else:
        stage = expected.split()[1]
        assert (change.fields["state"], change.fields["error_stage"]) == (State.FAILED, stage)


def test_poll_deliveries_past_the_limit_are_dead_letters():
    ok, dead = record(State.SUBMITTED), record(State.SUBMITTED)
    kept, ended = poll_rules.sort_out([(ok, 1), (dead, 4)], NOW, POLICY)
    assert kept == [ok]
    assert [o.change.fields["error_stage"] for o in ended] == [FailStage.DEAD_LETTER.value]


def test_a_failed_poll_retries_after_a_backoff():
    recs = [record(State.SUBMITTED, poll_failures=2), record(State.SUBMITTED)]
    decision, due, outcomes = poll_rules.after_poll_failed(
        recs, ServerError(503), NOW, POLICY, random.Random(1)
    )
    assert due >= NOW + POLICY.retry.base
    assert [o.change.fields["poll_failures"] for o in outcomes] == [3, 3]
    assert {o.change.at for o in outcomes} == {due}
    assert decision.code == "HTTP503"


# --- A site this worker does not serve ------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "schedule", "elsewhere", "ends"),
    [
        (State.ACCEPTED, "submit", False, True),  # nothing sent, no worker serves it: fails
        (State.ACCEPTED, "submit", True, False),  # another worker serves it: left for it
        (State.SUBMITTING, "submit", False, False),  # its job may exist: left for a worker
        (State.SUBMITTED, "poll", False, False),
    ],
)
def test_a_site_not_served_fails_only_what_no_worker_can_take(state, schedule, elsewhere, ends):
    from pallycon_worker.outcome import not_served

    now = 1000.0
    given = record(state, site_id="BRND", job_id="" if state == State.ACCEPTED else "1001")
    why = "unknown site 'BRND' (sites: TUTO)"
    outcome = not_served(given, why, now, POLICY, schedule, elsewhere=elsewhere)
    change = outcome.change
    if ends:
        assert change.fields["state"] == State.FAILED
        assert (change.fields["error_stage"], change.fields["error_code"]) == (
            "validation",
            "unknown_site",
        )
        assert change.fields["error_message"].startswith("site_id: unknown site 'BRND'")
    else:
        assert "state" not in change.fields
        assert (change.schedule, change.at) == (schedule, now + POLICY.retry.cap)
        assert outcome.level == "warning"
        assert change.event is None


@pytest.mark.parametrize(
    ("status", "state"), [("WM100", State.SUBMITTED), ("WM200", State.STOPPED)]
)
def test_a_job_stopped_at_pallycon_ends_its_request_stopped_not_failed(status, state):
    """WM100 (stop requested) is still under way; WM200 (stopped, from PallyCon Console) ends
    the request stopped, with a stopped event naming the job: not failed, not stuck."""
    rec = dataclasses.replace(record(State.SUBMITTED), job_id="77", submitted_at=NOW - 5)
    outcome = poll_rules.after_poll(rec, job(status), NOW, POLICY)
    assert outcome.change.fields.get("state", State.SUBMITTED) is state
    if state is State.STOPPED:
        assert outcome.change.finish
        assert outcome.change.event is not None
        assert (outcome.change.event["type"], outcome.change.event["job_id"]) == ("stopped", "77")
        assert "stopped at PallyCon" in outcome.change.fields["error_message"]
