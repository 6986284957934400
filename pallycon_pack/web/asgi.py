"""Serving an ASGI app with uvicorn: in the foreground, or in a background thread.

What uvicorn does not do, done here for every server (the callback receiver, the console, the
metrics exporter and the emulator):

- The listening socket is bound before uvicorn starts, so that a busy or foreign address is one
  clear ``ListenError``, an ``OSError`` whose ``strerror`` is a complete message naming the
  address and what to do, instead of an exit from inside the event loop.
- With ``access_log``, one JSON line per HTTP request (:class:`AccessLog`): method, path (a
  callback token masked; never the query string, which may carry a signed request), status,
  duration; uvicorn's own access log would print the query and the token.
- Request headers must be complete within ``HEADER_TIMEOUT`` seconds of the connection's opening
  (or of the first byte of a later request on a kept-alive connection), and the rest of a body
  the app did not read within as long after the response: uvicorn has no such deadline, so a
  client trickling bytes ("slowloris") would hold a connection forever.
- With ``max_connections``, a connection beyond that many open ones is answered 503 and closed
  at once (uvicorn's ``limit_concurrency`` still holds it open until the client speaks).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from pallycon_config.show import mask_text
from pallycon_pack.errors import ListenError

log = logging.getLogger("pallycon_pack.asgi")
access = logging.getLogger("pallycon_pack.access")

#: Seconds a client has to send a request's headers.
HEADER_TIMEOUT = 10.0


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for what a client owes and nobody waits for.

    That is a request's headers: from the connection's opening, and on a kept-alive connection
    from the first byte of the next request (until then uvicorn's keep-alive timeout applies);
    and the rest of a body the app answered without reading (a 404, a 413), from the response's
    end. The deadline ends once the headers are complete (the app then reads at its own pace).
    A connection past it is closed: with a 408 if part of a request's headers arrived.
    """

    header_timeout: float = HEADER_TIMEOUT
    #: Open connections at most (None: no bound); one more is answered ``busy`` and closed.
    max_connections: int | None = None
    busy: bytes = b""
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            log.debug("refusing a connection: %d open already", self.max_connections)
            transport.write(self.busy)
            transport.close()
            return
        self._watch_client()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_client()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next (pipelined) request has begun, or the body of this one is still coming.
        if self.conn.trailing_data[0] or self.conn.their_state is h11.SEND_BODY:
            self._watch_client()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _owes_unread(self) -> bool:
        their, ours = self.conn.their_state, self.conn.our_state
        unread_body = their is h11.SEND_BODY and ours in {h11.DONE, h11.MUST_CLOSE}
        return (their is h11.IDLE or unread_body) and not self.transport.is_closing()

    def _watch_client(self) -> None:
        if not self._owes_unread():
            self._cancel_deadline()
        elif self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self._owes_unread():
            return
        log.debug("closing a connection: the client was %gs too slow", self.header_timeout)
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self.transport.write(_REQUEST_TIMEOUT)
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()


_TIMEOUT_BODY = b"request headers not received in time"
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


def closing_answer(status: str, media_type: str, body: bytes, headers: str = "") -> bytes:
    """A whole HTTP/1.1 answer, written as it is on a connection about to be closed:
    ``status`` ("503 Service Unavailable"), ``headers`` (lines ending in CRLF) besides the
    type, length and ``connection: close``."""
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {media_type}\r\ncontent-length: {len(body)}\r\n"
        f"{headers}connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


_BUSY = closing_answer(
    "503 Service Unavailable", "text/plain; charset=utf-8", b"too many connections"
)


class AccessLog:
    """ASGI middleware: one ``access`` line per HTTP request, once it is answered (or dropped:
    status ``null``): ``method``, ``path`` (token masked), ``status``, ``duration_ms``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> object:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status: list[int] = []

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            return await self.app(scope, receive, sending)
        finally:
            fields = {
                "method": scope["method"],
                "path": mask_text(scope["path"]),
                "status": status[0] if status else None,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            }
            access.info("access", extra={"fields": fields})


class Server(uvicorn.Server):
    """A uvicorn server that binds its own socket (see :meth:`bind`)."""

    def __init__(self, config: uvicorn.Config, settings_prefix: str) -> None:
        super().__init__(config)
        self.settings_prefix = settings_prefix

    def bind(self) -> socket.socket:
        """The listening socket; ``ListenError`` with a one-line ``strerror`` if it cannot be
        had."""
        host, port = self.config.host, self.config.port
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as exc:
            raise self._cannot_listen(errno.EADDRNOTAVAIL, exc.strerror) from None
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(self.config.backlog)
        except OSError as exc:
            sock.close()
            raise self._cannot_listen(exc.errno, exc.strerror) from None
        return sock

    def _cannot_listen(self, number: int | None, reason: str | None) -> ListenError:
        """Why it cannot listen, and which option and setting (``settings_prefix``:
        ``PALLYCON_CALLBACK``) choose another: every server's one line."""
        host, port, prefix = self.config.host, self.config.port, self.settings_prefix
        if number == errno.EADDRNOTAVAIL:
            advice = f"choose an address of this machine with --host (or {prefix}_HOST)"
        else:
            advice = f"choose another port with --port (or {prefix}_PORT)"
        return ListenError(
            number, f"cannot listen on {host}:{port}: {reason or 'unknown error'}; {advice}"
        )


def make_server(
    app: Any,
    host: str,
    port: int,
    *,
    settings_prefix: str,
    access_log: bool = False,
    header_timeout: float = HEADER_TIMEOUT,
    max_header_bytes: int = 16 * 1024,
    max_connections: int | None = None,
    busy: bytes = _BUSY,
) -> Server:
    """A server for ``app``: request headers must arrive within ``header_timeout`` seconds and
    be at most ``max_header_bytes`` (request line included); with ``max_connections``, more
    open connections are refused: answered ``busy`` (by default a plain 503,
    :func:`closing_answer` makes another) and closed; ``settings_prefix``
    (``PALLYCON_CALLBACK``) names its settings in error messages."""

    class Protocol(HeaderTimeoutProtocol):
        pass

    Protocol.header_timeout = header_timeout
    Protocol.max_connections = max_connections
    Protocol.busy = busy
    config = uvicorn.Config(
        AccessLog(app) if access_log else app,
        host=host,
        port=port,
        http=Protocol,  # h11: the emulator's accept-then-drop relies on its close-without-response
        lifespan="on",
        access_log=False,  # AccessLog instead
        log_config=None,
        timeout_keep_alive=30,
        h11_max_incomplete_event_size=max_header_bytes,
    )
    return Server(config, settings_prefix)


def bound_url(server: uvicorn.Server) -> str:
    """The URL the server listens on (the real port when 0 was asked for)."""
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _serve(server: Server, sock: socket.socket, on_ready: Callable[[str], None]) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if server.started:
        on_ready(bound_url(server))
    await task


def serve(server: Server, on_ready: Callable[[str], None]) -> None:
    """Serve until interrupted; ``on_ready`` gets the URL once the socket listens.

    Raises ``ListenError`` (see :meth:`Server.bind`) before anything starts if it cannot listen.
    """
    sock = server.bind()
    with sock:
        asyncio.run(_serve(server, sock, on_ready))


@contextmanager
def running(server: Server, *, timeout: float = 10.0) -> Iterator[str]:
    """Serve in a background thread for the duration of the block; yields the URL."""
    sock = server.bind()
    ready = threading.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    def run() -> None:
        with sock:
            asyncio.run(_serve(server, sock, on_ready))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(timeout):
        server.should_exit = True
        raise RuntimeError(f"server did not start within {timeout:g} s")
    try:
        yield urls[0]
    finally:
        server.should_exit = True
        thread.join(timeout)
