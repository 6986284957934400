"""The token bucket that every worker takes from before calling the API, on Redis's clock."""

from __future__ import annotations

import redis

from store.keys import Keys
from store.scripts import register

#: An idle bucket expires after this long (ms): it is full again by then anyway.
IDLE_EXPIRY_MS = 60_000


class TokenBucket:
    def __init__(self, client: redis.Redis, keys: Keys, *, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._keys = [keys.rate_limit, keys.counters]
        self._take = register(client, "bucket")

    def take(self, count_as: str = "") -> float:
        """Seconds to wait before calling the API (0: go now, the token is taken and the call
        counted under ``count_as``, see :func:`store.counters.api_call`)."""
        args: list[str | float] = [self.rate, self.burst, count_as, IDLE_EXPIRY_MS]
        return int(self._take(keys=self._keys, args=args)) / 1000
