"""The wheel, as an upstream team installs it: into a project of its own, which has its own
``config`` package (the layout of cookiecutter-django, the usual CMS + Celery project).

Every name the wheel installs starts with ``pallycon``, so nothing of ours shadows theirs nor
theirs ours; the helpers of the tests and benchmarks (``support``, ``bench``, ``tests``) stay
out of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from support.env import installed_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

#: The upstream project's own ``config`` package, with a name ours had before the rename.
THEIR_CONFIG = 'ConfigError = "theirs"\nDEBUG = True\n'

#: Run in the upstream project: both packages import, each from its own place.
BOTH_IMPORT = """
import config
from pallycon_config import ConfigError, load_settings
from pallycon_producers.api import Producer
assert config.ConfigError == "theirs", config.__file__
assert issubclass(ConfigError, Exception)
print(config.__file__)
print(Producer.__module__)
"""


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv not found (neither the UV variable `uv run` sets nor PATH): it builds the wheel"
    return uv


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([_uv(), "build", "--wheel", "--quiet", "--out-dir", str(out)], cwd=ROOT)
    [built] = out.glob("pallycon_pack-*.whl")
    return built


def test_every_name_the_wheel_installs_starts_with_pallycon(wheel: Path):
    """The wheel's top-level names are ours alone: no ``config``, ``worker``, ``store``, and no
    test helpers."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {
        "pallycon",
        "pallycon_config",
        "pallycon_store",
        "pallycon_producers",
        "pallycon_worker",
        "pallycon_emulator",
        "pallycon_pack",
    }
    # The Lua scripts travel beside the modules that run them; the console's page its files.
    assert "pallycon_store/transition.lua" in names
    assert "pallycon_pack/web/callback_claim.lua" in names
    for page in ("page.html", "page.css", "page.js"):
        assert f"pallycon_pack/web/console/{page}" in names


def test_the_wheel_installs_beside_another_projects_config_package(wheel: Path, tmp_path: Path):
    """Installed into a fresh environment and run from a project with its own ``config``:
    both import, and the command line runs (``config show`` needs our settings package)."""
    venv = tmp_path / "venv"
    _run([_uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], cwd=tmp_path)
    python = str(venv / "bin" / "python")
    _run([_uv(), "pip", "install", "--quiet", "--python", python, str(wheel)], cwd=tmp_path)
    project = tmp_path / "cms"
    (project / "config").mkdir(parents=True)
    (project / "config" / "__init__.py").write_text(THEIR_CONFIG)
    env = installed_env(venv)
    env["PYTHONPATH"] = str(project)  # the upstream project's own packages, as its tools set
    imported = _run([python, "-c", BOTH_IMPORT], cwd=project, env=env).splitlines()
    assert imported == [str(project / "config" / "__init__.py"), "pallycon_producers.api"]
    shown = _run([python, "-m", "pallycon_pack", "config", "show"], cwd=project, env=env)
    assert "PALLYCON_REDIS_URL" in shown
    shown = _run([str(venv / "bin" / "pallycon-pack"), "config", "show"], cwd=project, env=env)
    assert "PALLYCON_REDIS_URL" in shown
    # The console's page is put together from the files the wheel ships beside its module.
    page = "from pallycon_pack.web.console.app import PAGE; print('<script>' in PAGE)"
    assert _run([python, "-c", page], cwd=project, env=env).strip() == "True"
