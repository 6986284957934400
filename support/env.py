"""Environments for child processes: this one's, without any ``PALLYCON_*`` setting; and for
the programs of another Python environment, with nothing of this checkout's."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from pallycon.signing import SiteCredentials
from support.samples import REGION, SAMPLE_SITE

#: The prefix of every setting (config's and the emulator's).
SETTINGS_PREFIX = "PALLYCON_"


def clean_env(*settings: Mapping[str, str], **extra: str) -> dict[str, str]:
    """This process's environment without any ``PALLYCON_*`` setting, plus ``settings`` (e.g.
    ``Settings.environment()``) and ``extra``, later ones winning."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIX)}
    for values in settings:
        env.update(values)
    env.update(extra)
    return env


def site_env(
    site: SiteCredentials = SAMPLE_SITE, region: str = REGION, **extra: str
) -> dict[str, str]:
    """A clean environment with ``site``'s credentials and ``region`` set, plus ``extra``."""
    settings = {
        "PALLYCON_SITE_ID": site.site_id,
        "PALLYCON_ACCESS_KEY": site.access_key.get_secret_value(),
        "PALLYCON_SITE_KEY": site.site_key.get_secret_value(),
        "PALLYCON_REGION": region,
    }
    return clean_env(settings, **extra)


#: Variables that point Python at code or an environment other than its own.
PYTHON_PATHS = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")


def installed_env(venv: Path, *settings: Mapping[str, str], **extra: str) -> dict[str, str]:
    """A clean environment (:func:`clean_env`) for the programs of another environment,
    ``venv``, as a container of the image sees its own: ``venv/bin`` first on PATH (the
    Dockerfile's ``ENV PATH``), and nothing leading Python to this checkout or its environment
    (:data:`PYTHON_PATHS`; this virtual environment's ``bin``, which ``uv run`` puts on PATH)."""
    env = clean_env(*settings, **extra)
    for name in PYTHON_PATHS:
        env.pop(name, None)
    # This checkout's environment's scripts; a system interpreter's directory stays.
    ours = {str(Path(sys.prefix) / "bin")} if sys.prefix != sys.base_prefix else set()
    path = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p and p not in ours]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    return env
