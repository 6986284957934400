"""Running the emulator: in the foreground (the CLI) or in a background thread (the demo)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn

from emulator.app import Emulator, create_app
from emulator.config import EmulatorConfig


class _DropNoise(logging.Filter):
    """uvicorn logs an error for every connection the emulator drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should return None" not in record.getMessage()


def _uvicorn(emulator: Emulator, host: str, port: int, access_log: bool) -> uvicorn.Server:
    logging.getLogger("uvicorn.error").addFilter(_DropNoise())
    config = uvicorn.Config(
        create_app(emulator),
        host=host,
        port=port,
        http="h11",  # its "close without a response" behaviour is what accept-then-drop uses
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


def serve(
    config: EmulatorConfig,
    host: str,
    port: int,
    *,
    on_ready: Callable[[str], None],
    access_log: bool = False,
    seed: int | None = None,
) -> None:
    """Serve until interrupted; ``on_ready`` gets the URL once the socket listens."""
    server = _uvicorn(Emulator(config, seed=seed), host, port, access_log)
    asyncio.run(_serve(server, on_ready))


@contextmanager
def running_emulator(
    config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0
) -> Iterator[tuple[str, Emulator]]:
    """An emulator in a background thread for the duration of the block: (URL, emulator)."""
    emulator = Emulator(config)
    server = _uvicorn(emulator, host, port, access_log=False)
    ready = threading.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    thread = threading.Thread(
        target=asyncio.run, args=(_serve(server, on_ready),), name="emulator", daemon=True
    )
    thread.start()
    if not ready.wait(timeout):
        server.should_exit = True
        raise RuntimeError(f"emulator did not start on {host}:{port} within {timeout:g} s")
    try:
        yield urls[0], emulator
    finally:
        server.should_exit = True
        thread.join(timeout)
