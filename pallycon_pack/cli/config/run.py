"""The work of config show: the effective settings, each with its source."""

from __future__ import annotations

import json

import click

from pallycon_config import ConfigError, load_settings
from pallycon_config.names import unknown_once
from pallycon_config.rules import env_name
from pallycon_config.settings import read_settings, unknown_settings
from pallycon_config.show import describe, warnings
from pallycon_emulator.config import emulator_env_name, load_emulator_settings
from pallycon_pack.web.console.auth import ConsoleSettings, console_variable
from pallycon_pack.web.http_api.settings import HttpSettings, http_variable


def show(as_json: bool) -> None:
    """Print every setting: its variable, value (secrets masked) and source; then the
    warnings, unknown ``PALLYCON_*`` names first (told here rather than as the settings load)."""
    unknown = [item.sentence() for item in unknown_once(unknown_settings())]
    try:
        settings = load_settings()
    except ConfigError:  # a misspelt name may be why: tell it before the error
        for note in unknown:
            click.echo(f"warning: {note}", err=True)
        raise
    emulator_settings = load_emulator_settings()
    console_settings = read_settings(ConsoleSettings, console_variable, {})
    http_settings = read_settings(HttpSettings, http_variable, {})
    rows = [
        *describe(settings, env_name),
        *describe(emulator_settings, emulator_env_name),
        *describe(console_settings, console_variable),
        *describe(http_settings, http_variable),
    ]
    notes = [*unknown, *warnings(settings), *warnings(emulator_settings)]
    if as_json:
        shown = [
            {"variable": row.variable, "value": row.value, "source": row.source} for row in rows
        ]
        click.echo(json.dumps({"settings": shown, "warnings": notes}, indent=2, default=str))
        return
    width = max(len(row.variable) for row in rows)
    for row in rows:
        click.echo(f"{row.variable:<{width}}  {_text(row.value)}  [{row.source}]")
    for note in notes:
        click.echo(f"warning: {note}", err=True)


def _text(value: object) -> str:
    """A value as the table shows it: ``(unset)`` for none or an empty text."""
    if value is None or value == "":
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
