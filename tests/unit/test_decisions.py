"""The worker's pure decisions: retry, reconcile or fail; when to poll; how to name jobs."""

from __future__ import annotations

import random

import pytest

from pallycon.codes import STATUS_CODES
from pallycon.errors import (
    ApiError,
    HttpStatusError,
    MalformedResponse,
    OutcomeUnknown,
    RateLimited,
    RequestNotBuilt,
    RequestNotSent,
    ServerError,
)
from pallycon_store.admission import remote_job_name, request_token
from pallycon_worker.decisions import (
    Action,
    PollPolicy,
    RetryPolicy,
    after_lookup_error,
    after_register_error,
    backoff,
    describe,
    next_poll_at,
    pages_to_fetch,
)
from pallycon_worker.intake_stream import Delivery, counts, dead_letter_due

POLICY = RetryPolicy(base=1.0, cap=60.0, reconcile_grace=10.0)
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (RequestNotSent("connect refused"), Action.RESEND),
        (RequestNotBuilt("URL too long"), Action.FAIL),
        (RateLimited(5.0), Action.RESEND),
        (ApiError("A1002", "timestamp", retryable=True), Action.RESEND),
        (ApiError("A4003", "watermark data", retryable=True), Action.RESEND),
        (ServerError(503), Action.RECONCILE),
        (OutcomeUnknown("read timeout"), Action.RECONCILE),
        (MalformedResponse("not JSON"), Action.RECONCILE),
        (ApiError("A1000", "bad field", retryable=False), Action.FAIL),
        (ApiError("A1007", "hash", retryable=False), Action.FAIL),
        (HttpStatusError(404), Action.FAIL),
        (ApiError("Z9999", "a code no table knows", retryable=False), Action.RECONCILE),
    ],
)
def test_after_a_failed_registration(error, action):
    """Resend only what provably created nothing; reconcile what may have; fail the permanent."""
    decision = after_register_error(error, 1, POLICY, random.Random(1), now=NOW)
    assert decision.action is action
    if action is Action.RECONCILE:
        assert decision.delay == POLICY.reconcile_grace


def test_rate_limits_wait_at_least_retry_after():
    """429 with Retry-After: 30 waits 30 s even on a first attempt."""
    decision = after_register_error(RateLimited(30.0), 1, POLICY, random.Random(1), now=NOW)
    assert decision.delay >= 30.0
    assert decision.code == "HTTP429"


def test_backoff_doubles_with_jitter_and_caps():
    """Each delay lies in [d/2, d] with d = base * 2^(n-1), capped."""
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (20, 60)]:
        for _ in range(50):
            assert ceiling / 2 <= backoff(attempt, POLICY, rng) <= ceiling


def test_lookups_retry_what_can_succeed_and_fail_the_rest():
    """A failed job list is retried unless the error is a known permanent one."""
    rng = random.Random(1)
    site = ApiError("A1003", "site", retryable=False)
    unknown = ApiError("Z9999", "unknown", retryable=False)
    assert after_lookup_error(ServerError(500), 1, POLICY, rng, now=NOW).action is Action.RETRY
    assert after_lookup_error(site, 1, POLICY, rng, now=NOW).action is Action.FAIL
    assert after_lookup_error(unknown, 1, POLICY, rng, now=NOW).action is Action.RETRY


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (ApiError("A1002", "timestamp", retryable=True, server_time=NOW - 312), "looks +312 s off"),
        (ApiError("A1002", "timestamp", retryable=True, server_time=NOW + 90), "looks -90 s off"),
        (ApiError("A1002", "timestamp", retryable=True), "is this machine's clock right?"),
        (
            ApiError("A1000", "bad field", retryable=False, server_time=NOW - 312),
            "A1000: bad field",
        ),
        (ServerError(503), "HTTP 503"),
        (
            RequestNotSent("ConnectError: refused", api="http://127.0.0.1:8600"),
            "API at http://127.0.0.1:8600: ConnectError: refused",
        ),
        (RequestNotSent("ConnectError: refused"), "ConnectError: refused"),
    ],
)
def test_a_refused_timestamp_says_how_far_the_clock_looks_off(error, said):
    """A1002 names the skew against the answer's Date header; a call that never reached the
    API names the API; other errors read as they are."""
    assert said in describe(error, NOW)
    retry = after_register_error(error, 1, POLICY, random.Random(1), now=NOW)
    assert retry.message == describe(error, NOW)
    assert after_lookup_error(error, 1, POLICY, random.Random(1), now=NOW).message == retry.message


@pytest.mark.parametrize(
    ("status", "due"),
    [(None, 20.0), ("WM000", 20.0), ("WM022100", 40.0), ("WM024100", 20.0)],
)
def test_poll_interval_follows_the_stage_and_snaps_to_the_grid(status, due):
    """Long stages are polled less often; due times land on multiples of the grid."""
    policy = PollPolicy(interval=10.0, busy_interval=30.0, grid=5.0)
    code = STATUS_CODES[status] if status else None
    assert next_poll_at(7.0, code, policy) == due


def test_polls_due_at_different_moments_share_a_grid_point():
    """Two jobs whose polls would be due 3 s apart fall due together."""
    policy = PollPolicy(interval=10.0, busy_interval=30.0, grid=5.0)
    assert next_poll_at(101.0, None, policy) == next_poll_at(104.0, None, policy)


@pytest.mark.parametrize(
    ("total", "unit", "fetched", "missing", "more"),
    [(10_000, 500, 1, 9_000, 19), (10_000, 500, 1, 5, 0), (600, 500, 1, 1, 1), (400, 500, 1, 3, 0)],
)
def test_pages_are_read_only_while_cheaper_than_lookups(total, unit, fetched, missing, more):
    """Remaining pages if no more than the missing jobs, else none (look them up one by one)."""
    assert pages_to_fetch(total, unit, fetched, missing) == more


@pytest.mark.parametrize("name", ["episode-1", "x" * 60, "한국어 제목 " * 6])
def test_remote_job_names_are_unique_and_fit_50_bytes(name):
    """<name>-<token>: at most 50 UTF-8 bytes, whole characters, the token intact."""
    remote = remote_job_name(name, "request-1")
    assert len(remote.encode("utf-8")) <= 50
    assert remote.endswith("-" + request_token("request-1"))
    assert remote_job_name(name, "request-2") != remote


@pytest.mark.parametrize(
    ("delivery", "counted"),
    [
        (Delivery.NEW, False),
        (Delivery.READ_AGAIN, False),  # after a Redis error, or a failure already counted
        (Delivery.FAILED, True),
        (Delivery.TAKEN_OVER, True),
        (Delivery.INHERITED, True),
    ],
)
def test_only_failures_and_dead_consumers_count_towards_the_dead_letter_limit(
    delivery: Delivery, counted: bool
):
    """An intake entry's count grows with a handling that failed and with a consumer that died
    holding it, never with a re-read (a Redis error is not a redelivery)."""
    assert counts(delivery) is counted


@pytest.mark.parametrize(("deliveries", "due"), [(0, False), (3, False), (4, True)])
def test_an_entry_is_dead_lettered_once_counted_more_than_the_limit(deliveries: int, due: bool):
    """With a limit of 3, the fourth counted delivery dead-letters the entry."""
    assert dead_letter_due(deliveries, 3) is due
