"""Checking the files around the code against it: the compose file, the Dockerfile, the
Kubernetes manifests, the dashboards and the docs name commands, settings and metrics that must
exist. No Docker engine or cluster runs the tests, so these files are parsed and compared.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import yaml

from pallycon_config import ENV_PREFIX, Settings, env_name
from pallycon_config.secrets import FILE_SUFFIX, SECRETS_DIR_VARIABLE, secret_fields
from pallycon_emulator.config import EmulatorSettings, emulator_env_name
from pallycon_pack.cli.main import main
from pallycon_pack.web.console.auth import ENV_PREFIX as CONSOLE_PREFIX
from pallycon_pack.web.console.auth import ConsoleSettings
from pallycon_pack.web.http_api.settings import ENV_PREFIX as HTTP_PREFIX
from pallycon_pack.web.http_api.settings import HttpSettings

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "pallycon-pack.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"

#: The variables of the one settings class (workers, producers, the CLI).
MAIN_SETTINGS = {env_name(name) for name in Settings.model_fields}
#: The emulator's own settings.
EMULATOR_SETTINGS = {emulator_env_name(name) for name in EmulatorSettings.model_fields}
#: The console's own settings.
CONSOLE_SETTINGS = {f"{CONSOLE_PREFIX}{name.upper()}" for name in ConsoleSettings.model_fields}
#: The HTTP API's own settings.
HTTP_SETTINGS = {f"{HTTP_PREFIX}{name.upper()}" for name in HttpSettings.model_fields}
#: The variables that name secret files (docs/CONFIGURATION.md, "Secrets from files").
SECRET_FILE_VARIABLES = {SECRETS_DIR_VARIABLE} | {
    f"{prefix}{name.upper()}{FILE_SUFFIX}"
    for prefix, kind in ((ENV_PREFIX, Settings), (CONSOLE_PREFIX, ConsoleSettings))
    for name in secret_fields(kind)
}
#: Every variable some process reads.
SETTINGS = (
    MAIN_SETTINGS | EMULATOR_SETTINGS | CONSOLE_SETTINGS | HTTP_SETTINGS | SECRET_FILE_VARIABLES
)


def resolve(words: list[str], where: str) -> tuple[click.Command, list[str]]:
    """The click command that ``pallycon-pack WORDS...`` runs, and the words it parses;
    an ``AssertionError`` naming ``where`` if there is no such command."""
    command: click.Command = main
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, f"{where}: no such command: pallycon-pack {' '.join(words)}"
        command, rest = sub, rest[1:]
    return command, rest


def parse(words: list[str], where: str) -> dict[str, Any]:
    """The parameters ``pallycon-pack WORDS...`` would run with (parsed, not invoked); an
    ``AssertionError`` naming ``where`` and click's complaint if they do not parse."""
    command, rest = resolve(words, where)
    assert not isinstance(command, click.Group), f"{where}: {words} names no subcommand"
    try:
        with command.make_context(str(command.name), list(rest)) as context:
            return dict(context.params)
    except click.UsageError as exc:
        raise AssertionError(
            f"{where}: pallycon-pack {' '.join(words)}: {exc.format_message()}"
        ) from None


def known_options(words: list[str], where: str) -> None:
    """Every ``--option`` of ``pallycon-pack WORDS...`` exists (for documented lines, which
    may leave out required values)."""
    command, rest = resolve(words, where)
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    known |= {"--help", "-h"}
    for word in rest:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"{where}: {command.name} has no option {word}"


def promql_metrics(query: str) -> set[str]:
    """The metric names a PromQL query reads."""
    import promql_parser

    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(query), visit)
    return names


def dashboard_exprs(dashboard: dict[str, Any] | None = None) -> list[str]:
    """The queries of a Grafana dashboard (by default the one under deploy/)."""
    if dashboard is None:
        dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def rules(loaded: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The alert rules of a Prometheus rules file (by default the one under deploy/)."""
    if loaded is None:
        loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard_metrics(dashboard: dict[str, Any] | None = None) -> set[str]:
    """The metric names the dashboard's queries read."""
    return set().union(*(promql_metrics(expr) for expr in dashboard_exprs(dashboard)))


def selectors(query: str) -> list[tuple[str, dict[str, str]]]:
    """The series a PromQL query selects: each selector's metric name and the label values it
    asks for exactly (``label="value"``; other matchers are left out)."""
    import promql_parser

    found: list[tuple[str, dict[str, str]]] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            exact = {
                m.name: m.value
                for m in node.matchers.matchers
                if m.op == promql_parser.MatchOp.Equal
            }
            found.append((node.name, exact))
        return True

    promql_parser.walk(promql_parser.parse(query), visit)
    return found


def rule_metrics(loaded: dict[str, Any] | None = None) -> set[str]:
    """The metric names the alert rules' expressions read."""
    return set().union(*(promql_metrics(rule["expr"]) for rule in rules(loaded)))


#: The datasource every panel takes: the dashboard's variable, chosen on import.
DATASOURCE = "${datasource}"


def expr_problems(expr: str, exposed: set[str] | None) -> list[str]:
    """What is wrong with a PromQL expression: it does not parse, or (given the names the
    exporter exposes, ``exposed``) it reads a metric that is not exposed."""
    try:
        used = promql_metrics(expr)
    except ValueError as exc:
        return [f"does not parse ({exc})"]
    if exposed is None:
        return []
    return [f"{name} is not exposed" for name in sorted(used - exposed)]


def dashboard_problems(dashboard: dict[str, Any], exposed: set[str] | None = None) -> list[str]:
    """What is wrong with a Grafana dashboard, one line per problem naming its panel: a panel
    without a query, on another datasource than :data:`DATASOURCE`, with an id another panel
    has, a query that does not parse or (given ``exposed``) reads a metric not exposed."""
    problems = []
    seen: dict[Any, str] = {}
    for panel in dashboard["panels"]:
        title = panel.get("title", "?")
        where = f"panel {title!r}"
        if panel.get("id") in seen:
            problems.append(
                f"{where}: duplicate panel id {panel.get('id')} ({seen[panel['id']]!r})"
            )
        seen.setdefault(panel.get("id"), title)
        if not panel.get("targets"):
            problems.append(f"{where}: no query")
        if panel.get("datasource", {}).get("uid") != DATASOURCE:
            problems.append(f"{where}: datasource is not {DATASOURCE}")
        for target in panel.get("targets", []):
            problems += [f"{where}: {p}" for p in expr_problems(target["expr"], exposed)]
    return problems


#: What Prometheus accepts in a rules file (rule groups and alerting rules).
GROUP_FIELDS = {"name", "interval", "rules", "limit"}
RULE_FIELDS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
ALERT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DURATION = re.compile(r"\d+(ms|s|m|h|d|w|y)")
SEVERITIES = {"critical", "warning"}


def rules_problems(loaded: dict[str, Any], exposed: set[str] | None = None) -> list[str]:
    """What is wrong with a Prometheus rules file, one line per problem naming its group or
    alert: a field Prometheus does not load, an alert named twice or not a valid name, a bad
    ``for``, no severity our routes know, no summary or description, an expression that does
    not parse or (given ``exposed``) reads a metric not exposed."""
    if set(loaded) != {"groups"}:
        return [f"top level: {sorted(loaded)} instead of ['groups']"]
    problems = []
    names: set[str] = set()
    for group in loaded["groups"]:
        where = f"group {group.get('name')!r}"
        if not isinstance(group.get("name"), str):
            problems.append(f"{where}: no name")
        if extra := set(group) - GROUP_FIELDS:
            problems.append(f"{where}: unknown fields {sorted(extra)}")
        for rule in group.get("rules", []):
            problems += _rule_problems(rule, names, exposed)
    return problems


def _rule_problems(rule: dict[str, Any], names: set[str], exposed: set[str] | None) -> list[str]:
    """The problems of one alerting rule; ``names``: the alerts seen so far (this one added)."""
    name = rule.get("alert")
    where = f"alert {name!r}"
    problems = []
    if not isinstance(name, str) or not ALERT_NAME.fullmatch(name):
        problems.append(f"{where}: not a valid alert name")
    elif name in names:
        problems.append(f"{where}: alert named twice")
    names.add(str(name))
    if extra := set(rule) - RULE_FIELDS:
        problems.append(f"{where}: unknown fields {sorted(extra)}")
    if not DURATION.fullmatch(str(rule.get("for", "0s"))):
        problems.append(f"{where}: for {rule.get('for')!r} is not a duration")
    severity = rule.get("labels", {}).get("severity")
    if severity not in SEVERITIES:
        problems.append(f"{where}: severity {severity!r} is not one of {sorted(SEVERITIES)}")
    if missing := {"summary", "description"} - set(rule.get("annotations", {})):
        problems.append(f"{where}: no {' or '.join(sorted(missing))}")
    return problems + [f"{where}: {p}" for p in expr_problems(rule.get("expr", ""), exposed)]


#: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, as compose reads them.
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """``value`` with compose's ``${...}`` replaced as ``env`` (a .env file) sets them."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        found = env.get(name)
        if operator in ("-", ":-"):
            unset = found is None or (operator == ":-" and found == "")
            return argument if unset else str(found)
        if operator in ("?", ":?"):
            assert found, f"docker-compose.yml requires {name}: {argument}"
        return found or ""

    return INTERPOLATION.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def read_env_file(text: str, *, uncomment: bool) -> dict[str, str]:
    """The variables of a .env file; with ``uncomment``, its commented ``# NAME=value`` lines
    too (a user's .env that turned every example on)."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if uncomment and re.match(r"^#\s*[A-Z][A-Z0-9_]*=", line):
            line = line.lstrip("#").strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        env[name.strip()] = re.split(r"\s+#", value, maxsplit=1)[0].strip()
    return env
