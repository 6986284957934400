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
from typing import TYPE_CHECKING, Any

import click

from pallycon_pack.errors import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_UNAVAILABLE,
    Failure,
    ListenError,
)

if TYPE_CHECKING:
    from pallycon_config import RedisTarget

#: Each subcommand: the module of pallycon_pack defining it (under the command's name), and the
#: first paragraph of its help, which ``--help`` lists whole (a test keeps the two the same).
COMMANDS: dict[str, tuple[str, str]] = {
    "callbacks": (
        "process_commands",
        "Receive PallyCon's result callbacks at /callback/<PALLYCON_CALLBACK_TOKEN>.",
    ),
    "config": ("config_command", "Show the effective settings and where each one came from."),
    "console": (
        "console",
        "Serve the operators' read-only web console: counts, failures, requests, timelines.",
    ),
    "demo": (
        "demo",
        "Run the whole pipeline end to end: Redis, emulator, worker, callbacks, N requests.",
    ),
    "emulator": (
        "emulator_command",
        "Serve a PallyCon-compatible Packaging API (for development, tests and demos).",
    ),
    "health": (
        "ops_commands",
        "Check Redis, the API, the workers and the backlogs; exit 0 only when all pass.",
    ),
    "jobs": ("api_commands", "Register, list and watch packaging jobs directly (no queue)."),
    "metrics": (
        "metrics_command",
        "Serve Prometheus metrics of the whole fleet at /metrics, read from Redis at each scrape.",
    ),
    "requests": ("requests_commands", "List the requests by state, or show one with its history."),
    "results": (
        "queue_commands",
        "Read the result channel: one event per change of every request.",
    ),
    "retry": (
        "requests_commands",
        "Re-drive failed requests under the same request id (their history goes on).",
    ),
    "sign": (
        "api_commands",
        "Sign the API JSON read on stdin (or --input); print the pallycon-apidata value.",
    ),
    "stats": (
        "ops_commands",
        "Print requests by state and stage, queues, lags, API calls by code and failures.",
    ),
    "status": ("queue_commands", "Print a request's state: job id, last status, error."),
    "storage": (
        "api_commands",
        "Register, update and list the S3 storages PallyCon reads from and writes to.",
    ),
    "submit": (
        "queue_commands",
        "Enqueue the packaging request in FILE ('-': stdin); print its request id.",
    ),
    "worker": (
        "process_commands",
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
            failure = _failure(exc)
            if failure is None:
                raise
            raise failure from None


def _failure(exc: Exception) -> Failure | None:
    """The one-line Failure for one of the project's errors; None for any other.

    The error classes are imported here, once an error has happened, not at start-up.
    """
    from pallycon_config import ConfigError

    from pallycon.errors import CallError, InvalidRequest, RequestNotBuilt

    if isinstance(exc, ConfigError):
        return Failure(str(exc), EXIT_INVALID)
    if isinstance(exc, InvalidRequest):
        lines = "\n".join(f"  {error}" for error in exc.errors)
        return Failure(f"invalid request:\n{lines}", EXIT_INVALID)
    if isinstance(exc, RequestNotBuilt):  # the request itself cannot be sent: bad input
        return Failure(f"{type(exc).__name__}: {exc}", EXIT_INVALID)
    if isinstance(exc, CallError):
        return Failure(f"{type(exc).__name__}: {exc}", EXIT_FAILED)
    if isinstance(exc, ListenError):
        return Failure(exc.strerror or str(exc), EXIT_UNAVAILABLE)
    import redis
    from kombu.exceptions import OperationalError as KombuOperationalError

    # Redis, or the broker (Redis) refusing a task message.
    if isinstance(exc, redis.RedisError | KombuOperationalError):
        return Failure(redis_problem(exc), EXIT_UNAVAILABLE)
    return None


def redis_problem(exc: Exception, target: RedisTarget | None = None) -> str:
    """One line that names where Redis is (password masked), the setting, and what to do.

    ``target``: where Redis is, if the caller has it; else it is read from the settings,
    leaving out the secret files (only the address is shown)."""
    import redis
    from kombu.exceptions import OperationalError as KombuOperationalError
    from pallycon_store.connect import describe, login_refused, sentinels_refused

    if target is None:
        target = _redis_target()
    url, where = "PALLYCON_REDIS_URL", "PALLYCON_REDIS_URL"
    if target is not None:
        url = target.shown()
        if target.sentinels:
            where = "PALLYCON_REDIS_SENTINELS, PALLYCON_REDIS_MASTER_NAME"
    reason = describe(exc)
    if sentinels_refused(exc):  # the reason names the setting
        return f"Redis at {url}: {reason}"
    if login_refused(exc):
        advice = "check the user and password (PALLYCON_REDIS_URL, PALLYCON_REDIS_PASSWORD)"
    elif isinstance(exc, redis.ConnectionError | redis.TimeoutError | KombuOperationalError):
        advice = f"is it running and reachable? ({where})"
    else:
        advice = f"see {where}"
    return f"Redis at {url}: {reason}; {advice}"


def _redis_target() -> RedisTarget | None:
    """Where Redis is, from the settings without their secret files (none of them says where);
    None if the settings are invalid."""
    from pallycon_config import ConfigError, Settings, env_name
    from pallycon_config.settings import read_settings

    try:
        return read_settings(Settings, env_name, {}, environ={}).redis
    except ConfigError:
        return None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pallycon-pack")
def main() -> None:
    """Bridge between your systems and PallyCon's forensic watermarking Packaging API.

    Settings come from PALLYCON_* environment variables or a .env file (see .env.example).
    """
