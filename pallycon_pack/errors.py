"""Errors of the command line and its exit codes.

Exit codes: 0 success, 1 the API or the job failed (a request failed, was cancelled or stopped
at PallyCon, or is unknown), 2 bad usage, settings or input, 3 a service
we need is unavailable (Redis unreachable or refusing our credentials, a port in use), 4 not there
yet: a request has not ended (``submit --wait`` timed out; ``status`` of a request still in flight),
or ``health`` found a check failing.
"""

from __future__ import annotations

import click

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNAVAILABLE = 3
EXIT_TIMEOUT = 4
EXIT_UNHEALTHY = EXIT_TIMEOUT  # "not there yet", for the fleet


class Failure(click.ClickException):
    """An error shown as one clear message, with an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = exit_code

    @property
    def exit_code(self) -> int:  # type: ignore[override]  # click reads it as an attribute
        return self.code


class ListenError(OSError):
    """A server cannot listen on its address; ``strerror`` is one line saying where and why."""
