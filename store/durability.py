"""Waiting until Redis has written a change to disk before it is relied on."""

from __future__ import annotations

import logging

import redis

log = logging.getLogger("pallycon_pack.store")


class Durability:
    """``WAITAOF`` before a producer is told its request is accepted and before a job is
    registered, so that a Redis crash cannot forget either.

    ``wait_ms`` 0 waits for nothing. On a server without AOF or without ``WAITAOF`` (Redis
    before 7.2) there is nothing to wait for: that is said once, in :attr:`unavailable` and
    a warning, and the waits are skipped from then on.
    """

    def __init__(self, client: redis.Redis, wait_ms: int) -> None:
        self.redis = client
        self.wait_ms = wait_ms
        self.unavailable = ""  # why waits are skipped, once the server said so

    def wait(self) -> None:
        """Return once Redis has fsynced its AOF up to now; ``redis.TimeoutError`` when it
        does not within ``wait_ms``."""
        if not self.wait_ms or self.unavailable:
            return
        try:
            reply = self.redis.execute_command(  # type: ignore[no-untyped-call]
                "WAITAOF", 1, 0, self.wait_ms
            )
        except redis.ResponseError as exc:
            self.unavailable = str(exc)
            log.warning(
                "not waiting for AOF fsync (%s): a Redis crash may lose the last second", exc
            )
            return
        if int(reply[0]) < 1:
            raise redis.TimeoutError(f"Redis did not fsync within {self.wait_ms} ms")
