"""The token bucket that every worker takes from before calling the API, on Redis's clock."""

from __future__ import annotations

import math
from collections.abc import Sequence

import redis

from pallycon_store.keys import Keys
from pallycon_store.scripts import register

#: An idle bucket expires after this long (ms), or once it is full again if that takes longer:
#: by then it is full anyway.
IDLE_EXPIRY_MS = 60_000


class TokenBucket:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        rate: float,
        burst: int,
        site_id: str,
        key: str | None = None,
    ) -> None:
        """The bucket of one site (``site_id`` "": the default site's, as before sites); with
        ``key``, the bucket at that key instead (another limit: an HTTP API token's)."""
        self.rate, self.burst = rate, burst
        self.redis = client
        self._keys = [key or keys.rate_limit_of(site_id), keys.counters, keys.api_calls]
        self._take = register(client, "bucket")

    def take(self, count_as: str = "", also: Sequence[tuple[str, int]] = ()) -> float:
        """Seconds to wait before calling the API (0: go now, the token is taken and the call
        counted under ``count_as``, see :func:`pallycon_store.api_calls.api_call`). ``also``: counts
        added to the API call statistics in the same call, granted or not (``CallStats``)."""
        refill_ms = math.ceil(self.burst / self.rate * 1000) if self.rate > 0 else 0
        idle = max(IDLE_EXPIRY_MS, refill_ms)
        args: list[str | float] = [self.rate, self.burst, count_as, idle]
        for name, amount in also:
            args += [name, amount]
        return int(self._take(keys=self._keys, args=args)) / 1000

    def add(self, counters: Sequence[tuple[str, int]]) -> None:
        """Add to the API call statistics without taking a token (a quiet process's counts)."""
        if counters:
            pipe = self.redis.pipeline(transaction=False)
            for name, amount in counters:
                pipe.hincrby(self._keys[2], name, amount)
            pipe.execute()
