"""The worker's background loops (sweeper, intake, webhooks): supervised, and their health in Redis.

A loop is a function that runs until ``stop`` is set and handles the errors it expects
(Redis going away) itself, with a backoff. Anything else it raises is a defect: the supervisor
logs it with a traceback, records it, backs off and starts the loop again, so that no loop dies
silently while its worker looks healthy.

Each loop reports how it is doing to :class:`LoopHealth`: a JSON value per loop in the hash
``<prefix>:heartbeats`` (field ``<node>/<loop>``) with the time of its last good round, its last
error and how often it was restarted, in the format of :mod:`pallycon_store.heartbeats`, which reads
them (``health``, ``stats``, the exporter). A loop stopped on purpose (its worker shutting
down) removes its heartbeat: a worker that was stopped is gone, not unhealthy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from pallycon_store import heartbeats
from pallycon_store.connect import REDIS_AWAY
from pallycon_store.keys import Keys

log = logging.getLogger("pallycon_pack.worker")

#: Errors that say Redis is away or cannot take writes for now (not that a command is wrong):
#: a loop waits them out. Any other error is a defect that the supervisor restarts the loop on.
TRANSIENT: tuple[type[Exception], ...] = (*REDIS_AWAY, redis.exceptions.OutOfMemoryError, OSError)

#: The longest pause between two attempts of a failing loop, in seconds.
MAX_PAUSE = 10.0


def next_pause(pause: float) -> float:
    """The pause after one more failure: doubled, at most :data:`MAX_PAUSE`."""
    return min(pause * 2, MAX_PAUSE)


@dataclass
class LoopHealth:
    """The heartbeats of this worker's loops, written to one Redis hash (best effort)."""

    client: redis.Redis
    keys: Keys
    node: str
    clock: Callable[[], float] = time.time
    _state: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)
    _written: dict[str, float] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def ok(self, loop: str) -> None:
        """A round of ``loop`` went well (written at most every
        ``pallycon_store.heartbeats.WRITE_EVERY`` s)."""
        now = self.clock()
        with self._lock:
            state = self._loop(loop)
            was_failing = bool(state.get("failing"))
            state.update(ok_at=now, failing=False)
            due = was_failing or now - self._written.get(loop, 0.0) >= heartbeats.WRITE_EVERY
        if due:
            self._write(loop)

    def note(self, loop: str, **facts: Any) -> None:
        """Facts of ``loop`` its heartbeat carries from its next write (the webhooks loop's
        ``signs``)."""
        with self._lock:
            self._loop(loop).update(facts)

    def failed(self, loop: str, error: BaseException, *, restarted: bool = False) -> None:
        """A round of ``loop`` failed with ``error`` (and the loop was restarted)."""
        with self._lock:
            state = self._loop(loop)
            state.update(failing=True, error=_one_line(error), error_at=self.clock())
            if restarted:
                state["restarts"] = state.get("restarts", 0) + 1
        self._write(loop)

    def forget(self, loop: str) -> None:
        """``loop`` stopped as asked: its heartbeat is removed (best effort: if Redis is away,
        it ages out: read as unhealthy, then as gone after
        ``pallycon_store.heartbeats.GONE_AFTER``)."""
        with self._lock:
            self._state.pop(loop, None)
            self._written.pop(loop, None)
        with contextlib.suppress(*TRANSIENT):
            self.client.hdel(self.keys.heartbeats, heartbeats.field(self.node, loop))

    def _loop(self, loop: str) -> dict[str, Any]:
        return self._state.setdefault(
            loop, {"node": self.node, "loop": loop, "pid": os.getpid(), "restarts": 0}
        )

    def _write(self, loop: str) -> None:
        with self._lock:
            value = heartbeats.encode(self._state[loop])
            self._written[loop] = self.clock()
        # If Redis is away, the loop says so in its log, and its old heartbeat reads as stale.
        with contextlib.suppress(*TRANSIENT):
            self.client.hset(self.keys.heartbeats, heartbeats.field(self.node, loop), value)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}"[: heartbeats.MAX_ERROR]


def supervise(
    name: str, loop: Callable[[], None], stop: threading.Event, health: LoopHealth
) -> None:
    """Run ``loop`` until ``stop``; restart it (after a backoff) whenever it raises. Once
    stopped, its heartbeat is removed and the log says so."""
    pause = 0.5
    while not stop.is_set():
        try:
            loop()
        except Exception as exc:  # a defect: visible (log, health), then the loop starts again
            log.exception("%s loop failed; restarting it in %.1fs", name, pause)
            health.failed(name, exc, restarted=True)
            stop.wait(pause)
            pause = next_pause(pause)
    health.forget(name)
    log.info("%s loop stopped", name)
