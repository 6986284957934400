"""Which Chromium the browser tests drive: Playwright's own download when it is there (the build
this Playwright is made for), else a Chromium or Chrome on ``PATH``, else one of macOS's usual
app bundles; and what to say, and whether to skip or fail, when there is none."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence

#: The names a Chromium or Chrome goes by on ``PATH`` (Debian, Ubuntu, Google's packages,
#: Homebrew's cask), in the order they are tried.
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Where macOS keeps them when they are not on ``PATH``, tried after it.
APPS = (
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)
#: The one line a skipped (or, on CI, failed) browser test says.
MISSING = (
    "no Chromium/Chrome found: apt-get install chromium, brew install --cask chromium, "
    "or uv run playwright install chromium"
)


def find_browser(path: str | None, bundled: str | None, apps: Sequence[str] = APPS) -> str | None:
    """The browser to drive: ``bundled`` (Playwright's download) if it is an executable file,
    else the first of :data:`NAMES` on ``path`` (a ``PATH`` value; None: the system's default
    search path), else the first executable of ``apps``; None when there is none."""
    if bundled is not None and _executable(bundled):
        return bundled
    for name in NAMES:
        found = shutil.which(name, path=os.defpath if path is None else path)
        if found is not None:
            return found
    return next((app for app in apps if _executable(app)), None)


def playwright_browser() -> str:
    """Where Playwright keeps its own Chromium (``uv run playwright install chromium``); the
    file is there only once that has run."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        return playwright.chromium.executable_path


def on_ci(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` is a CI run's (``CI`` set, as CI services and ``.ci/run`` do, and
    not ``0`` or ``false``): there a missing browser fails the tests instead of skipping."""
    return environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)
