"""Ctrl-C in any command: exit 130 and one line saying what carries on and how to resume.

A command names that line as it goes (:func:`on_interrupt`, a text or a function read at the
moment of the interrupt); the command group turns the interrupt into it (:func:`interrupted`),
never a traceback. A server that stops by itself on SIGINT (uvicorn, Celery)
raises ``KeyboardInterrupt`` once stopped, so that it ends the same way. Light: the standard
library and click only (the group loads it before any command).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import click

from pallycon_pack.errors import Interrupted

#: Where the running command keeps its line (click's ``meta`` is shared by the whole call).
KEY = "pallycon_pack.on_interrupt"
#: The line of a command that named none: it leaves nothing behind.
PLAIN = "interrupted"

Say = str | Callable[[], str]


def on_interrupt(say: Say) -> None:
    """From now on, an interrupt of the running command says ``say`` (a function: what it
    returns then). Outside a command (the Python API), nothing."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[KEY] = say


def interrupted(ctx: click.Context) -> Interrupted:
    """The Failure (exit 130) of an interrupt of the command run in ``ctx``: its line."""
    say: Say = ctx.meta.get(KEY, PLAIN)
    return Interrupted(say() if callable(say) else say)


def server_stopped(name: str) -> str:
    """The line of a server stopped by Ctrl-C: nothing of it goes on."""
    return f"{name} stopped (interrupted)"


@contextmanager
def finishing() -> Iterator[None]:
    """Run the block to its end despite a Ctrl-C, then raise it (``KeyboardInterrupt``); a
    second Ctrl-C stops the block at once. For a step whose outcome must be known (a chunk of a
    batch being recorded). Only the main thread gets signals: elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def defer(signum: int, frame: FrameType | None) -> None:
        if caught:
            raise KeyboardInterrupt
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, defer)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
