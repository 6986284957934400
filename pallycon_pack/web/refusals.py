"""Refused callbacks: counted in the counters hash (``pallycon_pack_callbacks_refused_total``)
and logged, the wrong-token ones sparingly.

Anyone who learns the receiver's address can post to it: a wrong token costs the receiver a log
line at most once a minute (the first at once; then one line saying how many more were refused
since) and no Redis write of its own: the counts are added up in memory and written at most once
a second (:data:`FLUSH_SECONDS`), as one pipeline, by a task that ends once nothing is left.
Other refusals (a body too large, too slow, or not a callback) come with the right token, so
from PallyCon or whoever has the secret: each is logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

import redis.asyncio
from redis.exceptions import RedisError

from pallycon_store.counters import Metric

log = logging.getLogger("pallycon_pack.callbacks")

#: The reason logged for a wrong token (or an unknown site).
WRONG_TOKEN = "wrong token"  # noqa: S105 - a log reason, not a secret
#: Seconds between two lines about wrong tokens at least.
LOG_EVERY = 60.0
#: Seconds between two writes of the counts at least.
FLUSH_SECONDS = 1.0


class Reason(Enum):
    """Why a callback was refused: its counter (and the metric's ``reason`` label)."""

    WRONG_TOKEN = Metric.CALLBACKS_REFUSED_WRONG_TOKEN
    TOO_LARGE = Metric.CALLBACKS_REFUSED_TOO_LARGE
    TOO_SLOW = Metric.CALLBACKS_REFUSED_TOO_SLOW
    NOT_A_CALLBACK = Metric.CALLBACKS_REFUSED_NOT_A_CALLBACK


@dataclass
class Sparing:
    """When to log a warning that may come thousands of times (pure): the first at once, then
    at most one line per ``every`` seconds, saying how many were held back since when."""

    every: float
    said: float | None = None  # when a line was last logged
    held: int = 0  # warnings not logged since
    held_since: float = 0.0  # when the first of them came

    def note(self, now: float) -> tuple[int, float] | None:
        """One more warning at ``now``: None to hold it back, else log it now along with the
        (count, since) of those held back."""
        if self.said is not None and now - self.said < self.every:
            if not self.held:
                self.held_since = now
            self.held += 1
            return None
        return self._said(now)

    def due(self, now: float) -> tuple[int, float] | None:
        """The (count, since) of warnings held back that are due a line at ``now``, if any."""
        if self.held and self.said is not None and now - self.said >= self.every:
            return self._said(now)
        return None

    def last(self, now: float) -> tuple[int, float] | None:
        """The (count, since) of warnings held back, due or not (the last line, at a stop)."""
        return self._said(now) if self.held else None

    def _said(self, now: float) -> tuple[int, float]:
        held = (self.held, self.held_since)
        self.said, self.held = now, 0
        return held


class Refusals:
    """The receiver's refusals: each counted, written to ``counters`` (a hash) in batches."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        counters: str,
        redis_timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.counters = counters
        self.redis_timeout = redis_timeout
        self.clock = clock
        self.pending: collections.Counter[Metric] = collections.Counter()
        self.sparing = Sparing(LOG_EVERY)
        self.task: asyncio.Task[None] | None = None

    def refused(self, reason: Reason, text: str, **fields: object) -> None:
        """A refused callback: counted, and logged (a wrong token sparingly); never the token
        given, never the body. Called from the event loop."""
        self.pending[reason.value] += 1
        if reason is not Reason.WRONG_TOKEN:
            _warn(text, fields)
        elif (held := self.sparing.note(self.clock())) is not None:
            _warn(text, {**fields, **_held(held)})
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._keep_up())

    async def _keep_up(self) -> None:
        """Write the counts and the held-back line as they fall due, until none is left."""
        while True:
            await self.flush()
            if (held := self.sparing.due(self.clock())) is not None:
                _warn(WRONG_TOKEN, _held(held))
            if not self.pending and not self.sparing.held:
                return
            await asyncio.sleep(FLUSH_SECONDS)

    async def flush(self) -> None:
        """Add the pending counts to the hash; kept for the next time if Redis fails."""
        counts, self.pending = self.pending, collections.Counter()
        if not counts:
            return
        try:
            async with asyncio.timeout(self.redis_timeout):
                pipe = self.client.pipeline(transaction=False)
                for metric, count in counts.items():
                    pipe.hincrby(self.counters, metric.value, count)
                await pipe.execute()
        except (RedisError, OSError):  # OSError: TimeoutError too
            self.pending.update(counts)

    async def close(self) -> None:
        """Stop the writer and write what is pending (the held-back line: logged now)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.flush()
        if (held := self.sparing.last(self.clock())) is not None:
            _warn(WRONG_TOKEN, _held(held))


def _held(held: tuple[int, float]) -> dict[str, object]:
    """The fields of a line that stands for warnings held back (none: no field)."""
    count, since = held
    if not count:
        return {}
    when = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
    return {"more_refused": count, "since": when}


def _warn(text: str, fields: dict[str, object]) -> None:
    """``callback refused: <text>``, and how many more were refused since when if held back."""
    more = ""
    if "more_refused" in fields:
        more = f" ({fields['more_refused']} more refused since {fields['since']}, not logged)"
    log.warning("callback refused: %s%s", text, more, extra={"fields": {"reason": text, **fields}})
