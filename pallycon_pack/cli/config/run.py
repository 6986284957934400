"""The work of config show: the effective settings, each with its source."""

from __future__ import annotations

import json

import click

from pallycon_config import load_settings
from pallycon_config.rules import env_name
from pallycon_config.show import describe, warnings
from pallycon_emulator.config import emulator_env_name, load_emulator_settings


def show(as_json: bool) -> None:
    """Print every setting: its variable, value (secrets masked) and source."""
    settings = load_settings()
    emulator_settings = load_emulator_settings()
    rows = [
        *describe(settings, env_name),
        *describe(emulator_settings, emulator_env_name),
    ]
    notes = [*warnings(settings), *warnings(emulator_settings)]
    if as_json:
        shown = [
            {"variable": row.variable, "value": row.value, "source": row.source} for row in rows
        ]
        click.echo(json.dumps({"settings": shown, "warnings": notes}, indent=2, default=str))
        return
    width = max(len(row.variable) for row in rows)
    for row in rows:
        value = "(unset)" if row.value is None else _text(row.value)
        click.echo(f"{row.variable:<{width}}  {value}  [{row.source}]")
    for note in notes:
        click.echo(f"warning: {note}", err=True)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
