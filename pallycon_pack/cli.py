"""``pallycon-pack``: the one command-line entry point, with subcommands.

Exit codes (see :mod:`pallycon_pack.errors`): 0 success, 1 the API or the job failed, 2 bad
usage, settings or input, 3 a service we need is unavailable (Redis unreachable or refusing our
credentials, a port in use).
"""

from __future__ import annotations

from typing import Any

import click
import redis
from kombu.exceptions import OperationalError as KombuOperationalError

from config import ConfigError, load_settings
from config.settings import mask_url
from pallycon.errors import CallError, InvalidRequest, RequestNotBuilt
from pallycon_pack.errors import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_UNAVAILABLE,
    Failure,
    ListenError,
)


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
        except RequestNotBuilt as exc:  # the request itself cannot be sent: bad input
            raise Failure(f"{type(exc).__name__}: {exc}", EXIT_INVALID) from None
        except CallError as exc:
            raise Failure(f"{type(exc).__name__}: {exc}", EXIT_FAILED) from None
        except redis.RedisError as exc:
            raise Failure(redis_problem(exc), EXIT_UNAVAILABLE) from None
        except ListenError as exc:
            raise Failure(exc.strerror or str(exc), EXIT_UNAVAILABLE) from None
        except KombuOperationalError as exc:  # the broker (Redis) refused a task message
            raise Failure(redis_problem(exc), EXIT_UNAVAILABLE) from None


def redis_problem(exc: Exception) -> str:
    """One line that names PALLYCON_REDIS_URL (password masked) and what to do."""
    try:
        url = mask_url(load_settings().redis_url)
    except ConfigError:
        url = "PALLYCON_REDIS_URL"
    reason = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.AuthorizationError) or any(
        word in reason for word in ("WRONGPASS", "NOAUTH", "NOPERM", "invalid password")
    ):
        advice = "check the user and password in PALLYCON_REDIS_URL"
    elif isinstance(exc, redis.ConnectionError | redis.TimeoutError | KombuOperationalError):
        advice = "is it running and reachable? (PALLYCON_REDIS_URL)"
    else:
        advice = "see PALLYCON_REDIS_URL"
    return f"Redis at {url}: {reason}; {advice}"


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
