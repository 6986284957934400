"""Serving an ASGI app with uvicorn: in the foreground, or in a background thread.

The listening socket is bound before uvicorn starts, for both servers (the callback receiver
and the emulator), so that a busy or foreign address is one clear ``OSError`` (its ``strerror``
a complete message naming the address and what to do) instead of an exit from inside the event
loop.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


class Server(uvicorn.Server):
    """A uvicorn server that binds its own socket (see :meth:`bind`)."""

    def __init__(self, config: uvicorn.Config, settings_prefix: str) -> None:
        super().__init__(config)
        self.settings_prefix = settings_prefix

    def bind(self) -> socket.socket:
        """The listening socket; ``OSError`` with a one-line ``strerror`` if it cannot be had."""
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

    def _cannot_listen(self, number: int | None, reason: str | None) -> OSError:
        where = f"{self.config.host}:{self.config.port}"
        if number == errno.EADDRNOTAVAIL:
            advice = (
                f"choose an address of this machine with --host (or {self.settings_prefix}_HOST)"
            )
        else:
            advice = f"choose another port with --port (or {self.settings_prefix}_PORT)"
        return OSError(number, f"cannot listen on {where}: {reason or 'unknown error'}; {advice}")


def make_server(
    app: Any,
    host: str,
    port: int,
    *,
    settings_prefix: str,
    access_log: bool = False,
) -> Server:
    """A server for ``app``; ``settings_prefix`` names its settings in error messages."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",  # the emulator's accept-then-drop relies on h11's close-without-response
        lifespan="on",
        access_log=access_log,
        log_config=None,
        timeout_keep_alive=30,
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

    Raises ``OSError`` (see :meth:`Server.bind`) before anything starts if it cannot listen.
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
