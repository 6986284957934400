"""Misspelt settings: a ``PALLYCON_*`` name that no settings class reads is told, once per
process, with the known name nearest to it; every name some process reads is known."""

from __future__ import annotations

from pathlib import Path

import pytest

from pallycon_config import load_settings, names
from pallycon_config.names import DOTENV, ENVIRONMENT, Unknown, given_names, unknown_names
from pallycon_config.settings import known_variables, unknown_settings
from support.deployment import SETTINGS

#: No PALLYCON_* from the developer's shell, and no .env from the checkout.
pytestmark = pytest.mark.usefixtures("isolated_settings")

KNOWN = known_variables()


@pytest.mark.parametrize(
    ("given", "found"),
    [
        ({"PALLYCON_POLL_INTERVAL": ENVIRONMENT}, []),
        ({"PATH": ENVIRONMENT, "STACK_API_URL": DOTENV}, []),
        (
            {"PALLYCON_POLL_INTERVALL": DOTENV},
            [Unknown("PALLYCON_POLL_INTERVALL", DOTENV, "PALLYCON_POLL_INTERVAL")],
        ),
        (
            {"PALLYCON_REDSI_URL": ENVIRONMENT},
            [Unknown("PALLYCON_REDSI_URL", ENVIRONMENT, "PALLYCON_REDIS_URL")],
        ),
        (
            {"PALLYCON_EMULATOR_PROT": ENVIRONMENT},
            [Unknown("PALLYCON_EMULATOR_PROT", ENVIRONMENT, "PALLYCON_EMULATOR_PORT")],
        ),
        (
            {"PALLYCON_CONSOLE_TOKEN_FIEL": ENVIRONMENT},
            [Unknown("PALLYCON_CONSOLE_TOKEN_FIEL", ENVIRONMENT, "PALLYCON_CONSOLE_TOKEN_FILE")],
        ),
        # Read without regard to case, as the settings are.
        ({"pallycon_poll_interval": ENVIRONMENT}, []),
        (
            {"pallycon_secret_dir": ENVIRONMENT},
            [Unknown("pallycon_secret_dir", ENVIRONMENT, "PALLYCON_SECRETS_DIR")],
        ),
        # Nothing alike enough: no guess.
        ({"PALLYCON_XYZZY": ENVIRONMENT}, [Unknown("PALLYCON_XYZZY", ENVIRONMENT, None)]),
        # The known ones are left out, the others kept in order.
        (
            {"PALLYCON_SITE_KEY_FILE": ENVIRONMENT, "PALLYCON_B": DOTENV, "PALLYCON_A": DOTENV},
            [Unknown("PALLYCON_B", DOTENV, None), Unknown("PALLYCON_A", DOTENV, None)],
        ),
    ],
)
def test_unknown_names_and_the_nearest_known(given: dict[str, str], found: list[Unknown]):
    """Each name under the prefix that no class reads is found, with the nearest known name."""
    assert unknown_names(given, KNOWN) == found


def test_the_sentence_names_the_name_where_and_the_nearest():
    """One line: the unknown name, where it was set, that it is ignored, the likely one."""
    unknown = Unknown("PALLYCON_POLL_INTERVALL", DOTENV, "PALLYCON_POLL_INTERVAL")
    assert unknown.sentence() == (
        "PALLYCON_POLL_INTERVALL, set in .env, is not a setting: it is ignored; "
        "did you mean PALLYCON_POLL_INTERVAL?"
    )
    assert Unknown("PALLYCON_XYZZY", ENVIRONMENT, None).sentence() == (
        "PALLYCON_XYZZY, set in the environment, is not a setting: it is ignored"
    )


def test_the_environment_wins_over_dotenv_for_where():
    """A name in both is told as the environment's (it wins); .env's names in capitals."""
    given = given_names(["PALLYCON_A"], {"pallycon_a": "1", "pallycon_b": "2"})
    assert given == {"PALLYCON_A": ENVIRONMENT, "PALLYCON_B": DOTENV}


def test_every_variable_some_process_reads_is_known():
    """Known: every settings class's variables (the emulator's and the console's too) and
    the secrets' _FILE ones; nothing else, so that the table of the other classes keeps up."""
    assert KNOWN == SETTINGS


def test_an_unknown_name_is_told_once_per_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Loading the settings warns on stderr of each unknown name, from the environment and
    .env, once however many times they are loaded."""
    monkeypatch.setattr(names, "_TOLD", set())
    monkeypatch.setattr(names, "_LOG_ONLY", [False])  # not a server (a help shown before)
    monkeypatch.setenv("PALLYCON_REDSI_URL", "redis://elsewhere:6379/0")
    (tmp_path / ".env").write_text("PALLYCON_POLL_INTERVALL=5\nPALLYCON_SITE_ID=TUTO\n")
    settings = load_settings()
    load_settings()
    assert settings.poll_interval == 10.0  # premise: the misspelt one is ignored
    assert capsys.readouterr().err.splitlines() == [
        "warning: PALLYCON_REDSI_URL, set in the environment, is not a setting: it is ignored; "
        "did you mean PALLYCON_REDIS_URL?",
        "warning: PALLYCON_POLL_INTERVALL, set in .env, is not a setting: it is ignored; "
        "did you mean PALLYCON_POLL_INTERVAL?",
    ]
    assert [unknown.name for unknown in unknown_settings()] == [
        "PALLYCON_REDSI_URL",
        "PALLYCON_POLL_INTERVALL",
    ]
