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

from pallycon_pack.cli import main
from pallycon_pack.console import ENV_PREFIX as CONSOLE_PREFIX
from pallycon_pack.console import ConsoleSettings

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "pallycon-pack.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"

#: The variables of the one settings class (workers, producers, the CLI).
MAIN_SETTINGS = {env_name(name) for name in Settings.model_fields}
#: The emulator's own settings.
EMULATOR_SETTINGS = {emulator_env_name(name) for name in EmulatorSettings.model_fields}
#: The console's own settings.
CONSOLE_SETTINGS = {f"{CONSOLE_PREFIX}{name.upper()}" for name in ConsoleSettings.model_fields}
#: The variables that name secret files (docs/CONFIGURATION.md, "Secrets from files").
SECRET_FILE_VARIABLES = {SECRETS_DIR_VARIABLE} | {
    f"{prefix}{name.upper()}{FILE_SUFFIX}"
    for prefix, kind in ((ENV_PREFIX, Settings), (CONSOLE_PREFIX, ConsoleSettings))
    for name in secret_fields(kind)
}
#: Every variable some process reads.
SETTINGS = MAIN_SETTINGS | EMULATOR_SETTINGS | CONSOLE_SETTINGS | SECRET_FILE_VARIABLES


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


def dashboard_exprs() -> list[str]:
    """The queries of the Grafana dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def rules() -> list[dict[str, Any]]:
    """The Prometheus alert rules."""
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard_metrics() -> set[str]:
    return set().union(*(promql_metrics(expr) for expr in dashboard_exprs()))


def rule_metrics() -> set[str]:
    return set().union(*(promql_metrics(rule["expr"]) for rule in rules()))


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
