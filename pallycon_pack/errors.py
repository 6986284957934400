"""Errors of the command line's own processes (the CLI maps each to an exit code)."""

from __future__ import annotations


class ListenError(OSError):
    """A server cannot listen on its address; ``strerror`` is one line saying where and why."""
