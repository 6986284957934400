"""The webhook endpoints' health as stats, the console and the exporter show it, from an
overview built by hand (the pure parts; the real reads: tests/integration/test_webhook_health.py)."""

from __future__ import annotations

import pytest
from prometheus_client.core import Metric

from pallycon_pack.present.webhook_health import ago, endpoint_line, health_lines, health_report
from pallycon_pack.web.webhook_metrics import webhook_metrics
from pallycon_store import heartbeats
from pallycon_store.heartbeats import Heartbeat
from pallycon_store.webhooks import rules
from pallycon_store.webhooks.deliveries import (
    DeliveryCounters,
    EndpointHealth,
    Histogram,
    WebhookOverview,
)
from pallycon_store.webhooks.endpoints import Disabled

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


def _health(endpoint_id: str, **changes: object) -> EndpointHealth:
    base: dict[str, object] = {
        "endpoint_id": endpoint_id, "url": f"https://{endpoint_id}.example.com/hook",
        "pending": 0, "due_now": 0, "in_flight": 0, "oldest_pending_age": None, "dead": 0,
        "last_success": None, "failing_since": None, "disabled": None,
    }  # fmt: skip
    return EndpointHealth(**{**base, **changes})  # type: ignore[arg-type]


def _counters(**attempts: int) -> DeliveryCounters:
    empty = Histogram({}, 0.0, 0)
    lag = Histogram({"0.05": 2, "0.1": 1, "+Inf": 1}, 7200.2, 4)
    kinds = {k.value: 0 for k in rules.AttemptKind} | attempts
    return DeliveryCounters(kinds, empty, lag, delivered=4, dead=2, disabled=1, replayed=0)


OVERVIEW = WebhookOverview(
    endpoints=[
        _health("ep_good", last_success=NOW - 5),
        _health(
            "ep_slow",
            pending=3,
            due_now=1,
            in_flight=2,
            oldest_pending_age=250.4,
            last_success=NOW - 3600,
            failing_since=NOW - 600,
            dead=1,
            last_outcome="HTTP 503",
        ),
        _health("ep_gone", dead=1, disabled=Disabled("HTTP 410 (Gone) at a delivery", NOW - 60)),
    ],
    counters=_counters(**{"2xx": 4, "5xx": 3, "410": 1}),
    disabled_endpoints=1,
)


def test_stats_lines_name_each_endpoint_its_backlog_and_why_it_fails_or_is_disabled():
    lines = health_lines(health_report(OVERVIEW, NOW))
    assert lines == [
        "webhooks        3 endpoint(s), 1 disabled  delivered=4  dead=2  replayed=0  "
        "attempts 2xx=4  410=1  5xx=3",
        "  ep_good  https://ep_good.example.com/hook  pending=0  dead=0  "
        "last 2xx 2027-01-15 07:59:55 UTC",
        "  ep_slow  https://ep_slow.example.com/hook  pending=3 (due 1, in flight 2, oldest "
        "4m 10s)  dead=1  last 2xx 2027-01-15 07:00:00 UTC  FAILING since 2027-01-15 07:50:00 "
        "UTC (10m 0s; last: HTTP 503)",
        "  ep_gone  https://ep_gone.example.com/hook  pending=0  dead=1  last 2xx never  "
        "DISABLED since 2027-01-15 07:59:00 UTC: HTTP 410 (Gone) at a delivery",
    ]


def test_a_fleet_without_endpoints_shows_no_webhook_lines_but_its_json_says_so():
    empty = WebhookOverview([], _counters())
    report = health_report(empty, NOW)
    assert health_lines(report) == []
    assert report["endpoints"] == []
    assert report["delivered"] == 4  # the counters are there for scripts all the same


def test_the_json_report_of_an_endpoint():
    slow = health_report(OVERVIEW, NOW)["endpoints"][1]
    assert slow == {
        "id": "ep_slow", "url": "https://ep_slow.example.com/hook", "pending": 3,
        "due_now": 1, "in_flight": 2, "oldest_pending_seconds": 250.4, "dead": 1,
        "last_success": "2027-01-15T07:00:00.000+00:00",
        "failing_since": "2027-01-15T07:50:00.000+00:00", "failing_seconds": 600.0,
        "last_outcome": "HTTP 503", "disabled": None,
    }  # fmt: skip
    gone = health_report(OVERVIEW, NOW)["endpoints"][2]
    assert gone["disabled"] == {
        "reason": "HTTP 410 (Gone) at a delivery",
        "at": "2027-01-15T07:59:00.000+00:00",
    }
    assert endpoint_line({**gone, "disabled": {"reason": "", "at": gone["disabled"]["at"]}})


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.6, "1m 0s"), (250, "4m 10s"), (3 * 3600 + 120, "3h 2m"), (90000, "1d 1h")],
)
def test_ages(seconds: float, text: str):
    assert ago(seconds) == text


def _families() -> dict[str, Metric]:
    return {m.name: m for m in webhook_metrics(OVERVIEW, NOW)}


def _samples(metric: Metric) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in metric.samples}


def test_metrics_per_endpoint_by_id_never_by_url():
    families = _families()
    for name in (
        "pending", "in_flight", "oldest_pending_age_seconds", "dead_letters", "failing_seconds",
        "endpoint_disabled",
    ):  # fmt: skip
        samples = _samples(families[f"pallycon_pack_webhook_{name}"])
        assert {labels for _, labels in samples} == {
            (("endpoint", e),) for e in ("ep_good", "ep_slow", "ep_gone")
        }, name
    slow = (("endpoint", "ep_slow"),)
    pick = {name: _samples(families[f"pallycon_pack_webhook_{name}"]) for name in (
        "pending", "in_flight", "oldest_pending_age_seconds", "failing_seconds",
        "endpoint_disabled",
    )}  # fmt: skip
    assert pick["pending"][("pallycon_pack_webhook_pending", slow)] == 3
    assert pick["in_flight"][("pallycon_pack_webhook_in_flight", slow)] == 2
    assert (
        pick["oldest_pending_age_seconds"][
            ("pallycon_pack_webhook_oldest_pending_age_seconds", (("endpoint", "ep_good"),))
        ]
        == 0
    )  # none pending
    assert pick["failing_seconds"][("pallycon_pack_webhook_failing_seconds", slow)] == 600
    disabled = pick["endpoint_disabled"]
    assert disabled[("pallycon_pack_webhook_endpoint_disabled", (("endpoint", "ep_gone"),))] == 1
    assert disabled[("pallycon_pack_webhook_endpoint_disabled", slow)] == 0
    endpoints = _samples(families["pallycon_pack_webhook_endpoints"])
    assert endpoints == {
        ("pallycon_pack_webhook_endpoints", (("state", "enabled"),)): 2,
        ("pallycon_pack_webhook_endpoints", (("state", "disabled"),)): 1,
    }


def test_counters_and_histograms():
    families = _families()
    attempts = _samples(families["pallycon_pack_webhook_attempts"])
    assert len(attempts) == len(rules.AttemptKind)  # every outcome, zero or not
    assert attempts[("pallycon_pack_webhook_attempts_total", (("outcome", "5xx"),))] == 3
    lag = _samples(families["pallycon_pack_webhook_delivery_lag_seconds"])
    bucket = "pallycon_pack_webhook_delivery_lag_seconds_bucket"
    assert lag[(bucket, (("le", "0.01"),))] == 0
    assert lag[(bucket, (("le", "0.05"),))] == 2  # cumulative
    assert lag[(bucket, (("le", "0.1"),))] == 3
    assert lag[(bucket, (("le", "86400.0"),))] == 3
    assert lag[(bucket, (("le", "+Inf"),))] == 4
    assert lag[("pallycon_pack_webhook_delivery_lag_seconds_count", ())] == 4
    assert lag[("pallycon_pack_webhook_delivery_lag_seconds_sum", ())] == 7200.2
    for name, value in (("delivered", 4), ("dead_lettered", 2), ("endpoints_disabled", 1)):
        family = _samples(families[f"pallycon_pack_webhook_{name}"])
        assert family == {(f"pallycon_pack_webhook_{name}_total", ()): value}


def _beat(loop: str = "webhooks", signs: bool = True, heard: float = 1.0) -> Heartbeat:
    return Heartbeat("w@h", loop, 9e9, not signs, "", 0, heard=heard, signs=signs)


@pytest.mark.parametrize(
    ("beats", "none"),
    [
        ([], False),  # no worker heard from: perhaps not started yet
        ([_beat(signs=False)], True),
        ([_beat(signs=False), _beat(signs=True)], False),  # one worker can send
        ([_beat(signs=False), _beat(signs=True, heard=heartbeats.HEARD_WITHIN + 1)], True),
        ([_beat(signs=False, heard=heartbeats.HEARD_WITHIN + 1)], False),  # gone: not alive
        ([_beat("sweeper", signs=False)], False),  # another loop says nothing of webhooks
    ],
)
def test_no_sender_when_every_live_worker_lacks_the_key(beats: list[Heartbeat], none: bool):
    assert rules.no_sender(beats) is none
