"""One reader per Redis format: the heartbeats the worker writes read back as written, and the
API call statistics give ``stats`` and the exporter the same figures from the same hash."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from pallycon_pack.web.exporter import api_metrics
from pallycon_store import heartbeats
from pallycon_store.api_calls import ApiCalls, CallStats
from pallycon_store.keys import Keys
from pallycon_worker.loops import LoopHealth

NOW = 1_000_000.0


class _Hash:
    """The two hash commands a LoopHealth uses, kept in a dict (the writer's output, as is)."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}

    def hset(self, key: str, field: str, value: str) -> None:
        self.fields[field] = value

    def hdel(self, key: str, field: str) -> None:
        self.fields.pop(field, None)


def test_the_writers_heartbeats_read_back_as_written():
    """What LoopHealth writes (a good round, a failure with a restart) is what the reader
    shows: node, loop, age, failing, error and restarts; a loop stopped is gone."""
    store = _Hash()
    clock = iter([NOW - 4, NOW - 4, NOW - 2, NOW - 2])
    health = LoopHealth(store, Keys("pp"), "w1@host", clock=lambda: next(clock))  # type: ignore[arg-type]
    health.ok("sweeper")
    health.failed("intake", RuntimeError("broken\nstream"), restarted=True)
    assert set(store.fields) == {heartbeats.field("w1@host", "sweeper"), "w1@host/intake"}
    beats = heartbeats.parse(store.fields, NOW)
    assert [(b.node, b.loop, b.age, b.failing, b.error, b.restarts) for b in beats] == [
        ("w1@host", "intake", NOW, True, "RuntimeError: broken stream", 1),
        ("w1@host", "sweeper", 4.0, False, "", 0),
    ]
    assert [b.healthy() for b in beats] == [False, True]
    assert not beats[1].healthy(stale_after=3)
    health.forget("sweeper")
    assert [b.loop for b in heartbeats.parse(store.fields, NOW)] == ["intake"]


def _stored(ok_at: float, error_at: float = 0.0) -> str:
    return heartbeats.encode({"node": "w", "loop": "l", "ok_at": ok_at, "error_at": error_at})


@pytest.mark.parametrize(
    ("value", "gone"),
    [
        (_stored(NOW - 10), False),
        (_stored(NOW - heartbeats.GONE_AFTER), False),  # exactly the limit: kept
        (_stored(NOW - heartbeats.GONE_AFTER - 1), True),
        (_stored(NOW - 2 * heartbeats.GONE_AFTER, error_at=NOW - 60), False),  # failing lately
        (_stored(0.0), True),  # never a good round, no error: long gone
        ("not json", False),  # not ours to drop: no writer of this version made it
        (json.dumps([1, 2]), False),
    ],
)
def test_a_heartbeat_is_gone_when_not_written_for_an_hour(value: str, gone: bool):
    """What the sweepers drop: heartbeats written more than GONE_AFTER ago, which the
    reader no longer shows either."""
    assert heartbeats.gone({"w/l": value}, NOW) == (["w/l"] if gone else [])
    if gone:
        assert heartbeats.parse({"w/l": value}, NOW) == []


#: A hash as a careless or hostile writer may leave it, beside the worker's own fields.
HOSTILE: dict[str, Any] = {
    "api result POST pack 0000": "7",
    "api result POST pack A1002": "2",
    "api result POST pack " + "Z" * 300: "3",  # an unknown code: other
    "api result POST pack <script>": "1",  # ... added to the same "other"
    "api result DELETE ../etc 0000": "4",  # unknown method and API: other other
    "api result PATCH /x 0000": "5",  # ... the same labels again: added up
    "api result POST pack": "9",  # too short: skipped
    "api result POST pack 0000 extra": "9",  # too long: skipped
    "api result GET storage 0000": "not a number",  # skipped
    "api result GET storage http_5xx": "2.5",  # skipped
    "api latency POST pack 0.05": "6",
    "api latency POST pack +Inf": "1",
    "api latency POST pack 999": "8",  # no such bucket: skipped
    "api latency POST pack sum ms": "1234",
    "api latency DELETE x sum ms": "100",  # other other
    "api latency PATCH y sum ms": "50",  # other other: added
    "api latency POST pack sum": "1",  # skipped
    "rate limit waits": "3",
    "rate limit wait ms": "bad",  # skipped: 0
    "something else": "1",
    "": "1",
}


def _families(calls: ApiCalls) -> dict[str, Any]:
    return {family.name: family for family in api_metrics(calls)}


def _samples(family: Any, suffix: str = "") -> Iterator[Any]:
    return (s for s in family.samples if s.name.endswith(suffix))


def test_stats_and_the_exporter_show_the_same_figures_of_a_hostile_hash():
    """The one parser skips what is not a count and bounds every label; ``stats``'s table
    and the exporter's families then agree call for call, millisecond for millisecond."""
    calls = ApiCalls.parse(HOSTILE)
    table = calls.as_dict()
    assert table == {
        "by_code": {"0000": 16, "A1002": 2, "other": 4},
        "by_api": {
            "POST pack": {"0000": 7, "A1002": 2, "other": 4},
            "other other": {"0000": 9},
        },
        "total_ms": {"POST pack": 1234, "other other": 150},
        "rate_limit_waits": 3,
        "rate_limit_wait_ms": 0,
    }
    families = _families(calls)
    exported: dict[str, dict[str, float]] = {}
    for sample in families["pallycon_pack_api_calls"].samples:
        labels = sample.labels
        exported.setdefault(f"{labels['method']} {labels['api']}", {})[labels["code"]] = (
            sample.value
        )
    assert exported == table["by_api"]
    histogram = families["pallycon_pack_api_call_duration_seconds"]
    sums = {
        s.labels["method"] + " " + s.labels["api"]: s.value for s in _samples(histogram, "_sum")
    }
    assert sums == {"POST pack": 1.234}  # the histogram of the pairs with durations counted
    assert {k: v / 1000 for k, v in table["total_ms"].items() if k in sums} == sums
    count = next(_samples(histogram, "_count")).value
    assert count == 7
    waits = families["pallycon_pack_rate_limit_waits"].samples[0].value
    waited = families["pallycon_pack_rate_limit_wait_seconds"].samples[0].value
    assert (waits, waited) == (table["rate_limit_waits"], table["rate_limit_wait_ms"] / 1000)


def test_the_writers_counts_parse_to_what_was_recorded():
    """The fields CallStats sends are those the reader groups (no field of the writer is
    skipped)."""
    stats = CallStats()
    stats.record("POST", "pack", "0000", 0.02)
    stats.record("POST", "pack", "0000", 0.3)
    stats.record("GET", "storage", "timeout", None)
    calls = ApiCalls.parse(dict(stats.drain()))
    assert calls.calls == {("POST", "pack", "0000"): 2, ("GET", "storage", "timeout"): 1}
    assert calls.buckets == {("POST", "pack"): {"0.025": 1, "0.5": 1}}
    assert calls.sum_ms == {("POST", "pack"): 320}


def test_the_operations_guide_quotes_the_heartbeat_thresholds():
    """OPERATIONS.md's paragraph on heartbeats gives the figures the code uses."""
    from pathlib import Path

    guide = " ".join((Path(__file__).parents[2] / "docs" / "OPERATIONS.md").read_text().split())
    assert f"written at most every {heartbeats.WRITE_EVERY:g} s" in guide
    assert f"older than {heartbeats.STALE_AFTER:g} s is unhealthy" in guide
    assert heartbeats.GONE_AFTER == 3600
    assert "not heard of for an hour are left out by every reader and dropped" in guide
