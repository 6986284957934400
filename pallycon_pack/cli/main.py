"""``pallycon-pack``: the one command-line entry point, with subcommands.

Exit codes (see :mod:`pallycon_pack.errors`): 0 success, 1 the API or the job failed (or a
request was cancelled or stopped at PallyCon), 2 bad usage, settings or input (or an unknown
request id), 3 a service we need is unavailable (Redis unreachable or refusing our
credentials, a port in use), 4 not there yet: a request has not ended (``submit --wait`` timed
out, ``status`` of a request in flight) or ``health`` found a check failing, 130 interrupted
(Ctrl-C), with one line saying what goes on and how to resume.

A subcommand's module is imported when that subcommand runs (or shows its help), not before:
``pallycon-pack --help`` lists them from :data:`COMMANDS`, in :data:`SECTIONS`, and loads none.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import click

#: The servers that stop at once on SIGTERM while they start (see
#: ``pallycon_pack.cli.servers.stopping``, loaded for them only).
SERVERS = ("worker", "callbacks", "metrics", "http")
#: The commands that log JSON lines on stderr (the long-running ones).
LOGS_JSON = (*SERVERS, "console", "emulator")


class Entry(NamedTuple):
    """Where a subcommand is defined, and what ``--help`` says of it."""

    #: The module defining it (under the command's name): a family's ``commands``, or the demo.
    module: str
    #: The first paragraph of its help, listed whole (a test keeps the two the same).
    summary: str


def _family(name: str) -> str:
    return f"pallycon_pack.cli.{name}.commands"


#: Each subcommand, and the module it is loaded from when it runs or shows its help.
COMMANDS: dict[str, Entry] = {
    "submit": Entry(
        _family("queue"),
        "Enqueue the packaging request in FILE ('-': stdin); print its request id.",
    ),
    "status": Entry(_family("queue"), "Print a request's state: job id, last status, error."),
    "results": Entry(
        _family("queue"), "Read the result channel: one event per change of every request."
    ),
    "requests": Entry(
        _family("requests"), "List the requests by state, or show one with its history."
    ),
    "retry": Entry(
        _family("requests"),
        "Re-drive failed requests under the same request id (their history goes on).",
    ),
    "cancel": Entry(
        _family("requests"),
        "Cancel requests that have not finished: they end cancelled, one line each saying how.",
    ),
    "health": Entry(
        _family("fleet"),
        "Check Redis, the API, the workers and the backlogs; exit 0 only when all pass.",
    ),
    "stats": Entry(
        _family("fleet"),
        "Print requests by state and stage, queues, lags, API calls by code and failures.",
    ),
    "pause": Entry(
        _family("fleet"),
        "Stop registering new jobs at PallyCon for a site, or every site, until resume.",
    ),
    "resume": Entry(
        _family("fleet"),
        "Lift a pause: registrations of the site (or of every site) go on, by priority.",
    ),
    "worker": Entry(
        _family("servers"),
        "Run a Celery worker: submits, polls, the sweeper, the intake, the webhooks.",
    ),
    "callbacks": Entry(
        _family("servers"),
        "Receive PallyCon's result callbacks at /callback/<PALLYCON_CALLBACK_TOKEN>.",
    ),
    "console": Entry(
        _family("servers"),
        "Serve the operators' read-only web console: counts, failures, requests, timelines.",
    ),
    "metrics": Entry(
        _family("servers"),
        "Serve Prometheus metrics of the whole fleet at /metrics, read from Redis at each scrape.",
    ),
    "http": Entry(
        _family("servers"),
        "Serve the HTTP API for producers: submit, read, retry and cancel requests over HTTP.",
    ),
    "emulator": Entry(
        _family("servers"),
        "Serve a PallyCon-compatible Packaging API (for development, tests and demos).",
    ),
    "sign": Entry(
        _family("api"),
        "Sign the API JSON read on stdin (or --input); print the pallycon-apidata value.",
    ),
    "storage": Entry(
        _family("api"),
        "Register, update and list the S3 storages PallyCon reads from and writes to.",
    ),
    "jobs": Entry(_family("api"), "Register, list and watch packaging jobs directly (no queue)."),
    "webhooks": Entry(
        _family("webhooks"),
        "Manage the endpoints signed webhooks (Standard Webhooks) go to.",
    ),
    "tokens": Entry(
        _family("tokens"),
        "Manage the bearer tokens of the HTTP API: one per upstream system.",
    ),
    "config": Entry(_family("config"), "Show the effective settings and where each one came from."),
    "demo": Entry(
        "pallycon_pack.demo.commands",
        "Run the whole pipeline end to end: Redis, emulator, worker, callbacks, N requests.",
    ),
}

#: ``--help``'s sections, in the order a user meets the commands.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Queue", ("submit", "status", "results")),
    ("Requests", ("requests", "retry", "cancel")),
    ("Fleet", ("health", "stats", "pause", "resume")),
    ("Servers", ("worker", "callbacks", "console", "metrics", "http", "emulator")),
    ("PallyCon API (direct)", ("sign", "storage", "jobs")),
    ("Upstream systems", ("webhooks", "tokens")),
    ("Setup", ("config", "demo")),
)


class _Group(click.Group):
    """Loads a subcommand when it is used; turns the project's errors into messages and exit
    codes, never tracebacks, and an interrupt (Ctrl-C) into exit 130 and the line the command
    named for it (:mod:`pallycon_pack.interrupts`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name in SERVERS:  # before the command's imports: a SIGTERM meanwhile stops it
            from pallycon_pack.cli.servers.stopping import stop_while_starting

            stop_while_starting(cmd_name)
        if cmd_name in LOGS_JSON:  # every line on stderr JSON: misspelt settings told there
            from pallycon_config.names import tell_in_log_only

            tell_in_log_only()
        module = importlib.import_module(COMMANDS[cmd_name].module)
        command = getattr(module, cmd_name)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with its whole summary, wrapped rather than cut off, one section per
        family of commands: it loads none."""
        for title, names in SECTIONS:
            with formatter.section(title):
                formatter.write_dl([(name, COMMANDS[name].summary) for name in names])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # Ctrl-C: exit 130, the command's line of what goes on
            raise _interrupted(ctx) from None
        except click.exceptions.Abort as exc:  # a prompt's Ctrl-C, or end of input
            if isinstance(exc.__context__, KeyboardInterrupt):
                raise _interrupted(ctx) from None
            raise
        except (click.ClickException, click.exceptions.Exit):
            raise
        except Exception as exc:
            # Loads redis, kombu and the settings: only once an error has happened.
            from pallycon_pack.problems import failure_of

            failure = failure_of(exc)
            if failure is None:
                raise
            raise failure from None


def _interrupted(ctx: click.Context) -> click.ClickException:
    """The interrupt's Failure: loaded only once one has happened (``--help`` stays light)."""
    from pallycon_pack.interrupts import interrupted

    return interrupted(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pallycon-pack")
def main() -> None:
    """Bridge between your systems and PallyCon's forensic watermarking Packaging API.

    Settings come from PALLYCON_* environment variables or a .env file (see .env.example).
    """
