"""``pallycon-pack``: the one command-line entry point, with subcommands.

Exit codes: 0 success, 1 the API or the job failed, 2 bad usage, settings or input.
"""

from __future__ import annotations

from typing import Any

import click

from config import ConfigError
from pallycon.errors import CallError, InvalidRequest

EXIT_FAILED = 1
EXIT_INVALID = 2


class Failure(click.ClickException):
    """An error shown as one clear message, with an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = exit_code

    @property
    def exit_code(self) -> int:  # type: ignore[override]  # click reads it as an attribute
        return self.code


class _Group(click.Group):
    """Turns the project's errors into messages and exit codes, never tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise Failure(str(exc), EXIT_INVALID) from None
        except InvalidRequest as exc:
            lines = "\n".join(f"  {error}" for error in exc.errors)
            raise Failure(f"invalid request:\n{lines}", EXIT_INVALID) from None
        except CallError as exc:
            raise Failure(f"{type(exc).__name__}: {exc}", EXIT_FAILED) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pallycon-pack")
def main() -> None:
    """Bridge between your systems and PallyCon's forensic watermarking Packaging API.

    Settings come from PALLYCON_* environment variables or a .env file (see .env.example).
    """


def _register() -> None:
    from pallycon_pack import api_commands, demo, emulator_command, queue_commands

    for command in (
        queue_commands.submit,
        queue_commands.status,
        queue_commands.results,
        queue_commands.worker,
        queue_commands.callbacks,
    ):
        main.add_command(command)
    main.add_command(api_commands.sign)
    main.add_command(api_commands.storage)
    main.add_command(api_commands.jobs)
    main.add_command(emulator_command.emulator)
    main.add_command(demo.demo)


_register()
