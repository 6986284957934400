"""``pallycon-pack``: the one command-line entry point, with subcommands.

Exit codes (see :mod:`pallycon_pack.errors`): 0 success, 1 the API or the job failed, 2 bad
usage, settings or input, 3 a service we need is unavailable (Redis unreachable or refusing our
credentials, a port in use), 4 not there yet: a request has not ended (``submit --wait`` timed
out, ``status`` of a request in flight) or ``health`` found a check failing.

A subcommand's module is imported when that subcommand runs (or shows its help), not before:
``pallycon-pack --help`` lists them from :data:`COMMANDS` and loads none.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

#: Each subcommand: the module of pallycon_pack defining it (under the command's name), and the
#: first paragraph of its help, which ``--help`` lists whole (a test keeps the two the same).
COMMANDS: dict[str, tuple[str, str]] = {
    "callbacks": (
        "cli.servers.commands",
        "Receive PallyCon's result callbacks at /callback/<PALLYCON_CALLBACK_TOKEN>.",
    ),
    "config": ("cli.config.commands", "Show the effective settings and where each one came from."),
    "console": (
        "web.console.app",
        "Serve the operators' read-only web console: counts, failures, requests, timelines.",
    ),
    "demo": (
        "demo",
        "Run the whole pipeline end to end: Redis, emulator, worker, callbacks, N requests.",
    ),
    "emulator": (
        "cli.servers.emulator_sites",
        "Serve a PallyCon-compatible Packaging API (for development, tests and demos).",
    ),
    "health": (
        "cli.fleet.commands",
        "Check Redis, the API, the workers and the backlogs; exit 0 only when all pass.",
    ),
    "jobs": ("cli.api.commands", "Register, list and watch packaging jobs directly (no queue)."),
    "metrics": (
        "cli.servers.metrics",
        "Serve Prometheus metrics of the whole fleet at /metrics, read from Redis at each scrape.",
    ),
    "requests": (
        "cli.requests.commands",
        "List the requests by state, or show one with its history.",
    ),
    "results": (
        "cli.queue.commands",
        "Read the result channel: one event per change of every request.",
    ),
    "retry": (
        "cli.requests.commands",
        "Re-drive failed requests under the same request id (their history goes on).",
    ),
    "sign": (
        "cli.api.commands",
        "Sign the API JSON read on stdin (or --input); print the pallycon-apidata value.",
    ),
    "stats": (
        "cli.fleet.commands",
        "Print requests by state and stage, queues, lags, API calls by code and failures.",
    ),
    "status": ("cli.queue.commands", "Print a request's state: job id, last status, error."),
    "storage": (
        "cli.api.commands",
        "Register, update and list the S3 storages PallyCon reads from and writes to.",
    ),
    "submit": (
        "cli.queue.commands",
        "Enqueue the packaging request in FILE ('-': stdin); print its request id.",
    ),
    "worker": (
        "cli.servers.commands",
        "Run a Celery worker: submits, polls, the sweeper and the stream intake.",
    ),
}


class _Group(click.Group):
    """Loads a subcommand when it is used; turns the project's errors into messages and exit
    codes, never tracebacks."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"pallycon_pack.{COMMANDS[cmd_name][0]}")
        command = getattr(module, cmd_name)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with its whole summary, wrapped rather than cut off: it loads none."""
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            # Loads redis, kombu and the settings: only once an error has happened.
            from pallycon_pack.problems import failure_of

            failure = failure_of(exc)
            if failure is None:
                raise
            raise failure from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pallycon-pack")
def main() -> None:
    """Bridge between your systems and PallyCon's forensic watermarking Packaging API.

    Settings come from PALLYCON_* environment variables or a .env file (see .env.example).
    """
