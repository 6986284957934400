"""The pure parts of health, stats and the exporter: verdicts as a table, bounded labels, the
histogram kept in Redis as counts, heartbeats that cannot be read."""

from __future__ import annotations

import dataclasses
import json

import click
import pytest

from pallycon_pack.cli.fleet.commands import parse_checks
from pallycon_pack.cli.fleet.run import render_stats, result_consumer_lines, sampled
from pallycon_pack.health import REACHABLE, Thresholds, judge, online_replicas, redis_verdict
from pallycon_pack.web.exporter import api_metrics, event_type
from pallycon_producers.api import over_limit, parked_fields
from pallycon_store import heartbeats
from pallycon_store.api_calls import ApiCalls, CallStats, bucket_of, outcome_code
from pallycon_store.fleet import Intake, Schedule, Snapshot
from pallycon_store.flow import FlowSnapshot, Pause
from pallycon_store.heartbeats import Heartbeat

NOW = 1_000_000.0


def snapshot(
    beats: list[Heartbeat] | None = None,
    poll_due: float | None = None,
    intake: Intake | None = None,
) -> Snapshot:
    return Snapshot(
        now=NOW,
        queues={"submit": 0, "poll": 0},
        schedules={
            "submit": Schedule(0, 0, None),
            "poll": Schedule(5, 1 if poll_due else 0, poll_due),
        },
        intake=intake or Intake(0, 0, 0, group=True),
        heartbeats=beats or [],
    )


def test_paused_sites_and_waiting_requests_are_said_but_not_unhealthy():
    """A backlog waiting for its turn and paused sites are named in the schedules line; the
    check stays healthy (only late polls fail it); the default site is named by its id."""
    flow = FlowSnapshot(
        NOW, {}, {}, {}, {"": Pause("", "maintenance", NOW - 60), "BRND": Pause("BRND", "", NOW)}
    )
    fleet = dataclasses.replace(snapshot(), schedules={
        "submit": Schedule(5000, 5000, NOW - 3600), "poll": Schedule(0, 0, None)}, flow=flow)  # fmt: skip
    check = judge("schedules", fleet, Thresholds(default_site="TUTO"))
    assert check.ok
    assert "5000 waiting to be registered" in check.detail
    assert "paused: TUTO, BRND" in check.detail


def beat(
    node: str = "w1", loop: str = "sweeper", age: float = 1, failing: bool = False, error: str = ""
) -> Heartbeat:
    return Heartbeat(node, loop, age, failing, error, 0)


NO_KEY = "ConfigError: PALLYCON_WEBHOOK_KEY is not set: this worker sends no webhooks"


@pytest.mark.parametrize(
    ("check", "fleet", "ok", "says"),
    [
        ("workers", snapshot([beat()]), True, "1 worker answering"),
        (
            "workers",
            snapshot([beat(), beat("w2", age=99)]),
            True,
            "1 worker answering; unhealthy: w2/sweeper (no good round for 99s)",
        ),
        (
            "workers",
            snapshot([beat(), beat(loop="webhooks", age=9e9, failing=True, error=NO_KEY)]),
            True,
            f"1 worker answering; unhealthy: w1/webhooks ({NO_KEY})",
        ),
        (
            "workers",
            snapshot([beat(), beat(loop="webhooks", failing=True, error="x\n" * 200)]),
            True,
            f"unhealthy: w1/webhooks ({'x ' * 98}x...)",
        ),
        ("workers", snapshot([beat(age=31)]), False, "newest heartbeat 31s old"),
        ("workers", snapshot([beat(failing=True)]), False, "no worker answering (0 of 1 loops)"),
        ("workers", snapshot([]), False, "no worker answering (0 of 0 loops)"),
        ("schedules", snapshot(), True, "0 overdue"),
        ("schedules", snapshot(poll_due=NOW - 299), True, "poll 299s late"),
        ("schedules", snapshot(poll_due=NOW - 301), False, "poll 301s late (limit 300s)"),
        ("intake", snapshot(intake=Intake(10_000, 1, 9_999, group=True)), True, "10000 not"),
        ("intake", snapshot(intake=Intake(10_001, 0, 10_001, group=True)), False, "10001 not"),
    ],
)
def test_verdicts(check: str, fleet: Snapshot, ok: bool, says: str):
    verdict = judge(check, fleet, Thresholds())
    assert verdict.ok is ok
    assert says in verdict.detail
    assert verdict.line().startswith(f"{check:<9} {'ok' if ok else 'FAIL'}")


@pytest.mark.parametrize(
    ("aof", "replicas", "wait", "fsync_ms", "ok", "says"),
    [
        (True, 0, 0, 2000, True, "AOF on, 0 replicas"),
        (True, 2, 1, 2000, True, "AOF on, 2 replicas"),
        (True, 1, 2, 2000, False, "1 replica online and PALLYCON_REDIS_WAIT_REPLICAS=2"),
        (True, 0, 1, 2000, False, "acknowledgements time out"),
        (False, 2, 1, 2000, False, "AOF is off"),
        (False, 2, 1, 0, True, "AOF off (PALLYCON_REDIS_FSYNC_WAIT_MS=0), 2 replicas"),
        (False, 0, 1, 0, False, "0 replicas online"),
    ],
)
def test_redis_verdicts(aof, replicas, wait, fsync_ms, ok, says):
    check = redis_verdict(aof, replicas, wait, fsync_ms)
    assert (check.name, check.ok) == ("redis", ok)
    assert says in check.detail
    assert check.detail.startswith(REACHABLE)  # Redis answered: the other checks still run


def test_only_online_replicas_count():
    replication = {
        "role": "master",
        "connected_slaves": 3,
        "slave0": {"ip": "10.0.0.2", "port": 6379, "state": "online", "offset": 9, "lag": 0},
        "slave1": {"ip": "10.0.0.3", "port": 6379, "state": "wait_bgsave", "offset": 0},
        "slave2": {"ip": "10.0.0.4", "port": 6379, "state": "send_bulk", "offset": 0},
        "slave_expiry_tracking": "yes",  # not a replica
    }
    assert online_replicas(replication) == 1


def test_thresholds_are_the_options():
    assert judge("workers", snapshot([beat(age=31)]), Thresholds(worker_stale=60)).ok
    assert not judge("schedules", snapshot(poll_due=NOW - 11), Thresholds(max_schedule_lag=10)).ok


def test_checks_are_named_and_unknown_ones_refused():
    assert parse_checks("redis, workers,redis") == ["redis", "workers"]
    for bad in ("disk", "", ","):
        with pytest.raises(click.BadParameter):
            parse_checks(bad)


def test_outcome_codes_and_labels_stay_bounded():
    assert [outcome_code(c) for c in ("0000", "A1002", "http_429", "timeout")] == [
        "0000", "A1002", "http_429", "timeout",
    ]  # fmt: skip
    # A closed set: the guide's codes only (a job's packaging error is no call's outcome)
    others = ("x" * 10_000, "A1", "0000 ", "<script>", "", "A9999", "WM900013", "Z123456")
    assert {outcome_code(c) for c in others} == {"other"}
    stats = CallStats()
    stats.record("DELETE", "../../etc", "zzz", 0.2)
    stats.record("POST", "pack", "0000", 31)
    assert dict(stats.drain()) == {
        "api result other other other": 1,
        "api latency other other 0.25": 1,
        "api latency other other sum ms": 200,
        "api result POST pack 0000": 1,
        "api latency POST pack +Inf": 1,
        "api latency POST pack sum ms": 31_000,
    }
    assert stats.drain() == []
    assert [bucket_of(s) for s in (0, 0.005, 0.0051, 1, 29.9, 30.1)] == [
        "0.005", "0.005", "0.01", "1", "30", "+Inf",
    ]  # fmt: skip


def test_the_histogram_is_cumulative_and_garbage_fields_are_bounded():
    raw = {
        "api result GET pack 0000": 5,
        "api result GET pack A1002": 1,
        "api result GET pack " + "Z" * 500: 2,
        "api latency GET pack 0.01": 4,
        "api latency GET pack 1": 1,
        "api latency GET pack +Inf": 1,
        "api latency GET pack sum ms": 1500,
        "api latency GET pack nonsense": 7,
        "rate limit waits": 2,
    }
    families = {family.name: family for family in api_metrics(ApiCalls.parse(raw))}
    calls = {tuple(s.labels.values()): s.value for s in families["pallycon_pack_api_calls"].samples}
    assert calls == {
        ("pack", "GET", "0000"): 5,
        ("pack", "GET", "A1002"): 1,
        ("pack", "GET", "other"): 2,
    }
    histogram = families["pallycon_pack_api_call_duration_seconds"].samples
    buckets = {s.labels["le"]: s.value for s in histogram if s.name.endswith("_bucket")}
    assert buckets["0.005"] == 0
    assert buckets["0.01"] == 4
    assert buckets["0.5"] == 4
    assert buckets["1.0"] == 5
    assert buckets["30.0"] == 5
    assert buckets["+Inf"] == 6
    count = next(s.value for s in histogram if s.name.endswith("_count"))
    total = next(s.value for s in histogram if s.name.endswith("_sum"))
    assert (count, total) == (6, 1.5)
    assert families["pallycon_pack_rate_limit_waits"].samples[0].value == 2


def test_event_types_and_heartbeats_that_cannot_be_read():
    assert event_type(json.dumps({"type": "completed"})) == "completed"
    assert {event_type(t) for t in ("", "[]", "{", json.dumps({"type": "x" * 999}))} == {"other"}
    raw = {
        "w1/sweeper": json.dumps(
            {"node": "w1", "loop": "sweeper", "ok_at": NOW - 3, "failing": False}
        ),
        "w1/intake": "not json",
        "w2/sweeper": json.dumps({"node": "w2", "loop": "sweeper", "ok_at": NOW - 7200}),
        "w3/intake": json.dumps({"ok_at": "soon"}),
        "w4/intake": json.dumps([1, 2]),
    }
    beats = heartbeats.parse(raw, NOW)
    assert [(b.node, b.loop, b.age) for b in beats] == [("w1", "sweeper", 3)]


@pytest.mark.parametrize(
    ("chunks", "code"),
    [
        ([b'{"error_code": "0000", "data": [{"error_code": "WM900013"}]}'], "0000"),
        ([b'{"error_code": 0, "job_id": 7}'], "0000"),  # a number, as the guide's sample has it
        ([b'{"error', b'_code": "A1002", "error_message": "x"}'], "A1002"),  # split mid-key
        ([b'{"total_count": 1, "data": [' + b"7," * 5000, b'7], "error_code": "0000"}'], "0000"),
        ([b'{"data": [' + b"7," * 5000, b"7],", b' "error_code": "A1006"', b"}"], "A1006"),
        ([b"<html>gateway</html>"], "other"),
    ],
)
def test_an_answers_code_is_read_from_its_stream_however_it_is_cut(chunks, code):
    """The streamed body (as httpx gives a real answer), cut anywhere: its top-level code."""
    import httpx

    from pallycon_worker.ratelimit import _Measured

    class Chunks(httpx.SyncByteStream):
        def __iter__(self):
            yield from chunks

    stats = CallStats()
    measured = _Measured(Chunks(), stats, "POST", "pack", 0.0)
    assert b"".join(measured) == b"".join(chunks)
    measured.close()
    counted = [name for name, _ in stats.drain() if name.startswith("api result")]
    assert counted == [f"api result POST pack {outcome_code(code)}"]


def test_stats_breaks_requests_down_by_site_only_with_several():
    report = {
        "requests": {"accepted": 3, "failed": 1},
        "submitted_by_stage": {},
        "failed_by_stage": {},
        "failed_by_code": {},
        "failed_window_seconds": 86400,
        "queues": {"submit": 0, "poll": 0},
        "schedules": {"submit": {"depth": 0, "overdue": 0, "lag_seconds": 0.0}},
        "intake": {},
        "longest_in_state": None,
        "api_calls": {"by_code": {}, "rate_limit_waits": 0, "rate_limit_wait_ms": 0},
        "counters": {},
        "heartbeats": [],
        "result_parked": {},
        "webhooks": {"endpoints": [], "attempts": {"2xx": 0}, "delivered": 0},
    }
    one = render_stats(report)
    assert one[0] == "requests        accepted=3  failed=1"
    assert one[1].startswith("submitted stage")
    by_site = {"TUTO": {"accepted": 1, "failed": 1}, "BRND": {"accepted": 2, "failed": 0}}
    several = render_stats({**report, "requests_by_site": by_site})
    assert several[1:3] == [
        "  site TUTO      accepted=1  failed=1",
        "  site BRND      accepted=2  failed=0",
    ]
    assert several[3:] == one[1:]
    assert one[-1].startswith("result parked")  # no endpoint, nothing delivered: no webhooks


@pytest.mark.parametrize(
    ("by_stage", "submitted", "label"),
    [
        ({}, 0, ""),
        ({"registered": 3, "watermark": 2}, 5, ""),
        ({"registered": 1000}, 4315, "  (the newest 1000 of 4315 submitted)"),
        # Counted after the sample was read: more in it than in the count is no sample.
        ({"registered": 6}, 5, ""),
    ],
)
def test_the_stage_breakdown_says_when_it_is_a_sample(
    by_stage: dict[str, int], submitted: int, label: str
):
    """stats reads the stages of the newest 1000 submitted requests: with more submitted, its
    line says how many of how many it counted."""
    assert sampled(by_stage, submitted) == label


@pytest.mark.parametrize(
    ("parked", "line"),
    [
        ({}, "result parked   no groups"),
        ({"billing": 0, "cms": 2}, "result parked   billing=0  cms=2"),
    ],
)
def test_stats_ends_with_the_events_each_result_group_parked(parked: dict[str, int], line: str):
    """The last line of ``stats`` counts each result consumer group's parked events."""
    assert result_consumer_lines({"result_parked": parked}) == [line]


@pytest.mark.parametrize(("deliveries", "parks"), [(1, False), (5, False), (6, True)])
def test_a_result_event_is_parked_once_delivered_more_than_the_limit(deliveries: int, parks: bool):
    """With max_deliveries 5, the sixth delivery of an event parks it instead."""
    assert over_limit(deliveries, 5) is parks
    if parks:
        fields = parked_fields("1-0", '{"n": 1}', "c1", deliveries, 5)
        assert fields == {
            "event": '{"n": 1}',
            "entry_id": "1-0",
            "consumer": "c1",
            "deliveries": 6,
            "reason": "delivered 6 times without being acknowledged (more than max_deliveries=5)",
        }


def test_stats_says_submissions_wait_their_turn_and_polls_are_late():
    """In `stats`, due submissions are waiting their turn (a site's rate, cap or pause), not
    late; overdue polls are late."""
    from pallycon_pack.cli.fleet.run import _schedule

    waiting = {"depth": 3, "overdue": 3, "lag_seconds": 7.0}
    assert _schedule("submit", waiting) == "submit=3 (3 waiting their turn)"
    assert _schedule("poll", waiting) == "poll=3 (3 overdue, 7s late)"
