"""The Grafana dashboard and the Prometheus alert rules under deploy/: they parse, their rules
have the structure Prometheus loads, and every PromQL expression parses. Which metric names they
use is checked against the real exposition in tests/integration/test_operate.py."""

from __future__ import annotations

import json
import re

import promql_parser
import yaml

from support.deployment import DASHBOARD, RULES, dashboard_exprs, dashboard_metrics

#: Suffixes Prometheus adds to a histogram's or counter's family name in the exposition.
_DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")


def test_the_dashboard_parses_and_every_query_is_promql():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "pallycon-pack"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
    for expr in dashboard_exprs():
        promql_parser.parse(expr)  # raises ValueError on a syntax error
    assert "pallycon_pack_api_call_duration_seconds_bucket" in dashboard_metrics()


def test_the_alert_rules_have_the_structure_prometheus_loads():
    loaded = yaml.safe_load(RULES.read_text())
    assert set(loaded) == {"groups"}
    names = set()
    for group in loaded["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert isinstance(group["name"], str)
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert rule["alert"] not in names
            names.add(rule["alert"])
            assert _DURATION.match(rule.get("for", "0s"))
            assert rule["labels"]["severity"] in {"critical", "warning"}
            assert {"summary", "description"} <= set(rule["annotations"])
            promql_parser.parse(rule["expr"])
    wanted = {"StuckRequests", "OverduePolls", "HighFailureRate", "ApiErrors", "NoWorkers"}
    assert {f"PallyconPack{name}" for name in wanted} <= names
    assert "PallyconPackExporterDown" in names


def test_a_broken_expression_is_refused():
    try:
        promql_parser.parse("sum(rate(pallycon_pack_api_calls_total[5m])")
    except ValueError:
        return
    raise AssertionError("an unclosed parenthesis parsed")
