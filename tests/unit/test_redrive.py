"""How a failed request is taken up again (store/redrive.py): a table of what may exist
remotely against what a retry does. Pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pallycon_store.admission import remote_job_name
from pallycon_store.events import State
from pallycon_store.record import Record
from pallycon_store.redrive import RetryAction, plan_retry
from support.samples import job_body

NOW = 1_800_000_000.0


def failed(stage: str, **fields: Any) -> Record:
    base: dict[str, Any] = {
        "body": json.dumps(job_body()),
        "job_name": "episode-1-abc",
        "created_at": NOW - 500,
        "error_stage": stage,
        "error_code": "E",
        "error_message": "why",
        "finished_at": NOW - 10,
    }
    return Record("r1", State.FAILED, 7, **(base | fields))


@pytest.mark.parametrize(
    ("record", "action", "state", "schedule"),
    [
        # Its job failed: a new job, under a new name
        (failed("packaging", job_id="77", attempts=1), RetryAction.RESUBMIT, State.ACCEPTED, "submit"),
        # Never sent: register
        (failed("submit", attempts=0), RetryAction.RESUBMIT, State.ACCEPTED, "submit"),
        # For a site no worker served then (valid, never sent): register, once it is served
        (failed("validation", error_code="unknown_site", site_id="NEWS"), RetryAction.RESUBMIT,
         State.ACCEPTED, "submit"),
        # Sent, no job known: it may exist, look it up first (same name)
        (failed("submit", attempts=2), RetryAction.RECONCILE, State.SUBMITTING, "submit"),
        (failed("dead_letter", attempts=1), RetryAction.RECONCILE, State.SUBMITTING, "submit"),
        # Its job may still run: poll it again
        (failed("timeout", job_id="77", attempts=1), RetryAction.RESUME, State.SUBMITTED, "poll"),
        (failed("dead_letter", job_id="77", attempts=1), RetryAction.RESUME, State.SUBMITTED, "poll"),
    ],
)  # fmt: skip
def test_a_retry_makes_a_new_job_only_when_none_can_be_live(record, action, state, schedule):
    plan = plan_retry(record, "r1", NOW)
    assert plan.action == action
    assert plan.change is not None
    change = plan.change
    assert (change.fields["state"], change.schedule, change.at) == (state, schedule, NOW)
    assert change.revive
    assert (change.fields["retries"], change.fields["retried_at"]) == (1, NOW)
    assert change.fields["error_code"] == change.fields["error_stage"] == ""
    assert change.event is not None
    assert change.event["retry"] == 1
    new_name = change.fields.get("job_name", record.job_name)
    if action == RetryAction.RESUBMIT:
        assert new_name == remote_job_name("episode-1", "r1#1")
        assert change.fields["job_id"] == ""
    else:
        assert new_name == record.job_name
    if action == RetryAction.RESUME:
        assert change.index_job == "77"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (None, "no such request"),
        (Record("r1", State.SUBMITTED, 3), "it is submitted: only a failed request is retried"),
        (Record("r1", State.COMPLETED, 9), "it is completed"),
        (failed("validation", body="null"), "refused at intake (E): submit a valid request"),
        (failed("validation"), "refused at intake (E): submit a valid request"),
        (failed("packaging", job_id="7", body="{not json"), "its stored body is unreadable"),
        (failed("packaging", job_id="7", body="[]"), "its stored body is unreadable"),
    ],
)
def test_nothing_is_retried_that_is_not_failed_or_was_never_valid(record, reason):
    plan = plan_retry(record, "r1", NOW)
    assert (plan.action, plan.change) == (None, None)
    assert reason in plan.reason


def test_the_second_retry_gets_a_name_of_its_own():
    first = plan_retry(failed("packaging", job_id="77", attempts=1, retries=1), "r1", NOW)
    assert first.change is not None
    assert first.change.fields["job_name"] == remote_job_name("episode-1", "r1#2")
    assert first.change.fields["job_name"] != remote_job_name("episode-1", "r1#1")


def test_the_submit_deadline_and_the_job_timeout_count_from_the_retry():
    """A request retried long after it was created is not given up at once."""
    import dataclasses

    from pallycon.models import JobInfo
    from pallycon_config import Settings
    from pallycon_worker import poll_rules, submit_rules
    from pallycon_worker.outcome import StepPolicy

    policy = dataclasses.replace(
        StepPolicy.of(Settings(_env_file=None)), submit_deadline=600.0, job_timeout=3600.0
    )
    old: dict[str, Any] = {
        "created_at": NOW - 7200,
        "submitted_at": NOW - 7200,
        "retried_at": NOW - 10,
    }
    accepted = Record("r1", State.ACCEPTED, 3, body=json.dumps(job_body()), **old)
    assert submit_rules.plan([(accepted, 1)], NOW, policy).register == [accepted]
    stale = Record("r1", State.ACCEPTED, 3, body="{}", created_at=NOW - 7200)
    assert submit_rules.plan([(stale, 1)], NOW, policy).register == []
    running = Record("r1", State.SUBMITTED, 3, job_id="77", status="WM000", **old)
    job = JobInfo.model_validate({"job_id": "77", "status": "WM000"})
    assert poll_rules.after_poll(running, job, NOW, policy).change.fields.get("state") is None
