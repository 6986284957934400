"""The callback receiver's poll tasks, coalesced across jobs: the polls its callbacks claim
within a short window go out as one poll task (one job-list pass for all their jobs), not one
task (and one API call) per job.

A batch opens with its first request id and is sent :data:`BATCH_SECONDS` later, or as soon as
it holds :data:`BATCH_MOST` ids; it is sent from one publisher thread, one batch after the
other. A callback is answered without waiting for its batch: its claim (in Redis, with a lease)
is what counts, and a poll whose task is lost comes back after the lease. Only when the broker
falls behind (more than :data:`MAX_UNSENT` ids not sent) does a callback wait for its batch, up
to ``PUBLISH_TIMEOUT``, so that a stalled broker slows the callers instead of filling memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from kombu.exceptions import KombuError
from redis.exceptions import RedisError

log = logging.getLogger("pallycon_pack.callbacks")

#: A batch of callback polls is sent at most this long after its first request id (seconds).
BATCH_SECONDS = 0.05
#: ... or as soon as it holds this many request ids (one poll task carries them all: at most
#: :data:`pallycon_store.messages.POLL_CHUNK`).
BATCH_MOST = 1000
#: Past this many request ids waiting to be sent, a callback waits for its batch to go out.
MAX_UNSENT = 10 * BATCH_MOST

#: A failed send that is expected (the broker away or slow): a warning line, no traceback.
SEND_ERRORS = (KombuError, RedisError, OSError)


class PollBatches:
    """Request ids gathered into batches, each sent by ``publish(ids)`` from a publisher thread
    (it may block); ``lease_seconds`` (the sweepers' lease) is only named in a failure's log."""

    def __init__(
        self,
        publish: Callable[[list[str]], None],
        *,
        lease_seconds: float,
        window: float = BATCH_SECONDS,
        most: int = BATCH_MOST,
    ) -> None:
        self.publish = publish
        self.lease_seconds = lease_seconds
        self.window = window
        self.most = most
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="pallycon-publish")
        self.open: list[str] = []  # the batch gathering ids
        self.opened: asyncio.Future[None] | None = None  # done once the open batch is sent
        self.timer: asyncio.TimerHandle | None = None
        self.unsent = 0  # ids added and not yet sent (or failed)
        self.sending: set[asyncio.Future[None]] = set()

    def add(self, request_id: str) -> asyncio.Future[None]:
        """Put ``request_id`` in the open batch (opening one if none is): a future done once
        that batch was sent or failed to be (it never raises: a failure is logged)."""
        if self.opened is None:
            loop = asyncio.get_running_loop()
            self.opened = loop.create_future()
            self.timer = loop.call_later(self.window, self.flush)
        sent = self.opened
        self.open.append(request_id)
        self.unsent += 1
        if len(self.open) >= self.most:
            self.flush()
        return sent

    @property
    def behind(self) -> bool:
        """More ids wait to be sent than :data:`MAX_UNSENT`: the broker is not keeping up."""
        return self.unsent > MAX_UNSENT

    def flush(self) -> None:
        """Send the open batch now (from the publisher thread); nothing if none is open."""
        ids, sent = self.open, self.opened
        if sent is None:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.open, self.opened, self.timer = [], None, None
        sending = asyncio.wrap_future(self.thread.submit(self.publish, ids))
        self.sending.add(sending)
        sending.add_done_callback(lambda done: self._sent(ids, sent, done))

    def _sent(self, ids: list[str], sent: asyncio.Future[None], done: asyncio.Future[None]) -> None:
        self.sending.discard(done)
        self.unsent -= len(ids)
        error = None if done.cancelled() else done.exception()
        if isinstance(error, SEND_ERRORS):
            log.warning(
                "poll task of %d callback(s) not sent (%s); their polls come back after the "
                "lease (%g s)",
                len(ids),
                str(error) or type(error).__name__,
                self.lease_seconds,
            )
        elif error is not None:
            log.error("poll task of %d callback(s) not sent", len(ids), exc_info=error)
        if not sent.done():
            sent.set_result(None)

    async def close(self, timeout: float) -> None:
        """Send the open batch and wait up to ``timeout`` seconds for every send under way;
        then stop the publisher thread (what is left comes back after the lease)."""
        self.flush()
        if self.sending:
            await asyncio.wait(set(self.sending), timeout=timeout)
        self.thread.shutdown(wait=False)
