"""Errors of the command line and its exit codes.

Exit codes: 0 success, 1 the API or the job failed (a request failed, was cancelled or stopped
at PallyCon), 2 bad usage, settings or input (a request id that names no request too), 3 a service
we need is unavailable (Redis unreachable or refusing our credentials, a port in use), 4 not there
yet: a request has not ended (``submit --wait`` timed out; ``status`` of a request still in flight),
or ``health`` found a check failing, 130 interrupted (Ctrl-C: SIGINT).
"""

from __future__ import annotations

import sys
from typing import IO, Any

import click

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNAVAILABLE = 3
EXIT_TIMEOUT = 4
EXIT_UNHEALTHY = EXIT_TIMEOUT  # "not there yet", for the fleet
EXIT_NOT_FOUND = EXIT_INVALID  # a request id that names no request: bad input, not a failed job
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command that Ctrl-C stopped


class Failure(click.ClickException):
    """An error shown as one clear message, with an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = exit_code

    @property
    def exit_code(self) -> int:  # type: ignore[override]  # click reads it as an attribute
        return self.code


class Interrupted(Failure):
    """Ctrl-C (SIGINT) stopped the command: exit 130, and one line (no ``Error:``) saying what
    carries on and how to resume."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_INTERRUPTED)

    def show(self, file: IO[Any] | None = None) -> None:
        stream = file if file is not None else sys.stderr
        if stream.isatty():  # below the "^C" the terminal echoed
            click.echo(file=stream)
        click.echo(self.format_message(), file=stream)


class ListenError(OSError):
    """A server cannot listen on its address; ``strerror`` is one line saying where and why."""
