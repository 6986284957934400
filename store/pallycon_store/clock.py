"""One clock for schedules: Redis's.

Schedule entries are due at times the workers compute (``now + delay``) and compare (``due <=
now``); a worker whose clock is fast would write entries that come due late for everyone, and
one that is slow would take them early. So a worker's ``now`` is its own clock corrected by the
Redis server's (``TIME``), read in the same round trip as the records a step reads: every
worker shares the server's idea of now, within a round trip's half.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def server_time(reply: tuple[int, int] | list[int]) -> float:
    """Redis ``TIME``'s reply (seconds, microseconds) as seconds."""
    seconds, micros = reply
    return int(seconds) + int(micros) / 1_000_000


def offset_of(server: float, before: float, after: float) -> float:
    """How far the server's clock is ahead of ours, from a ``TIME`` read between our
    ``before`` and ``after`` (its answer taken as of the middle). Pure."""
    return server - (before + after) / 2


class ServerClock:
    """A clock that reads the local one plus the offset last observed to the Redis server."""

    def __init__(self, local: Callable[[], float] = time.time) -> None:
        self.local = local
        self.offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.local() + self.offset

    def observe(self, reply: tuple[int, int] | list[int], before: float, after: float) -> None:
        """A ``TIME`` reply read between ``before`` and ``after`` (local clock)."""
        with self._lock:
            self.offset = offset_of(server_time(reply), before, after)


def execute(pipe: Any, clock: ServerClock | None) -> list[Any]:
    """Run a pipeline; with ``clock``, Redis's ``TIME`` is read in the same round trip and
    observed by it (its reply is not among those returned)."""
    if clock is None:
        return list(pipe.execute())
    pipe.time()
    before = clock.local()
    replies = list(pipe.execute())
    clock.observe(replies.pop(), before, clock.local())
    return replies
