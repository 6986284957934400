"""One signed webhook POST, as every delivery and ``webhooks test`` send it.

The host is resolved at each attempt and every address it has checked
(:func:`pallycon_store.webhooks.addresses.allowed`, unless the endpoint allows private ones);
the connection goes to an address that was checked (the second one if the first takes no
connection; no more), the URL's name kept for ``Host`` and for TLS (SNI, certificate); the
timeout bounds the connect and each read, and :func:`attempt_limit` the whole attempt (a
deadline every connect, write and read of the attempt's connections is held to: an answer
trickled byte by byte ends there); redirects are not followed; no proxy (the environment's is
ignored). A client whose connections are all busy for the timeout does not attempt
(:attr:`Sent.attempted` false: the delivery is put back, not counted).
The outcome is decided on the response's status and headers; at most :data:`MAX_BODY` bytes
of its body are read.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from pallycon_store.webhooks import addresses, outcome, signing
from pallycon_store.webhooks.endpoints import Endpoint
from pallycon_store.webhooks.errors import RefusedAddress
from pallycon_store.webhooks.rules import AttemptKind, status_kind
from pallycon_store.webhooks.signing import Secret

#: Who sends the webhooks, as the receiver's logs show it.
USER_AGENT = "pallycon-pack-webhooks/1"
#: The longest an attempt waits to connect and for each read, in seconds, by default.
TIMEOUT = 15.0
#: The most of a response's body read (it is not used; read to keep the connection).
MAX_BODY = 64 * 1024
#: The addresses an attempt connects to at most (the second if the first takes no connection).
MAX_ADDRESSES = 2


def attempt_limit(timeout: float) -> float:
    """The longest one attempt takes, all in (``timeout`` bounds each connect and read): two
    of them, for two addresses or a connect and an answer."""
    return 2 * timeout


@dataclass(frozen=True)
class Sent:
    """An attempt's outcome, its kind (as counted) and how long the response took (None:
    none came)."""

    outcome: outcome.Outcome
    kind: AttemptKind
    seconds: float | None
    attempted: bool = True  # False: no request was sent (no connection of the client free)


def resolve(endpoint: Endpoint) -> list[addresses.Address]:
    """The addresses a delivery to ``endpoint`` may connect to, in the resolver's order: all
    its host resolves to, each checked (:func:`addresses.allowed`) unless it allows private
    ones; a :class:`RefusedAddress` saying why there is none."""
    parts = urlsplit(endpoint.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedAddress(f"{host} does not resolve ({exc})") from None
    resolved = [str(info[4][0]) for info in found]
    return list(dict.fromkeys(addresses.allowed(host, resolved, endpoint.allow_private)))


_deadline = threading.local()


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """The time a network operation of this thread's attempt may take: ``timeout``, cut to
    what is left before the attempt's deadline; ``error`` if none is."""
    ends: float | None = getattr(_deadline, "at", None)
    if ends is None:
        return timeout
    left = ends - time.monotonic()
    if left <= 0:
        raise error("the attempt's time ran out")
    return left if timeout is None else min(timeout, left)


class _BoundedStream(httpcore.NetworkStream):
    """A connection whose every read and write is held to the attempt's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        wait = _left(timeout, httpcore.ConnectTimeout)
        return _BoundedStream(self.inner.start_tls(ssl_context, server_hostname, wait))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    """Connections held to the attempt's deadline (:func:`attempt_deadline`)."""

    def __init__(self) -> None:
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        wait = _left(timeout, httpcore.ConnectTimeout)
        stream = self.inner.connect_tcp(host, port, wait, local_address, socket_options)
        return _BoundedStream(stream)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


@contextmanager
def attempt_deadline(seconds: float) -> Iterator[None]:
    """Hold this thread's network operations to end within ``seconds`` (the whole attempt)."""
    _deadline.at, _deadline.seconds = time.monotonic() + seconds, seconds
    try:
        yield
    finally:
        _deadline.at = None


class _Transport(httpx.HTTPTransport):
    """httpx's transport, its connection pool on the deadline-bounded backend."""

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        if not isinstance(getattr(self, "_pool", None), httpcore.ConnectionPool):
            # httpx keeps its pool there (private): a version that does not would lose the
            # attempt's deadline silently. Say so at once instead.
            raise RuntimeError("this httpx keeps no httpcore.ConnectionPool in _pool: pin httpx")
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_BoundedBackend(),
        )


def new_client(timeout: float, connections: int = 4) -> httpx.Client:
    """A client as deliveries use: ``timeout`` on the connect and each read (and on waiting
    for a free connection), no redirect followed, no proxy, at most ``connections`` open;
    within :func:`attempt_deadline`, each attempt bounded in all."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.Client(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        transport=_Transport(limits),
    )


def post(
    client: httpx.Client,
    url: str,
    address: addresses.Address,
    signed: dict[str, str],
    body: bytes,
) -> Sent:
    """POST ``body`` with the ``signed`` headers to ``url`` at ``address`` (the URL pinned to
    it, the name kept for ``Host`` and for TLS): its outcome; an ``httpx.ConnectError`` if the
    address takes no connection (the caller tries the next)."""
    parts = urlsplit(url)
    headers = signed | {
        "content-type": "application/json",
        "host": parts.netloc,
        "user-agent": USER_AGENT,
    }
    extensions = {"sni_hostname": parts.hostname or ""} if parts.scheme == "https" else {}
    started = time.monotonic()
    try:
        with client.stream(
            "POST",
            addresses.pinned(url, address),
            content=body,
            headers=headers,
            extensions=extensions,
        ) as response:
            seconds = time.monotonic() - started
            found = outcome.classify(
                response.status_code, response.headers.get("retry-after"), time.time()
            )
            drain(response)
    except httpx.PoolTimeout:
        return Sent(outcome.no_response("no connection free"), AttemptKind.ERROR, None, False)
    except httpx.TimeoutException:
        timeout = client.timeout.read or 0.0
        ends: float | None = getattr(_deadline, "at", None)
        if ends is not None and time.monotonic() >= ends:
            said = f"no complete response in the attempt's {_deadline.seconds:g} s (timeout)"
        else:
            said = f"no response in {timeout:g} s (timeout)"
        return Sent(outcome.no_response(said), AttemptKind.TIMEOUT, None)
    except httpx.ConnectError:
        raise
    except httpx.TransportError as exc:
        return Sent(
            outcome.no_response(f"no response ({type(exc).__name__}: {exc})"),
            AttemptKind.ERROR,
            None,
        )
    return Sent(found, status_kind(response.status_code), seconds)


def drain(response: httpx.Response) -> None:
    """Read what is left of ``response``'s body, at most :data:`MAX_BODY` bytes (the
    connection is kept alive only if that is all of it): the outcome is decided on the status
    and headers, a body that fails or runs over changes nothing."""
    read = 0
    try:
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > MAX_BODY:
                return  # closing the response unread closes its connection
    except httpx.TransportError:
        return


def send(
    client: httpx.Client,
    endpoint: Endpoint,
    webhook_id: str,
    body: bytes,
    secrets: Sequence[Secret],
    now: float,
) -> Sent:
    """Send ``body`` as ``webhook_id`` to ``endpoint``, signed at ``now`` with ``secrets``, at
    an address the check allowed (:func:`resolve`, :func:`post`; the first two at most): the
    attempt's outcome. The caller bounds the whole (:func:`attempt_deadline`)."""
    try:
        allowed = resolve(endpoint)
    except RefusedAddress as exc:
        return Sent(outcome.no_response(str(exc)), AttemptKind.REFUSED_ADDRESS, None)
    signed = signing.headers(webhook_id, int(now), body, secrets)
    tried = allowed[:MAX_ADDRESSES]
    for address in tried[:-1]:  # the next address only if this one takes no connection
        try:
            return post(client, endpoint.url, address, signed, body)
        except httpx.ConnectError:
            continue
    try:
        return post(client, endpoint.url, tried[-1], signed, body)
    except httpx.ConnectError as exc:
        return Sent(
            outcome.no_response(f"no response (ConnectError: {exc})"),
            AttemptKind.NO_CONNECTION,
            None,
        )


class Clients:
    """One client per endpoint (its connections kept alive between deliveries), made again
    when the endpoint's URL changes; ``make`` builds one."""

    def __init__(self, make: Callable[[], httpx.Client]) -> None:
        self.make = make
        self._clients: dict[str, tuple[str, httpx.Client]] = {}
        self._lock = threading.Lock()

    def of(self, endpoint: Endpoint) -> httpx.Client:
        with self._lock:
            found = self._clients.get(endpoint.id)
            if found is not None and found[0] == endpoint.url:
                return found[1]
            client = self.make()
            self._clients[endpoint.id] = (endpoint.url, client)
        if found is not None:
            found[1].close()
        return client

    def keep_only(self, endpoint_ids: set[str]) -> None:
        """Close the clients of endpoints no longer in ``endpoint_ids``."""
        with self._lock:
            gone = [self._clients.pop(e) for e in list(self._clients) if e not in endpoint_ids]
        for _, client in gone:
            client.close()

    def close(self) -> None:
        self.keep_only(set())
