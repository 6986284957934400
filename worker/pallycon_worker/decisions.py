"""Pure decisions of the worker: what to do after a failed call, when to poll next.

The steps' decisions built on these are in :mod:`pallycon_worker.submit_rules` and
:mod:`pallycon_worker.poll_rules`.

Nothing here does I/O or reads a clock: time and randomness come in as arguments, so each
decision is a table test.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

from pallycon.codes import API_CODES, INVALID_TIMESTAMP, Stage, StatusCode
from pallycon.errors import (
    ApiError,
    CallError,
    HttpStatusError,
    MalformedResponse,
    OutcomeUnknown,
    RateLimited,
    RequestNotBuilt,
    RequestNotSent,
    ServerError,
)


class Action(StrEnum):
    RESEND = "resend"  # a registration created nothing remotely: send again after the delay
    RECONCILE = "reconcile"  # the job may exist: look it up before any new POST
    RETRY = "retry"  # a read (job list) failed: read again after the delay
    FAIL = "fail"  # permanent: end the request


@dataclass(frozen=True)
class Decision:
    action: Action
    delay: float = 0.0
    code: str = ""
    message: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """PALLYCON_RETRY_BASE, PALLYCON_RETRY_CAP, PALLYCON_RECONCILE_GRACE (``StepPolicy.of``)."""

    base: float
    cap: float
    reconcile_grace: float


def known_api_code(code: str) -> bool:
    return code in API_CODES


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential backoff with jitter: half fixed, half random, capped."""
    ceiling = min(policy.cap, policy.base * 2 ** max(0, attempt - 1))
    return float(ceiling / 2 + rng.uniform(0, ceiling / 2))


def error_code(error: CallError) -> str:
    """A short code for an error: the API's code, ``HTTP503``, or the class name."""
    if isinstance(error, ApiError):
        return error.code
    if isinstance(error, HttpStatusError):
        return f"HTTP{error.status_code}"
    return type(error).__name__


def describe(error: CallError, now: float) -> str:
    """The error as a request's ``last_error`` (and the worker's log) says it.

    A call that never reached the API names the API's URL (no credentials in it).

    ``A1002`` (timestamp refused) says how far this machine's clock looks off, from the
    answer's ``Date`` header (seconds resolution) when there is one.
    """
    if isinstance(error, RequestNotSent) and error.api and not isinstance(error, RequestNotBuilt):
        return f"API at {error.api}: {error}"  # which API, for a log read without the settings
    if not (isinstance(error, ApiError) and error.code == INVALID_TIMESTAMP):
        return str(error)
    if error.server_time is None:
        return f"{error}; is this machine's clock right? (check NTP)"
    # The clock that signed, not the schedules' (which follows Redis's)
    skew = error.skew if error.skew is not None else now - error.server_time
    return (
        f"{error}; this machine's clock looks {skew:+.0f} s off the API's "
        "(its Date header): fix the clock (NTP)"
    )


def after_register_error(
    error: CallError, attempt: int, policy: RetryPolicy, rng: random.Random, *, now: float
) -> Decision:
    """What to do after a job registration failed with ``error`` (attempt counts from 1)."""
    code, message = error_code(error), describe(error, now)
    if isinstance(error, RateLimited):
        wait = max(error.retry_after or 0.0, backoff(attempt, policy, rng))
        return Decision(Action.RESEND, wait, code, message)
    if isinstance(error, (ServerError, OutcomeUnknown, MalformedResponse)) or (
        isinstance(error, ApiError) and not known_api_code(error.code)
    ):
        # The job may exist (or, for an unknown code, nobody can say): look before acting.
        return Decision(Action.RECONCILE, policy.reconcile_grace, code, message)
    if error.retryable and isinstance(error, RequestNotSent | ApiError):
        return Decision(Action.RESEND, backoff(attempt, policy, rng), code, message)
    return Decision(Action.FAIL, 0.0, code, message)


def after_lookup_error(
    error: CallError, attempt: int, policy: RetryPolicy, rng: random.Random, *, now: float
) -> Decision:
    """After a read (job list) failed: retry later unless it can never succeed.

    Only the known permanent API codes (bad credentials, site, version, query) fail; an
    unknown code is retried, since failing would abandon a job that may exist.
    """
    if error.retryable or (isinstance(error, ApiError) and not known_api_code(error.code)):
        wait = backoff(attempt, policy, rng)
        if isinstance(error, RateLimited) and error.retry_after:
            wait = max(wait, error.retry_after)
        return Decision(Action.RETRY, wait, error_code(error), describe(error, now))
    return Decision(Action.FAIL, 0.0, error_code(error), describe(error, now))


# --- Polling ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollPolicy:
    """PALLYCON_POLL_INTERVAL, PALLYCON_POLL_BUSY_INTERVAL, PALLYCON_POLL_GRID."""

    interval: float  # queued, preparing, uploading: the job may end soon
    busy_interval: float  # downloading, watermarking, DRM: long stages
    grid: float  # polls are aligned to multiples of this, so that they coalesce


_BUSY = {Stage.DOWNLOADING, Stage.WATERMARKING, Stage.DRM}


def next_poll_at(now: float, status: StatusCode | None, policy: PollPolicy) -> float:
    """When to poll a job next: by its stage, rounded up to the shared grid."""
    interval = policy.busy_interval if status and status.stage in _BUSY else policy.interval
    due = now + interval
    if policy.grid <= 0:
        return due
    return math.ceil(due / policy.grid) * policy.grid


def pages_to_fetch(total_count: int, page_unit: int, fetched: int, missing: int) -> int:
    """More list pages to fetch, or 0 when one lookup per missing job is cheaper."""
    remaining = max(0, math.ceil(total_count / page_unit) - fetched)
    return remaining if remaining <= missing else 0
