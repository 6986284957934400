"""Which browser the browser tests find (support/browser.py): fake executables in temporary
directories stand for the installed browsers."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.browser import MISSING, find_browser, on_ci


def _fake(folder: Path, name: str, executable: bool = True) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755 if executable else 0o644)
    return str(path)


def test_playwrights_own_comes_first(tmp_path: Path):
    """Playwright's download, when its file is there, wins over a browser on PATH."""
    _fake(tmp_path / "bin", "chromium")
    bundled = _fake(tmp_path / "ms-playwright", "chrome")
    assert find_browser(str(tmp_path / "bin"), bundled, apps=()) == bundled


def test_playwrights_path_without_its_file_is_passed_over(tmp_path: Path):
    """Playwright names its path even when nothing was downloaded: then PATH is searched."""
    on_path = _fake(tmp_path / "bin", "chromium")
    missing = str(tmp_path / "ms-playwright" / "chrome")
    assert find_browser(str(tmp_path / "bin"), missing, apps=()) == on_path


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        (["chromium", "google-chrome"], "chromium"),
        (["chromium-browser", "google-chrome-stable"], "chromium-browser"),
        (["google-chrome-stable", "google-chrome"], "google-chrome"),
        (["google-chrome-stable"], "google-chrome-stable"),
    ],
)
def test_names_on_path_in_order(tmp_path: Path, installed: list[str], expected: str):
    """Each name Chromium or Chrome goes by is found on PATH, in NAMES' order."""
    for name in installed:
        _fake(tmp_path / "bin", name)
    assert find_browser(str(tmp_path / "bin"), None, apps=()) == str(tmp_path / "bin" / expected)


def test_every_folder_of_path_is_searched(tmp_path: Path):
    """A browser in a later PATH folder is found; one that is not executable is not."""
    _fake(tmp_path / "first", "chromium", executable=False)
    later = _fake(tmp_path / "later", "google-chrome")
    path = f"{tmp_path / 'empty'}:{tmp_path / 'first'}:{tmp_path / 'later'}"
    assert find_browser(path, None, apps=()) == later


def test_a_macos_app_after_path(tmp_path: Path):
    """An app bundle's binary is the last resort, in APPS' order; a missing one is skipped."""
    app = _fake(tmp_path / "Chrome.app", "Google Chrome")
    apps = [str(tmp_path / "Chromium.app" / "Chromium"), app]
    assert find_browser(str(tmp_path / "empty"), None, apps=apps) == app
    on_path = _fake(tmp_path / "bin", "chromium")
    assert find_browser(str(tmp_path / "bin"), None, apps=apps) == on_path


def test_none_found(tmp_path: Path):
    """No browser anywhere: None (the tests then skip, or fail on CI, with MISSING)."""
    _fake(tmp_path / "bin", "firefox")
    assert find_browser(str(tmp_path / "bin"), None, apps=()) is None
    assert find_browser("", None, apps=()) is None  # an empty PATH: no folder to search
    assert "\n" not in MISSING
    assert "playwright install chromium" in MISSING


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("", False), ("0", False), ("false", False), ("False", False),
     ("no", False), ("true", True), ("1", True), ("yes", True), ("TRUE", True)],
)  # fmt: skip
def test_on_ci(value: str | None, expected: bool):
    """CI set (true, 1, any other value) means CI; unset, empty, 0, false or no do not."""
    environ = {} if value is None else {"CI": value}
    assert on_ci(environ) is expected
