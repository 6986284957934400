"""The pure decisions of webhook delivery: which endpoints get an event, what an attempt's
outcome does to its delivery, the labels counted, and the settings' retry schedule."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pallycon_config.settings import DEFAULT_WEBHOOK_RETRY_SCHEDULE, Settings, parse_delays
from pallycon_store.webhooks import schedule
from pallycon_store.webhooks.endpoints import Disabled, Endpoint, SealedSecret
from pallycon_store.webhooks.outcome import Outcome, Verdict, classify, no_response
from pallycon_store.webhooks.rules import (
    LAG_BUCKETS,
    LOST,
    AttemptKind,
    Settle,
    bucket,
    decide,
    event_time,
    fan_out,
    lost,
    needs_site,
    parse_entry,
    status_kind,
    streak_gap,
    streak_start,
)
from pallycon_worker.webhook_send import attempt_limit
from pallycon_worker.webhooks import lease_of

NOW = 1_800_000_000.0
DAY = 86400.0


def endpoint(
    name: str, events: tuple[str, ...] = ("completed", "failed"), site: str = "", off: bool = False
) -> Endpoint:
    return Endpoint(
        id=f"ep_{name}",
        url=f"https://{name}.example.com/",
        events=frozenset(events),
        site=site,
        allow_private=False,
        created_at=NOW,
        secrets=(SealedSecret("v1:x"),),
        disabled=Disabled("by hand", NOW) if off else None,
    )


def event(kind: str, request_id: str = "r1", version: int = 3) -> dict[str, Any]:
    return {
        "schema": 2,
        "event_id": f"{request_id}:{version}",
        "type": kind,
        "request_id": request_id,
        "ts": "2027-01-15T08:00:00.000+00:00",
    }


SITES = {"r1": "TUTO", "r2": "OTHER"}


@pytest.mark.parametrize(
    ("events", "endpoints", "expected"),
    [
        # Types: each endpoint gets the types it names.
        ([event("completed")], [endpoint("a"), endpoint("b", ("failed",))], ["ep_a"]),
        ([event("progress")], [endpoint("a")], []),
        # A disabled endpoint gets nothing.
        ([event("completed")], [endpoint("a", off=True), endpoint("b")], ["ep_b"]),
        # A site: only its requests'.
        (
            [event("completed", "r1"), event("completed", "r2")],
            [endpoint("t", site="TUTO")],
            ["ep_t"],
        ),
        # A rejected event has no site of its own: only endpoints of every site get it.
        (
            [event("rejected", "r1")],
            [endpoint("t", ("rejected",), site="TUTO"), endpoint("all", ("rejected",))],
            ["ep_all"],
        ),
        # Two endpoints, two events: one delivery per pair, in the events' order.
        (
            [event("completed", "r1"), event("failed", "r2")],
            [endpoint("a"), endpoint("b")],
            ["ep_a", "ep_b", "ep_a", "ep_b"],
        ),
    ],
)
def test_fan_out_matches_types_sites_and_state(
    events: list[dict[str, Any]], endpoints: list[Endpoint], expected: list[str]
):
    def site_of(e: Any) -> str:
        return "" if e["type"] == "rejected" else SITES[e["request_id"]]

    found = fan_out(events, endpoints, site_of, NOW)
    assert [d.endpoint_id for d in found] == expected


def test_a_delivery_carries_the_event_in_its_envelope_and_its_ids():
    [d] = fan_out([event("completed")], [endpoint("a")], lambda e: "", NOW)
    assert d.delivery_id == "ep_a/r1:3"
    assert d.webhook_id == "r1:3"
    assert d.event_at == event_time(event("completed"), 0.0)
    body = json.loads(d.body)
    assert body["type"] == "request.completed"
    assert body["data"] == event("completed")


def test_the_site_is_read_only_when_an_endpoint_names_one():
    assert not needs_site([endpoint("a"), endpoint("b", site="TUTO", off=True)])
    assert needs_site([endpoint("a"), endpoint("b", site="TUTO")])

    def never(e: Any) -> str:
        raise AssertionError("site read")

    assert len(fan_out([event("completed")], [endpoint("a")], never, NOW)) == 1


@pytest.mark.parametrize(
    ("fields", "readable"),
    [
        ({"event": json.dumps(event("completed"))}, True),
        ({"event": "not json"}, False),
        ({"event": "[1]"}, False),
        ({"event": json.dumps({"type": "completed"})}, False),  # no event id
        ({}, False),
    ],
)
def test_an_entry_that_holds_no_event_is_skipped(fields: dict[str, str], readable: bool):
    assert (parse_entry(fields) is not None) is readable


DELAYS = (1.0, 10.0)


GAP = 12 * 3600.0


def decided(
    found: Outcome,
    attempts: int,
    failing_since: float | None = None,
    last_failure: float | None = NOW - 60,
) -> Any:
    return decide(
        found,
        attempts,
        NOW,
        failing_since=failing_since,
        delays=DELAYS,
        disable_after=5 * DAY,
        random=lambda: 0.5,  # no jitter
        last_failure=last_failure,
        gap=GAP,
    )


@pytest.mark.parametrize(
    ("found", "attempts", "failing_since", "settle", "at"),
    [
        (classify(204, None, NOW), 1, None, Settle.DELIVERED, None),
        (classify(200, None, NOW), 3, NOW - 6 * DAY, Settle.DELIVERED, None),  # 2xx wins
        (classify(410, None, NOW), 1, None, Settle.DISABLE, None),
        (classify(500, None, NOW), 1, None, Settle.RETRY, NOW + 1),
        (classify(302, None, NOW), 2, None, Settle.RETRY, NOW + 10),  # redirects: failures
        (classify(429, "30", NOW), 1, None, Settle.RETRY, NOW + 30),  # Retry-After: a floor
        (classify(503, "0", NOW), 2, None, Settle.RETRY, NOW + 10),  # ... never shorter
        (no_response("timeout"), 3, None, Settle.DEAD, None),  # the schedule ran out
        (classify(500, None, NOW), 1, NOW - 5 * DAY, Settle.DISABLE, None),  # failing for days
        (classify(500, None, NOW), 1, NOW - 4 * DAY, Settle.RETRY, NOW + 1),
    ],
)
def test_what_an_attempt_does_to_its_delivery(
    found: Outcome, attempts: int, failing_since: float | None, settle: Settle, at: float | None
):
    decision = decided(found, attempts, failing_since)
    assert decision.settle is settle
    assert decision.at == at


@pytest.mark.parametrize(
    ("failing_since", "last_failure", "settle", "streak"),
    [
        # Failing for 5 days, the last failure recent: one streak, disabled.
        (NOW - 5 * DAY, NOW - 3600, Settle.DISABLE, NOW - 5 * DAY),
        # Quiet then one failure: the last failure older than the gap, a new streak.
        (NOW - 6 * DAY, NOW - 3 * DAY, Settle.RETRY, NOW),
        (NOW - 6 * DAY, NOW - GAP - 1, Settle.RETRY, NOW),
        (NOW - 6 * DAY, NOW - GAP, Settle.DISABLE, NOW - 6 * DAY),  # the gap itself: one streak
        # Never failed (or forgotten: a success, a replay): a new streak.
        (None, None, Settle.RETRY, NOW),
        (NOW - 6 * DAY, None, Settle.RETRY, NOW),
    ],
)
def test_a_failing_streak_ends_with_a_quiet_gap(
    failing_since: float | None, last_failure: float | None, settle: Settle, streak: float
):
    decision = decided(classify(500, None, NOW), 1, failing_since, last_failure)
    assert decision.settle is settle
    assert decision.failing_since == streak


def test_a_streak_gap_outlasts_the_longest_jittered_delay_and_a_lease():
    assert streak_gap((5.0, 36000.0, 60.0), 65.0) == 36000.0 * 1.2 + 65.0
    assert streak_gap((), 65.0) == 65.0
    assert streak_start(NOW - 10, NOW - 1, NOW, 2.0) == NOW - 10
    assert streak_start(NOW - 10, NOW - 3, NOW, 2.0) == NOW


@pytest.mark.parametrize(
    ("attempts", "settle", "at"),
    [
        (1, Settle.RETRY, NOW + 1),
        (2, Settle.RETRY, NOW + 10),
        (3, Settle.DEAD, None),
        (0, Settle.RETRY, NOW + 1),  # counted before attempts were counted at the claim
    ],
)
def test_an_attempt_lost_with_its_worker_is_a_failed_attempt(
    attempts: int, settle: Settle, at: float | None
):
    decision = lost(attempts, NOW, DELAYS, lambda: 0.5)
    assert (decision.settle, decision.at, decision.failing_since) == (settle, at, None)
    assert LOST in decision.reason


def test_the_reasons_name_what_happened():
    assert decided(no_response("no response in 1 s (timeout)"), 3).reason == (
        "3 attempts failed (last: no response in 1 s (timeout))"
    )
    assert "5 days" in decided(classify(500, None, NOW), 1, NOW - 5 * DAY).reason
    assert decided(classify(410, None, NOW), 1).reason.startswith("HTTP 410")


def test_jitter_spreads_each_delay_by_a_fifth():
    low = decide(
        classify(500, None, NOW), 1, NOW, failing_since=None, delays=(100.0,),
        disable_after=DAY, random=lambda: 0.0,
    )  # fmt: skip
    high = decide(
        classify(500, None, NOW), 1, NOW, failing_since=None, delays=(100.0,),
        disable_after=DAY, random=lambda: 0.999999,
    )  # fmt: skip
    assert low.at == NOW + 80
    assert high.at is not None
    assert NOW + 119 < high.at <= NOW + 120


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, AttemptKind.HTTP_2XX),
        (299, AttemptKind.HTTP_2XX),
        (301, AttemptKind.HTTP_3XX),
        (404, AttemptKind.HTTP_4XX),
        (410, AttemptKind.HTTP_410),
        (429, AttemptKind.HTTP_429),
        (500, AttemptKind.HTTP_5XX),
        (100, AttemptKind.HTTP_5XX),  # anything else: counted with the server errors
    ],
)
def test_statuses_are_counted_under_bounded_labels(status: int, kind: AttemptKind):
    assert status_kind(status) is kind


@pytest.mark.parametrize(
    ("seconds", "label"), [(0.0, "0.01"), (0.1, "0.1"), (0.11, "0.25"), (1e9, "+Inf")]
)
def test_buckets_are_upper_bounds(seconds: float, label: str):
    assert bucket(seconds, LAG_BUCKETS) == label


def test_the_default_schedule_is_the_specifications():
    assert parse_delays(DEFAULT_WEBHOOK_RETRY_SCHEDULE) == schedule.DELAYS
    assert Settings(_env_file=None).webhook_delays == schedule.DELAYS


@pytest.mark.parametrize(
    ("text", "delays"),
    [("1, 2.5 ,10", (1.0, 2.5, 10.0)), ("", ()), ("0", (0.0,)), ("5,", (5.0,))],
)
def test_a_retry_schedule_is_read(text: str, delays: tuple[float, ...]):
    assert parse_delays(text) == delays


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("5,soon", "'soon' is not a number of seconds"),
        ("-1", "a delay is 0 to 2592000 seconds"),
        ("nan", "a delay is 0 to 2592000 seconds"),
        ("9999999", "a delay is 0 to 2592000 seconds"),
        (",".join(["1"] * 51), "at most 50 delays"),
    ],
)
def test_a_bad_retry_schedule_is_named(text: str, says: str):
    with pytest.raises(ValueError, match=says):
        parse_delays(text)


def test_a_lease_outlasts_an_attempt_and_its_settle():
    for timeout in (0.5, 15.0, 30.0):
        assert attempt_limit(timeout) >= 2 * timeout  # two connects, or a connect and a read
        assert lease_of(timeout) >= 2 * attempt_limit(timeout) + 5


def test_a_verdict_of_each_kind_is_decided():
    """Every verdict the outcome module gives has a decision (none falls through)."""
    for verdict in Verdict:
        found = Outcome(verdict, "x")
        assert decided(found, 1).settle in set(Settle)
