"""One signed webhook POST, as every delivery and ``webhooks test`` send it.

The host is resolved at each attempt and every address it has checked
(:func:`pallycon_store.webhooks.addresses.allowed`, unless the endpoint allows private ones);
the connection goes to an address that was checked (the next one if it takes no connection),
the URL's name kept for ``Host`` and for TLS (SNI, certificate); the timeout bounds the
connect and each read; redirects are not followed; no proxy (the environment's is ignored).
The outcome is decided on the response's status and headers; at most :data:`MAX_BODY` bytes
of its body are read.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

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


@dataclass(frozen=True)
class Sent:
    """An attempt's outcome, its kind (as counted) and how long the response took (None:
    none came)."""

    outcome: outcome.Outcome
    kind: AttemptKind
    seconds: float | None


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


def new_client(timeout: float, connections: int = 4) -> httpx.Client:
    """A client as deliveries use: ``timeout`` on the connect and each read, no redirect
    followed, no proxy, at most ``connections`` kept alive."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, limits=limits)


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
    except httpx.TimeoutException:
        timeout = client.timeout.read or 0.0
        return Sent(
            outcome.no_response(f"no response in {timeout:g} s (timeout)"),
            AttemptKind.TIMEOUT,
            None,
        )
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
    an address the check allowed (:func:`resolve`, :func:`post`): the attempt's outcome."""
    try:
        allowed = resolve(endpoint)
    except RefusedAddress as exc:
        return Sent(outcome.no_response(str(exc)), AttemptKind.REFUSED_ADDRESS, None)
    signed = signing.headers(webhook_id, int(now), body, secrets)
    for address in allowed[:-1]:  # the next address only if this one takes no connection
        try:
            return post(client, endpoint.url, address, signed, body)
        except httpx.ConnectError:
            continue
    try:
        return post(client, endpoint.url, allowed[-1], signed, body)
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
