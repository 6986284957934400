"""The import layers, as a user meets them: each module imports on its own, a producer loads
neither the HTTP client nor the worker, and the product never loads the support package. (The arrows themselves: `lint-imports`, whose
contracts are in pyproject.toml, run by .ci/run.)"""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib.util
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from pallycon_pack.cli.main import COMMANDS, SECTIONS, main

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = [
    "pallycon",
    "pallycon_config",
    "pallycon_store",
    "pallycon_producers",
    "pallycon_worker",
    "pallycon_emulator",
    "pallycon_pack",
]
#: Helpers for tests, benchmarks and the demo: never loaded by the product.
SUPPORT = "support"
#: Never loaded by `import pallycon_producers.api` (a producer needs Redis only; Celery once it sends).
NOT_FOR_PRODUCERS = [
    "httpx",
    "pallycon.client",
    "pallycon_worker",
    "cryptography.hazmat",
    "starlette",
    "celery",
]


def _modules(packages: list[str] = PRODUCT) -> list[str]:
    found = []
    for package in packages:
        found.append(package)
        spec = importlib.util.find_spec(package)
        assert spec is not None, package
        path = list(spec.submodule_search_locations or [])
        found += [m.name for m in pkgutil.walk_packages(path, prefix=f"{package}.")]
    # Entry points run when imported: the CLI's __main__, and the Celery app (settings).
    entry_points = ("pallycon_pack.__main__", "pallycon_worker.celery")
    return [name for name in found if name not in entry_points]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )


#: Imports each module given on the command line with none of the project's modules loaded
#: (third-party ones stay cached, which changes nothing for our imports): the errors, as JSON.
_ALONE = """
import importlib, json, sys
ours = tuple(sys.argv[1].split(","))
errors = {}
for name in sys.argv[2:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ours]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        errors[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(errors))
"""


def test_every_module_imports_on_its_own():
    packages = [*PRODUCT, SUPPORT]
    modules = _modules(packages)
    assert len(modules) > 40
    run = subprocess.run(
        [sys.executable, "-c", _ALONE, ",".join(packages), *modules],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {}


def test_a_producer_loads_neither_the_http_client_nor_the_worker():
    check = (
        "import sys, pallycon_producers.api\n"
        f"banned = {NOT_FOR_PRODUCERS!r}\n"
        "print(sorted(m for m in sys.modules for b in banned if m == b or m.startswith(b + '.')))"
    )
    run = _python(check)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "module",
    [
        "pallycon_store.admission",
        "pallycon_store.records",
        "pallycon_store.messages",
        "pallycon_store.wiring",
        "pallycon_store.heartbeats",
        "pallycon_store.api_calls",
    ],
)
def test_the_shared_store_needs_no_http_client(module):
    run = _python(f"import sys, {module}; print('httpx' in sys.modules)")
    assert (run.returncode, run.stdout.strip()) == (0, "False"), run.stderr


def test_the_product_never_loads_the_support_package():
    """Every product module, the CLI's --help among them, loads nothing of support/ (only the
    demo command does, when it runs)."""
    code = (
        "import importlib, sys\n"
        "from click.testing import CliRunner\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "from pallycon_pack.cli.main import main\n"
        "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] == {SUPPORT!r}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, *_modules()],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert (run.returncode, run.stdout.strip()) == (0, "[]"), run.stderr


def test_the_top_level_help_loads_no_subcommand():
    """`pallycon-pack --help` lists the commands from their summaries: it loads no subcommand's
    module, nor the settings, Redis, Celery or the HTTP client."""
    code = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from pallycon_pack.cli.main import main\n"
        "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    run = _python(code)
    assert run.returncode == 0, run.stderr
    modules = json.loads(run.stdout)
    loaded = {m.split(".")[0] for m in modules}
    ours = {m for m in modules if m.split(".")[0] == "pallycon_pack"}
    assert ours == {
        "pallycon_pack",
        "pallycon_pack.cli",
        "pallycon_pack.cli.main",
    }
    assert not loaded & {
        "pallycon_config",
        "pallycon",
        "redis",
        "celery",
        "kombu",
        "httpx",
        "pydantic",
    }


#: What a command's --help may load of pallycon_pack besides the group and its own family's
#: ``commands``: helpers its options name (inputs, the states, the checks' defaults, the
#: console's, the HTTP API's and the emulator's settings), never a ``run`` module nor another family.
HELP_SHARED = {
    "pallycon_pack.cli.inputs",
    "pallycon_pack.cli.servers.emulator_sites",
    "pallycon_pack.errors",
    "pallycon_pack.health",
    "pallycon_pack.present",
    "pallycon_pack.present.records",
    "pallycon_pack.receiver",  # the callbacks check's address (loaded with pallycon_pack.health)
    "pallycon_pack.web",
    "pallycon_pack.web.console",
    "pallycon_pack.web.console.auth",
    "pallycon_pack.web.hosts",
    "pallycon_pack.web.http_api",
    "pallycon_pack.web.http_api.settings",
}

#: Loads a command's --help with settings that cannot be read (so none may be read), then
#: prints the modules loaded, as JSON.
_HELP = """
import json, sys
from click.testing import CliRunner
from pallycon_pack.cli.main import main
done = CliRunner().invoke(main, [*sys.argv[1:], "--help"], env={"PALLYCON_REDIS_URL": "x://"})
assert done.exit_code == 0, done.output
print(json.dumps(sorted(sys.modules)))
"""


def _help_loads(*command: str) -> list[str]:
    run = subprocess.run(
        [sys.executable, "-c", _HELP, *command], capture_output=True, text=True, cwd=ROOT, check=False
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    loaded: list[str] = json.loads(run.stdout)
    return loaded


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_commands_help_loads_its_family_only(name: str):
    """`<command> --help` loads the options and help of its family (its ``commands`` module),
    reads no settings, and loads no ``run`` module, no other family, nor Celery or a web
    server: the work is imported when the command runs."""
    loaded = _help_loads(name)
    ours = {m for m in loaded if m.startswith("pallycon_pack.")} - HELP_SHARED
    family = COMMANDS[name].module.rpartition(".")[0]
    own = {"pallycon_pack.cli", "pallycon_pack.cli.main", family, COMMANDS[name].module}
    if family == "pallycon_pack.cli.servers":  # the servers' SIGTERM handler while they
        own.add("pallycon_pack.cli.servers.stopping")  # start: the standard library only
    assert ours <= own, sorted(ours - own)
    roots = {m.split(".")[0] for m in loaded}
    assert not roots & {"celery", "kombu", "starlette", "uvicorn", "pallycon_producers"}


def test_the_status_help_loads_neither_the_settings_nor_redis():
    """`status --help`, whose start-up time docs/BENCHMARKS.md publishes, loads no settings,
    no Redis client and no HTTP client."""
    roots = {m.split(".")[0] for m in _help_loads("status")}
    assert not roots & {"pallycon_config", "pydantic", "redis", "httpx", "pallycon_store"}


def test_the_console_page_is_its_files_put_together():
    """The console serves page.html with page.css and page.js inline, the states of a request
    written into the script, and its CSP allows exactly that script (by its hash)."""
    from pallycon_pack.web.console import app

    folder = Path(app.__file__).parent
    states = '["accepted","submitting","submitted","completed","failed","cancelled","stopped"]'
    js = (folder / "page.js").read_text().replace("{{states}}", states)
    css = (folder / "page.css").read_text()
    html = (folder / "page.html").read_text()
    assert html.replace("{{css}}", css).replace("{{js}}", js) == app.PAGE
    script = app.PAGE.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in app.CSP


def test_the_help_lists_every_command_once_in_its_section():
    """--help's sections hold every command, each once."""
    listed = [name for _, names in SECTIONS for name in names]
    assert sorted(listed) == sorted(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_summary_is_the_commands_own(name: str):
    """The summary --help shows for a command is the one click would make from its help."""
    command = main.get_command(click.Context(main), name)
    assert command is not None
    assert command.name == name
    stand_in = click.Command(name, help=COMMANDS[name].summary)
    for limit in (20, 45, 62, 80, 200):
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_no_test_module_imports_another():
    """What tests share lives in ``support`` (or a conftest's fixtures), never in a test module:
    importing one runs its module-level code and couples the files."""
    importers = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(name == "tests" or name.startswith("tests.") for name in names):
                importers.append(str(path.relative_to(ROOT)))
    assert importers == []
