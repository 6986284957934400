"""The Grafana dashboard and the Prometheus alert rules under deploy/, through our checks of
them (:func:`support.deployment.dashboard_problems`, :func:`~support.deployment.rules_problems`):
the real files have no problem, and a copy broken in each way is refused naming the problem
and where it is. Whether the metrics they read are exposed is checked against the real
exposition in tests/integration/test_operate.py; here against the names the real files read."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from support.deployment import (
    DASHBOARD,
    RULES,
    dashboard_metrics,
    dashboard_problems,
    rule_metrics,
    rules_problems,
    selectors,
)

REAL_DASHBOARD: dict[str, Any] = json.loads(DASHBOARD.read_text())
REAL_RULES: dict[str, Any] = yaml.safe_load(RULES.read_text())
#: The names the real files read (each checked against the exporter in test_operate.py).
EXPOSED = dashboard_metrics() | rule_metrics()

Change = Callable[[dict[str, Any]], object]


def test_the_real_dashboard_and_rules_have_no_problem():
    """The files as shipped pass every check, and hold the panels and alerts operators use."""
    assert dashboard_problems(REAL_DASHBOARD, EXPOSED) == []
    assert rules_problems(REAL_RULES, EXPOSED) == []
    assert REAL_DASHBOARD["uid"] == "pallycon-pack"
    assert len(REAL_DASHBOARD["panels"]) >= 10
    assert "pallycon_pack_api_call_duration_seconds_bucket" in dashboard_metrics()
    names = {rule["alert"] for group in REAL_RULES["groups"] for rule in group["rules"]}
    wanted = {"StuckRequests", "OverduePolls", "HighFailureRate", "ApiErrors", "NoWorkers"}
    assert {f"PallyconPack{name}" for name in wanted} <= names
    assert "PallyconPackExporterDown" in names


def test_no_alert_pages_on_requests_waiting_their_turn():
    """Flow control makes due submissions wait for their site's rate, cap or pause: no rule
    reads the submit schedule (a backfill would page for hours), and the one on a stalled
    site fires only when nothing is in flight, dispatched or paused there."""
    for rule in REAL_RULES["groups"][0]["rules"]:
        for name, exact in selectors(rule["expr"]):
            assert not (name.startswith("pallycon_pack_schedule_") and "schedule" not in exact), (
                rule["alert"]
            )
            assert exact.get("schedule") != "submit", rule["alert"]
    stalled = _named("PallyconPackSubmitStalled")
    assert {name for name, _ in selectors(stalled["expr"])} == {
        "pallycon_pack_waiting", "pallycon_pack_in_flight", "pallycon_pack_dispatched",
        "pallycon_pack_paused",
    }  # fmt: skip
    assert "backfill" in stalled["annotations"]["description"]


def test_a_site_paused_for_over_an_hour_alerts():
    """A pause held over an hour (for a few minutes) warns, naming the site."""
    paused = _named("PallyconPackSitePaused")
    assert paused["expr"].replace(" ", "") == "pallycon_pack_paused_seconds>3600"
    assert paused["for"] == "5m"
    assert paused["labels"]["severity"] == "warning"
    assert "{{ $labels.site }}" in paused["annotations"]["summary"]


def test_webhook_alerts_name_the_endpoint_by_id():
    """An endpoint disabled, failing for an hour, deliveries over 15 minutes old, a dead-letter
    list that grew: each alert reads a per-endpoint series and names the endpoint (its id,
    never its URL, which no metric carries)."""
    wanted = {
        "PallyconPackWebhookEndpointDisabled": "pallycon_pack_webhook_endpoint_disabled==1",
        "PallyconPackWebhookEndpointFailing": "pallycon_pack_webhook_failing_seconds>3600",
        "PallyconPackWebhookDeliveriesLagging": (
            "pallycon_pack_webhook_oldest_pending_age_seconds>900"
        ),
        "PallyconPackWebhookDeadLettersGrowing": (
            "delta(pallycon_pack_webhook_dead_letters[30m])>0"
        ),
    }
    for alert, expr in wanted.items():
        rule = _named(alert)
        assert rule["expr"].replace(" ", "") == expr, alert
        assert "{{ $labels.endpoint }}" in rule["annotations"]["summary"], alert
        assert "pallycon-pack" in rule["annotations"]["description"], alert  # what to run


def _named(alert: str) -> dict[str, Any]:
    [rule] = [r for g in REAL_RULES["groups"] for r in g["rules"] if r["alert"] == alert]
    return rule  # type: ignore[no-any-return]


def _target(dashboard: dict[str, Any]) -> dict[str, Any]:
    return dashboard["panels"][0]["targets"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: _target(d).update(expr="sum(rate(pallycon_pack_up[5m])"), "does not parse"),
        (lambda d: _target(d).update(expr="pallycon_pack_nope_total"),
         "pallycon_pack_nope_total is not exposed"),
        (lambda d: d["panels"][1].update(id=d["panels"][0]["id"]), "duplicate panel id"),
        (lambda d: d["panels"][0].update(targets=[]), "no query"),
        (lambda d: d["panels"][0].update(datasource={"uid": "prometheus"}),
         "datasource is not ${datasource}"),
    ],
)  # fmt: skip
def test_a_broken_dashboard_is_named(change: Change, problem: str):
    """Each way a copy of the real dashboard is broken: one problem, naming the panel."""
    dashboard = copy.deepcopy(REAL_DASHBOARD)
    change(dashboard)
    found = dashboard_problems(dashboard, EXPOSED)
    changed = dashboard["panels"][1 if problem == "duplicate panel id" else 0]["title"]
    assert len(found) == 1, found
    assert found[0].startswith(f"panel {changed!r}: {problem}"), found


def _rule(loaded: dict[str, Any], n: int = 0) -> dict[str, Any]:
    return loaded["groups"][0]["rules"][n]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: _rule(r)["labels"].pop("severity"), "severity None is not one of"),
        (lambda r: _rule(r)["labels"].update(severity="page"), "severity 'page' is not one of"),
        (lambda r: _rule(r, 1).update(alert=_rule(r)["alert"]), "alert named twice"),
        (lambda r: _rule(r).update(alert="Pallycon Pack"), "not a valid alert name"),
        (lambda r: _rule(r).update(expr="pallycon_pack_up =="), "does not parse"),
        (lambda r: _rule(r).update(expr="pallycon_pack_nope == 0"), "pallycon_pack_nope is not exposed"),
        (lambda r: _rule(r).update({"for": "5 minutes"}), "for '5 minutes' is not a duration"),
        (lambda r: _rule(r)["annotations"].pop("summary"), "no summary"),
        (lambda r: _rule(r).update(severity="critical"), "unknown fields ['severity']"),
    ],
)  # fmt: skip
def test_broken_alert_rules_are_named(change: Change, problem: str):
    """Each way a copy of the real rules is broken: one problem, naming the alert."""
    loaded = copy.deepcopy(REAL_RULES)
    change(loaded)
    found = rules_problems(loaded, EXPOSED)
    changed = _rule(loaded, 1 if problem == "alert named twice" else 0)["alert"]
    assert len(found) == 1, found
    assert found[0].startswith(f"alert {changed!r}: {problem}"), found


def test_a_rules_file_without_groups_is_refused():
    """Prometheus loads only ``groups`` at the top of a rules file."""
    assert rules_problems({"rules": []}) == ["top level: ['rules'] instead of ['groups']"]
