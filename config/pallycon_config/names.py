"""``PALLYCON_*`` names that no settings class reads: a misspelt setting (``PALLYCON_REDSI_URL``)
would otherwise be ignored without a word. Each is told once per process, with the known name
nearest to it.

The decision (:func:`unknown_names`) is pure; :func:`given_names` reads what the environment and
``.env`` set; :func:`unknown_once` keeps what this process has already told. The known names
are every settings class's: :func:`pallycon_config.settings.known_variables` adds this
package's own to :data:`READ_ELSEWHERE`, the names read by the settings classes of the packages
above this one (a test holds that table to those classes).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from pallycon_config.rules import ENV_PREFIX

#: The variables the emulator's settings (``pallycon_emulator.config.EmulatorSettings``), the
#: console's (``pallycon_pack.web.console.auth.ConsoleSettings``, its token's file included)
#: and the HTTP API's (``pallycon_pack.web.http_api.settings.HttpSettings``) read: a process
#: that loads none of them must not take them for misspellings.
READ_ELSEWHERE = frozenset(
    {
        "PALLYCON_EMULATOR_HOST",
        "PALLYCON_EMULATOR_PORT",
        "PALLYCON_EMULATOR_JOB_SECONDS",
        "PALLYCON_EMULATOR_DATA_DIR",
        "PALLYCON_EMULATOR_CALLBACK_URL",
        "PALLYCON_EMULATOR_CALLBACK_URLS",
        "PALLYCON_EMULATOR_STATUS_STYLE",
        "PALLYCON_EMULATOR_MAX_SKEW_SECONDS",
        "PALLYCON_EMULATOR_MAX_PAGE_UNIT",
        "PALLYCON_EMULATOR_SLOTS",
        "PALLYCON_EMULATOR_STOP_SECONDS",
        "PALLYCON_CONSOLE_HOST",
        "PALLYCON_CONSOLE_PORT",
        "PALLYCON_CONSOLE_TOKEN",
        "PALLYCON_CONSOLE_TOKEN_FILE",
        "PALLYCON_HTTP_HOST",
        "PALLYCON_HTTP_PORT",
        "PALLYCON_HTTP_MAX_BODY_BYTES",
        "PALLYCON_HTTP_BODY_TIMEOUT",
        "PALLYCON_HTTP_MAX_CONNECTIONS",
        "PALLYCON_HTTP_RATE",
        "PALLYCON_HTTP_BURST",
    }
)

#: Where a name was set, as a warning says it.
ENVIRONMENT = "the environment"
DOTENV = ".env"
#: How alike (0 to 1, :class:`difflib.SequenceMatcher`'s ratio of the parts after the prefix)
#: a known name must be to be offered as the one meant.
NEAREST_CUTOFF = 0.6


@dataclass(frozen=True)
class Unknown:
    """A ``PALLYCON_*`` name set that no settings class reads."""

    name: str
    where: str  # ENVIRONMENT or DOTENV
    nearest: str | None  # the known name most like it, if one is alike enough

    def sentence(self) -> str:
        """One line for an operator: the name, where it was set, the name it may mean."""
        hint = f"; did you mean {self.nearest}?" if self.nearest else ""
        return f"{self.name}, set in {self.where}, is not a setting: it is ignored{hint}"


def unknown_names(given: Mapping[str, str], known: Collection[str]) -> list[Unknown]:
    """The names of ``given`` (name -> where it was set) under the prefix that are not
    ``known``, in ``given``'s order, each with the known name nearest to it. Names are compared
    as the settings read them: without regard to case."""
    known_upper = {name.upper() for name in known}
    stems = {name.removeprefix(ENV_PREFIX): name for name in sorted(known_upper)}
    found = []
    for name, where in given.items():
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known_upper:
            continue
        close = difflib.get_close_matches(
            upper.removeprefix(ENV_PREFIX), list(stems), n=1, cutoff=NEAREST_CUTOFF
        )
        found.append(Unknown(name, where, stems[close[0]] if close else None))
    return found


def given_names(environ: Iterable[str], dotenv: Iterable[str]) -> dict[str, str]:
    """The names set, each with where: the environment's first (they win over ``.env``'s),
    then ``.env``'s (as the settings read them, in capitals)."""
    given = dict.fromkeys(environ, ENVIRONMENT)
    seen = {name.upper() for name in given}
    for name in dotenv:
        if name.upper() not in seen:
            given[name.upper()] = DOTENV
            seen.add(name.upper())
    return given


#: The names this process has told of (:func:`unknown_once`).
_TOLD: set[str] = set()


def unknown_once(found: Iterable[Unknown]) -> list[Unknown]:
    """Those of ``found`` this process has not told of yet, now marked as told: each unknown
    name is told once per process, however many settings it loads."""
    fresh = [unknown for unknown in found if unknown.name.upper() not in _TOLD]
    _TOLD.update(unknown.name.upper() for unknown in fresh)
    return fresh


#: Whether this process tells unknown names in its JSON log alone (a server's: every line it
#: writes on stderr is JSON), rather than as plain lines as its settings load.
_LOG_ONLY = [False]


def tell_in_log_only() -> None:
    """This process is a server: its start line's warnings tell the unknown names
    (:func:`pallycon_config.logs.log_start`), no plain line does."""
    _LOG_ONLY[0] = True


def told_in_log_only() -> bool:
    """Whether :func:`tell_in_log_only` was called."""
    return _LOG_ONLY[0]


def forget_told() -> None:
    """Forget what this process has told of (and whether in its log alone): for a new command
    run in the same process."""
    _TOLD.clear()
    _LOG_ONLY[0] = False
