"""Re-driving failed requests (``pallycon-pack retry``): the same request id, its history going
on, and never a second live remote job.

How a failed request is taken up again depends on what may exist remotely (pure,
:func:`plan_retry`):

- its job is known (``job_id``) and may still run (it timed out, or was dead-lettered while
  polled): **resume** polling that job: no new job;
- its job failed (``packaging``), or no registration was ever sent: **resubmit** under a new
  remote job name (``<job_name>-<token of "<request id>#<retry>">``), so that a lookup can never
  confuse the new job with the failed one;
- a registration was sent but no job is known (it failed at ``submit`` or was dead-lettered
  while submitting): **reconcile**: look the job up by its name first (tracked if found,
  registered again if surely absent), as the worker does after a lost answer;
- refused at intake, or not failed: nothing to do (say why); a request for a site no worker
  served (``unknown_site``) was not refused: it is resubmitted.

Each is one version-checked change (``transition.lua``), so two operators retrying at once make
one retry, and retrying a request that is already running again changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from pallycon_store.admission import remote_job_name
from pallycon_store.durability import Durability
from pallycon_store.events import EventType, FailStage, State, event
from pallycon_store.failures import FailureCode
from pallycon_store.record import Fields, Record
from pallycon_store.records import Change, Records


class RetryAction(StrEnum):
    RESUME = "resume"  # poll the job it has
    RESUBMIT = "resubmit"  # register a new job, under a new name
    RECONCILE = "reconcile"  # look its job up by name, then register only if absent


@dataclass(frozen=True)
class Retry:
    """What a retry of one request did (or would do): ``action`` None when nothing, and why."""

    request_id: str
    action: RetryAction | None
    reason: str
    change: Change | None = None

    @property
    def done(self) -> bool:
        return self.action is not None


#: Every field of an attempt, back to its default when a request is taken up again.
_CLEARED = Fields(
    deliveries=0,
    last_error="",
    last_code="",
    unknown_code="",
    unknown_message="",
    lookup_failures=0,
    poll_failures=0,
    finished_at=0.0,
    error_stage="",
    error_code="",
    error_message="",
)


def plan_retry(record: Record | None, request_id: str, now: float) -> Retry:
    """How to take ``record`` up again at ``now`` (see the module's docstring). Pure."""
    if record is None:
        return Retry(request_id, None, "no such request (or its record expired)")
    if record.state != State.FAILED:
        return Retry(
            request_id, None, f"it is {record.state.value}: only a failed request is retried"
        )
    # A request for a site no worker served is valid: retried once its site is served.
    unserved = record.error_code == FailureCode.UNKNOWN_SITE
    refused = record.error_stage == FailStage.VALIDATION and not unserved
    if refused or record.body in ("", "null"):
        return Retry(
            request_id,
            None,
            f"it was refused at intake ({record.error_code}): submit a valid request instead",
        )
    retry = record.retries + 1
    fields = Fields(**_CLEARED, retries=retry, retried_at=now, updated_at=now)
    if record.job_id and record.error_stage != FailStage.PACKAGING:
        fields.update(Fields(state=State.SUBMITTED))
        change = event(
            EventType.SUBMITTED,
            request_id,
            now,
            job_id=record.job_id,
            job_name=record.job_name,
            attempts=record.attempts,
            retry=retry,
        )
        return Retry(
            request_id,
            RetryAction.RESUME,
            f"its job {record.job_id} may still run: polling it again",
            Change(record, fields, change, "poll", now, index_job=record.job_id, revive=True),
        )
    if record.job_id or record.attempts == 0:
        try:
            base = str(record.parsed_body()["job_name"])
        except (ValueError, TypeError, KeyError):
            return Retry(request_id, None, "its stored body is unreadable: submit it again")
        name = remote_job_name(base, f"{request_id}#{retry}")
        fields.update(
            Fields(
                state=State.ACCEPTED,
                job_name=name,
                job_id="",
                status="",
                status_meaning="",
                last_seen="",
                output_path="",
                attempts=0,
                submitted_at=0.0,
            )
        )
        action, reason = RetryAction.RESUBMIT, "registering a new job"
        if record.job_id:
            reason = (
                f"its job {record.job_id} failed ({record.status or record.error_code}): " + reason
            )
    else:
        name = record.job_name
        fields.update(Fields(state=State.SUBMITTING))
        action = RetryAction.RECONCILE
        reason = f"its job may exist as {name}: looking it up before registering"
    change = event(
        EventType.ACCEPTED,
        request_id,
        now,
        content_id=record.content_id,
        job_name=name,
        retry=retry,
    )
    return Retry(
        request_id, action, reason, Change(record, fields, change, "submit", now, revive=True)
    )


def retry(
    records: Records, durability: Durability, request_ids: Sequence[str], now: float
) -> list[Retry]:
    """Take the failed requests of ``request_ids`` up again (each at most once): what each
    retry did. The workers' sweepers dispatch them at once (they are due ``now``)."""
    request_ids = list(dict.fromkeys(request_ids))
    found = records.get_many(request_ids)
    planned = [plan_retry(found.get(r), r, now) for r in request_ids]
    changes = [p.change for p in planned if p.change is not None]
    server = durability.server() if changes else ""
    applied = iter(records.apply(changes))
    done: list[Retry] = []
    for plan in planned:
        if plan.change is not None and not next(applied):
            plan = Retry(plan.request_id, None, "it changed meanwhile (retried already?)")
        done.append(plan)
    if any(plan.done for plan in done):
        durability.wait(server)
    return done
