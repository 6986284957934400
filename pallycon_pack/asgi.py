"""Serving an ASGI app with uvicorn: in the foreground, or in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def make_server(app: Any, host: str, port: int, *, access_log: bool = False) -> uvicorn.Server:
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
    return uvicorn.Server(config)


def bound_url(server: uvicorn.Server) -> str:
    """The URL the server listens on (the real port when 0 was asked for)."""
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return f"http://{host}:{port}"


async def _serve(server: uvicorn.Server, on_ready: Callable[[str], None]) -> None:
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if server.started:
        on_ready(bound_url(server))
    await task


def serve(server: uvicorn.Server, on_ready: Callable[[str], None]) -> None:
    """Serve until interrupted; ``on_ready`` gets the URL once the socket listens."""
    asyncio.run(_serve(server, on_ready))


@contextmanager
def running(server: uvicorn.Server, *, timeout: float = 10.0) -> Iterator[str]:
    """Serve in a background thread for the duration of the block; yields the URL."""
    ready = threading.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    thread = threading.Thread(target=serve, args=(server, on_ready), daemon=True)
    thread.start()
    if not ready.wait(timeout):
        server.should_exit = True
        raise RuntimeError(f"server did not start within {timeout:g} s")
    try:
        yield urls[0]
    finally:
        server.should_exit = True
        thread.join(timeout)
