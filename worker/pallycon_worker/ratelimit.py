"""A global rate limit toward the API: every worker takes a token from one Redis bucket.

It wraps the httpx transport, so the protocol client stays unaware of it. Each request waits
for a token; one that cannot get a token within :data:`MAX_TOKEN_WAIT` fails before anything
is sent (``httpx.ConnectTimeout``, which the client reports as ``RequestNotSent``).

It also measures each call: its outcome (the answer's ``error_code``, an HTTP error or a
transport error, :func:`pallycon_store.api_calls.outcome_code`) and its duration, from sending the
request to the end of the answer's body. Those counts ride along with the next token request (the
same script call: no Redis round trip per call); a process that goes quiet sends what it holds after
:data:`FLUSH_EVERY` seconds, from a background thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import redis

from pallycon_store.api_calls import ApiMetric, CallStats, api_call
from pallycon_store.ratelimit import TokenBucket

#: The longest a call waits for a token (seconds). A task may wait this long per call: the
#: lease (PALLYCON_LEASE_SECONDS) must cover it (docs/OPERATIONS.md).
MAX_TOKEN_WAIT = 30.0
#: A process holds its calls' counts at most this long (seconds) before sending them itself.
FLUSH_EVERY = 2.0
#: How much of an answer's body is searched for its ``error_code``.
PEEK_BYTES = 4096
_ERROR_CODE = re.compile(rb'"error_code"\s*:\s*"?([A-Za-z0-9]{1,16})')

#: Set where a call's token was taken beforehand (:meth:`RateLimitedTransport.acquire`): the
#: transport then sends it without taking another.
PREPAID: contextvars.ContextVar[bool] = contextvars.ContextVar("pallycon_prepaid", default=False)


class RateLimitedTransport(httpx.BaseTransport):
    def __init__(
        self,
        inner: httpx.BaseTransport,
        bucket: TokenBucket,
        *,
        max_wait: float = MAX_TOKEN_WAIT,
        sleep: Callable[[float], None] = time.sleep,
        stats: CallStats | None = None,
        background_flush: bool = True,
    ) -> None:
        self._inner = inner
        self._bucket = bucket
        self._max_wait = max_wait
        self._sleep = sleep
        self.stats = stats or CallStats()
        self._background = background_flush
        self._flusher: tuple[int, threading.Thread] | None = None
        self._stop = threading.Event()

    def acquire(self, method: str, api: str) -> None:
        """Take the token of one call to ``api`` now (waiting for it as a call would), for a
        call sent later with :data:`PREPAID` set: so that the moment it leaves is known.
        ``httpx.ConnectTimeout`` if none comes within the wait, ``httpx.ConnectError`` if
        Redis is away (nothing was sent either way)."""
        counter = api_call(method, api)
        waited = 0.0
        while (wait := self._take(counter)) > 0:
            if waited + wait > self._max_wait:
                self.stats.record(method, api, "no_token", None)
                self._note_waited(waited)
                raise httpx.ConnectTimeout(f"rate limit: no token within {self._max_wait:g} s")
            self._sleep(wait)
            waited += wait
        self._note_waited(waited)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        api = urlsplit(str(request.url)).path.split("/")[3:4] or ["?"]
        method = request.method
        if not PREPAID.get():
            self.acquire(method, api[0])
        self._start_flusher()
        start = time.perf_counter()
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError as exc:
            self.stats.record(method, api[0], _failure(exc), time.perf_counter() - start)
            raise
        if response.status_code != httpx.codes.OK:
            code = _http_outcome(response.status_code)
            self.stats.record(method, api[0], code, time.perf_counter() - start)
            return response
        if isinstance(response.stream, httpx.ByteStream):  # already in memory: count it now
            body = b"".join(response.stream)
            code = error_code(body, body)
            self.stats.record(method, api[0], code, time.perf_counter() - start)
            return response
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _Measured(response.stream, self.stats, method, api[0], start)
        return response

    def _note_waited(self, waited: float) -> None:
        if waited > 0:
            self.stats.add(ApiMetric.RATE_LIMIT_WAITS)
            self.stats.add(ApiMetric.RATE_LIMIT_WAIT_MS, round(waited * 1000))

    def _take(self, counter: str) -> float:
        """Seconds to wait for a token; a Redis error says nothing was sent (a connect error).

        The calls' counts held so far go with it; kept for the next one if Redis fails."""
        held = self.stats.drain()
        try:
            return self._bucket.take(counter, held)
        except redis.RedisError as exc:
            self.stats.restore(held)
            raise httpx.ConnectError(f"rate limit: Redis unavailable ({exc})") from exc

    def _start_flusher(self) -> None:
        """The thread that sends held counts when this process goes quiet (one per process:
        a forked child starts its own)."""
        if not self._background:
            return
        current = self._flusher
        if current is not None and current[0] == os.getpid() and current[1].is_alive():
            return
        thread = threading.Thread(target=self._flush_quietly, name="pallycon-stats", daemon=True)
        self._flusher = (os.getpid(), thread)
        thread.start()

    def flush(self) -> None:
        """Send the held counts now, in a round trip of their own (kept if Redis fails)."""
        held = self.stats.drain()
        try:
            self._bucket.add(held)
        except redis.RedisError:
            self.stats.restore(held)
            raise

    def _flush_quietly(self) -> None:
        while not self._stop.wait(FLUSH_EVERY):
            with contextlib.suppress(redis.RedisError):  # kept, sent with a later call
                self.flush()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            self.flush()
        self._inner.close()


class _Measured(httpx.SyncByteStream):
    """An answer's body, passed through; when it is closed, the call is counted with the
    ``error_code`` found at its start or its end (:data:`PEEK_BYTES` of its first and last
    chunks) and its duration."""

    def __init__(
        self, inner: httpx.SyncByteStream, stats: CallStats, method: str, api: str, start: float
    ) -> None:
        self._inner, self._stats = inner, stats
        self._method, self._api, self._start = method, api, start
        self._head = self._tail = b""
        self._failure: str | None = None
        self._counted = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._inner:
                if len(self._head) < PEEK_BYTES:
                    self._head += chunk[: PEEK_BYTES - len(self._head)]
                self._tail = (self._tail + chunk)[-PEEK_BYTES:]
                yield chunk
        except httpx.TransportError as exc:
            self._failure = _failure(exc)
            raise

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            if not self._counted:
                self._counted = True
                code = self._failure or error_code(self._head, self._tail)
                self._stats.record(self._method, self._api, code, time.perf_counter() - self._start)


def error_code(head: bytes, tail: bytes = b"") -> str:
    """The ``error_code`` of an answer, looked for in its first :data:`PEEK_BYTES` (where the
    guide and the emulator put the top-level one, before any job's), else its last (``other``
    when there is none). A number (``0``) reads as the guide's four digits (``0000``)."""
    found = _ERROR_CODE.search(head[:PEEK_BYTES]) or _ERROR_CODE.search(tail[-PEEK_BYTES:])
    if found is None:
        return "other"
    code = found.group(1).decode()
    return code.zfill(4) if code.isdigit() else code


def _failure(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return "connect_error"
    return "timeout" if isinstance(exc, httpx.TimeoutException) else "io_error"


def _http_outcome(status: int) -> str:
    if status == httpx.codes.TOO_MANY_REQUESTS:
        return "http_429"
    return "http_5xx" if status >= httpx.codes.INTERNAL_SERVER_ERROR else "http_4xx"
