"""The files around the code agree with it: .env.example, docs, README, CI (the compose file and
the Dockerfile: tests/unit/test_compose.py; the Kubernetes manifests: test_kubernetes.py)."""

from __future__ import annotations

import importlib
import re
import shlex

import pytest

from support.deployment import (
    CONSOLE_SETTINGS,
    EMULATOR_SETTINGS,
    HTTP_SETTINGS,
    MAIN_SETTINGS,
    ROOT,
    known_options,
)
from support.deployment import SETTINGS as ANY_SETTING

#: The settings .env.example and docs/CONFIGURATION.md document: every settings class's.
SETTINGS = MAIN_SETTINGS | EMULATOR_SETTINGS | CONSOLE_SETTINGS | HTTP_SETTINGS
_VAR = re.compile(r"\bPALLYCON_[A-Z0-9_]+\b")


@pytest.mark.parametrize("path", [".env.example", "docs/CONFIGURATION.md"])
def test_every_setting_is_documented_and_nothing_else(path: str):
    """Each PALLYCON_* setting appears in the file, and each one it names exists."""
    named = set(_VAR.findall((ROOT / path).read_text()))
    assert named <= ANY_SETTING, f"{path} names unknown settings: {named - ANY_SETTING}"
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
            # The program where a command starts (not a `--namespace=pallycon-pack` value).
            match = re.search(r"(?:^|[\s;&|(])pallycon-pack (.*)$", line)
            if match:
                found.append((f"{path.name}: {line}", shlex.split(match.group(1), comments=True)))
    return found


def test_documented_commands_exist_with_their_options():
    """Every `pallycon-pack ...` line in a code block of the README and docs is a real command."""
    commands = _documented_commands()
    assert len(commands) >= 5
    for where, words in commands:
        words = [w for w in words if w not in {"&", "&&", "|"}]
        known_options(words, where)


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


def test_every_failure_code_is_documented_with_its_meaning():
    """docs/RESULTS.md's table of our own codes lists exactly the codes of FailureCode, each
    once, with exactly its meaning."""
    from pallycon_store.failures import FailureCode

    text = (ROOT / "docs" / "RESULTS.md").read_text()
    header = "| Our code | Meaning | In |\n| --- | --- | --- |\n"
    assert text.count(header) == 1
    documented: dict[str, str] = {}
    for line in text.split(header, 1)[1].split("\n\n", 1)[0].splitlines():
        row = re.fullmatch(r"\| `(\w+)` \| ([^|]+) \| [^|]+ \|", line)
        assert row, f"not a row of the table: {line}"
        assert row[1] not in documented, f"{row[1]} twice"
        documented[row[1]] = row[2]
    assert documented == {code.value: code.meaning for code in FailureCode}


#: The prose a user reads: where it names a file of ours or a module of ours, that file exists.
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
_OUR_FILE = re.compile(
    r"(?<![\w/.-])((?:pallycon_pack|pallycon|config|store|worker|producers|emulator|support|bench"
    r"|tests)/[\w./-]+\.(?:py|lua|html|css|js))\b"
)
_OUR_MODULE = re.compile(
    r"\b(pallycon(?:_pack|_config|_store|_worker|_producers|_emulator)?(?:\.\w+)+)"
)


def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module of ours, or an attribute of one (a class, a function)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


@pytest.mark.parametrize("path", DOCS)
def test_the_docs_name_only_files_and_modules_that_exist(path: str):
    """A file path (`store/pallycon_store/keys.py`) or a dotted name
    (`pallycon_store.admission.MAX_METADATA_BYTES`) in the docs is one the code has: a move or
    a rename cannot leave the docs pointing at nothing."""
    text = (ROOT / path).read_text()
    files = {m for m in _OUR_FILE.findall(text) if not (ROOT / m).exists()}
    named = {m.rstrip(".") for m in _OUR_MODULE.findall(text)} - {"pallycon.com"}  # a host
    modules = {m for m in named if not _resolves(m)}
    assert (files, modules) == (set(), set())
