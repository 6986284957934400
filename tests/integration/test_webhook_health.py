"""The webhook deliveries' health as an operator reads it: the exporter process scraped over
HTTP, and ``stats`` (text and JSON), over a real Redis whose outbox holds deliveries made,
claimed and settled through the store as the workers do (no worker: each outcome is known,
:func:`support.webhook_outbox.known_outbox`)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pallycon_config import Settings
from pallycon_store.wiring import Store
from support.cli import run_cli
from support.deployment import expr_problems, rules
from support.env import clean_env
from support.processes import start_server
from support.queue import make_settings
from support.redis_server import RedisServer
from support.webhook_outbox import GONE, known_outbox

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs"


@dataclass
class Outbox:
    settings: Settings
    ids: dict[str, str]  # name -> endpoint id
    made_at: float


@pytest.fixture(scope="module")
def outbox(redis_server: RedisServer) -> Outbox:
    settings = make_settings(redis_server.url, "http://127.0.0.1:9")
    now = time.time()
    return Outbox(settings, known_outbox(Store.of(settings), now), now)


@pytest.fixture(scope="module")
def scrape(outbox: Outbox, tmp_path_factory: pytest.TempPathFactory) -> dict[Any, float]:
    """One scrape of an exporter process: (name, sorted labels) -> value (families too)."""
    env = clean_env(outbox.settings.environment())
    server = start_server("metrics", "--port", "0", env=env, cwd=tmp_path_factory.mktemp("m"))
    try:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()
    samples: dict[Any, float] = {}
    for family in text_string_to_metric_families(text):
        samples[family.name] = 1.0
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _at(scrape: dict[Any, float], name: str, **labels: str) -> float:
    return scrape[(f"pallycon_pack_webhook_{name}", tuple(sorted(labels.items())))]


def test_the_exposition_counts_attempts_lag_and_each_endpoints_backlog(
    outbox: Outbox, scrape: dict[Any, float]
):
    """Each figure as the known outbox holds it, per endpoint by id; the alert rules read only
    what is exposed, and OPERATIONS.md's table names exactly the webhook metrics exposed (one
    exporter process for both)."""
    good, down, gone = (outbox.ids[n] for n in ("good", "down", "gone"))
    assert _at(scrape, "attempts_total", outcome="2xx") == 2
    assert _at(scrape, "attempts_total", outcome="5xx") == 1
    assert _at(scrape, "attempts_total", outcome="timeout") == 1
    assert _at(scrape, "attempts_total", outcome="410") == 1
    assert _at(scrape, "attempts_total", outcome="429") == 0
    assert _at(scrape, "attempt_duration_seconds_count") == 4  # the timeout had no response
    assert _at(scrape, "attempt_duration_seconds_bucket", le="0.05") == 3
    assert _at(scrape, "attempt_duration_seconds_bucket", le="0.25") == 3
    assert _at(scrape, "attempt_duration_seconds_bucket", le="0.5") == 4
    assert _at(scrape, "delivery_lag_seconds_count") == 2
    assert _at(scrape, "delivery_lag_seconds_bucket", le="+Inf") == 2
    assert 0.2 <= _at(scrape, "delivery_lag_seconds_sum") < 60
    assert _at(scrape, "delivered_total") == 2
    assert _at(scrape, "dead_lettered_total") == 2  # the one out of attempts; the 410's
    assert _at(scrape, "endpoints_disabled_total") == 1
    assert _at(scrape, "replayed_total") == 0

    assert _at(scrape, "pending", endpoint=good) == 1
    assert _at(scrape, "in_flight", endpoint=good) == 1
    assert _at(scrape, "pending", endpoint=down) == 1
    assert _at(scrape, "in_flight", endpoint=down) == 0
    assert 1200 <= _at(scrape, "oldest_pending_age_seconds", endpoint=down) < 1200 + 60
    assert _at(scrape, "oldest_pending_age_seconds", endpoint=gone) == 0
    assert _at(scrape, "dead_letters", endpoint=down) == 1
    assert _at(scrape, "dead_letters", endpoint=gone) == 1
    assert _at(scrape, "failing_seconds", endpoint=down) > 0
    assert _at(scrape, "failing_seconds", endpoint=good) == 0
    assert _at(scrape, "endpoint_disabled", endpoint=gone) == 1
    assert _at(scrape, "endpoint_disabled", endpoint=good) == 0
    assert _at(scrape, "endpoints", state="disabled") == 1
    assert _at(scrape, "endpoints", state="enabled") == 2
    labelled = {labels for key in scrape if isinstance(key, tuple) for labels in key[1]}
    assert not any("example.com" in value for _, value in labelled)  # ids, never URLs

    # The webhook rules read only what is exposed; the webhook metrics are those
    # OPERATIONS.md's table names.
    exposed = {k[0] if isinstance(k, tuple) else k for k in scrape}
    webhook_rules = [r for r in rules() if "pallycon_pack_webhook_" in r["expr"]]
    assert len(webhook_rules) == 4
    for rule in webhook_rules:
        assert expr_problems(rule["expr"], exposed) == [], rule["alert"]
    families = {k for k in scrape if isinstance(k, str) and k.startswith("pallycon_pack_webhook")}
    table = (DOCS / "OPERATIONS.md").read_text().split("## Metrics and alerts", 1)[1]
    table = table.split("\n## ", 1)[0]
    named = set(re.findall(r"`(pallycon_pack_webhook_[a-z_]+)`", table))
    assert {name.removesuffix("_total") for name in named} == families


def test_stats_shows_each_endpoints_health(outbox: Outbox, tmp_path: Path):
    env = clean_env(outbox.settings.environment())
    result = run_cli("stats", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["webhooks"]
    rows = {row["id"]: row for row in report["endpoints"]}
    assert list(rows) == [outbox.ids[n] for n in ("good", "down", "gone")]  # oldest first
    down = rows[outbox.ids["down"]]
    assert (down["pending"], down["due_now"], down["in_flight"], down["dead"]) == (1, 0, 0, 1)
    assert 1200 <= down["oldest_pending_seconds"] < 1260
    assert down["failing_since"] is not None
    assert down["disabled"] is None
    assert rows[outbox.ids["good"]]["last_success"] is not None
    gone = rows[outbox.ids["gone"]]
    assert gone["disabled"]["reason"] == GONE
    assert report["attempts"]["2xx"] == 2
    assert (report["delivered"], report["dead_lettered"], report["endpoints_disabled"]) == (
        2,
        2,
        1,
    )
    text = run_cli("stats", env=env, cwd=tmp_path).stdout.decode().splitlines()
    start = next(n for n, line in enumerate(text) if line.startswith("webhooks "))
    assert text[start].startswith("webhooks        3 endpoint(s), 1 disabled  delivered=2")
    lines = dict(zip(("good", "down", "gone"), text[start + 1 : start + 4], strict=True))
    assert lines["good"].startswith(f"  {outbox.ids['good']}  https://good.example.com/hook")
    assert "pending=1 (due 0, in flight 1, oldest " in lines["good"]
    assert "FAILING since " in lines["down"]
    assert "oldest 20m" in lines["down"]
    assert lines["gone"].endswith(f": {GONE}")
    assert "DISABLED since " in lines["gone"]


def test_stats_of_a_fleet_without_endpoints_has_no_webhook_lines(
    redis_server: RedisServer, tmp_path: Path
):
    settings = make_settings(redis_server.url, "http://127.0.0.1:9")
    env = clean_env(settings.environment())
    text = run_cli("stats", env=env, cwd=tmp_path).stdout.decode()
    assert "webhook" not in text
    report = json.loads(run_cli("stats", "--json", env=env, cwd=tmp_path).stdout)["webhooks"]
    assert report["endpoints"] == []
