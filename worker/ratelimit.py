"""A global rate limit toward the API: every worker takes a token from one Redis bucket.

It wraps the httpx transport, so the protocol client stays unaware of it. Each request waits
for a token; one that cannot get a token within :data:`MAX_TOKEN_WAIT` fails before anything
is sent (``httpx.ConnectTimeout``, which the client reports as ``RequestNotSent``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import redis

from store.counters import api_call
from store.ratelimit import TokenBucket

#: The longest a call waits for a token (seconds). A task may wait this long per call: the
#: lease (PALLYCON_LEASE_SECONDS) must cover it (docs/OPERATIONS.md).
MAX_TOKEN_WAIT = 30.0


class RateLimitedTransport(httpx.BaseTransport):
    def __init__(
        self,
        inner: httpx.BaseTransport,
        bucket: TokenBucket,
        *,
        max_wait: float = MAX_TOKEN_WAIT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._inner = inner
        self._bucket = bucket
        self._max_wait = max_wait
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        api = urlsplit(str(request.url)).path.split("/")[3:4] or ["?"]
        counter = api_call(request.method, api[0])
        waited = 0.0
        while (wait := self._take(counter)) > 0:
            if waited + wait > self._max_wait:
                raise httpx.ConnectTimeout(f"rate limit: no token within {self._max_wait:g} s")
            self._sleep(wait)
            waited += wait
        return self._inner.handle_request(request)

    def _take(self, counter: str) -> float:
        """Seconds to wait for a token; a Redis error says nothing was sent (a connect error)."""
        try:
            return self._bucket.take(counter)
        except redis.RedisError as exc:
            raise httpx.ConnectError(f"rate limit: Redis unavailable ({exc})") from exc

    def close(self) -> None:
        self._inner.close()
