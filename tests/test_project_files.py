"""The files around the code agree with it: compose, Dockerfile, .env.example, docs, README, CI.

No Docker engine runs here, so these are parsed and checked against the real CLI and settings.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import click
import pytest
import yaml

from config import ENV_PREFIX, Settings
from emulator.config import EmulatorSettings, emulator_env_name
from pallycon_pack.cli import main

ROOT = Path(__file__).resolve().parents[1]
#: The emulator's settings, apart from the worker's (which every worker validates).
EMULATOR_SETTINGS = {emulator_env_name(name) for name in EmulatorSettings.model_fields}
SETTINGS = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields} | EMULATOR_SETTINGS
_VAR = re.compile(r"\bPALLYCON_[A-Z0-9_]+\b")


def _command(words: list[str]) -> tuple[click.Command, list[str]]:
    """Resolve `pallycon-pack WORDS...` to the click command and its remaining words."""
    command: click.Command = main
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, f"no such command: pallycon-pack {' '.join(words)}"
        command, rest = sub, rest[1:]
    return command, rest


def _check_options(command: click.Command, words: list[str], where: str) -> None:
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    known |= {"--help", "-h"}
    for word in words:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"{where}: {command.name} has no option {word}"


def test_compose_runs_real_commands_with_real_options():
    """Every service built from this image runs an existing subcommand with existing flags."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    built = {name: s for name, s in compose["services"].items() if s.get("build") == "."}
    assert built, "no service runs the pallycon-pack image"
    for name, service in built.items():
        command, rest = _command(service["command"])
        _check_options(command, rest, f"docker-compose.yml service {name}")
        for variable in service.get("environment", {}):
            assert variable in SETTINGS, f"{name}: {variable} is not a setting"


def test_compose_redis_is_durable():
    """Redis keeps its data (AOF) and never evicts keys."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


def test_dockerfile_copies_every_package_and_runs_the_cli():
    """The image holds every package the wheel ships and its entry point is pallycon-pack."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["packages"]
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, flags=re.MULTILINE))
    assert set(packages) <= copied
    for source in copied:
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert 'ENTRYPOINT ["pallycon-pack"]' in dockerfile


@pytest.mark.parametrize("path", [".env.example", "docs/CONFIGURATION.md"])
def test_every_setting_is_documented_and_nothing_else(path: str):
    """Each PALLYCON_* setting appears in the file, and each one it names exists."""
    named = set(_VAR.findall((ROOT / path).read_text()))
    assert named <= SETTINGS, f"{path} names unknown settings: {named - SETTINGS}"
    assert named >= SETTINGS, f"{path} misses settings: {SETTINGS - named}"


def test_the_emulators_settings_are_documented_in_its_own_section():
    """docs/CONFIGURATION.md's emulator table lists exactly the emulator's settings, no other
    table lists one of them, and the emulator's block of .env.example names them."""
    sections = re.split(r"^## ", (ROOT / "docs" / "CONFIGURATION.md").read_text(), flags=re.M)
    rows = {
        section.split("\n", 1)[0]: set(re.findall(r"^\| `(PALLYCON_\w+)`", section, flags=re.M))
        for section in sections
    }
    assert rows.pop("The emulator") == EMULATOR_SETTINGS
    assert not set().union(*rows.values()) & EMULATOR_SETTINGS
    example = (ROOT / ".env.example").read_text().split("# --- The emulator ", 1)[1]
    assert set(_VAR.findall(example)) == EMULATOR_SETTINGS


def _code_lines(text: str) -> list[str]:
    """The lines inside fenced code blocks, a line ending in a backslash joined to the next."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    return [
        line.strip() for block in blocks for line in re.sub(r"\\\n\s*", " ", block).splitlines()
    ]


def _documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in _code_lines(path.read_text()):
            match = re.search(r"\bpallycon-pack (.*)$", line)
            if match:
                found.append((f"{path.name}: {line}", shlex.split(match.group(1), comments=True)))
    return found


def test_documented_commands_exist_with_their_options():
    """Every `pallycon-pack ...` line in a code block of the README and docs is a real command."""
    commands = _documented_commands()
    assert len(commands) >= 5
    for where, words in commands:
        words = [w for w in words if w not in {"&", "&&", "|"}]
        command, rest = _command(words)
        _check_options(command, rest, where)


def test_readme_quick_start_is_two_commands_and_ci_runs_the_same_tests():
    """The README's quick start is the demo and the test suite; .ci/run runs that suite."""
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", quick, flags=re.DOTALL)
    assert block is not None
    lines = [line for line in block.group(1).splitlines() if line and not line.startswith("#")]
    assert lines == ["uv run pallycon-pack demo", "uv run pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "run --frozen pytest" in ci
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111
