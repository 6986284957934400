"""``pallycon-pack config``: read the effective settings."""

from __future__ import annotations

import click


@click.group()
def config() -> None:
    """Show the effective settings and where each one came from."""


@config.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object (settings in a list).")
def show(as_json: bool) -> None:
    """Print every setting: its variable, value (secrets masked) and source.

    The source is where the value came from: default, environment (a PALLYCON_* variable),
    .env (in the current directory) or, for a secret, the file it was read from. The
    emulator's settings (PALLYCON_EMULATOR_*), the console's (PALLYCON_CONSOLE_*) and the
    HTTP API's (PALLYCON_HTTP_*) follow the others'. A PALLYCON_* name that is no setting (a
    misspelling) is warned of, with the setting nearest to it.
    """
    from pallycon_pack.cli.config import run

    run.show(as_json)
