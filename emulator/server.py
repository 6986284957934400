"""Running the emulator: in the foreground (the CLI) or in a background thread (the demo)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from emulator.app import Emulator, create_app
from emulator.config import EmulatorConfig
from pallycon.options import MAX_URL_LENGTH
from pallycon_pack import asgi


class _DropNoise(logging.Filter):
    """uvicorn logs an error for every connection the emulator drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should return None" not in record.getMessage()


def _server(emulator: Emulator, host: str, port: int, access_log: bool) -> asgi.Server:
    logging.getLogger("uvicorn.error").addFilter(_DropNoise())
    return asgi.make_server(
        create_app(emulator),
        host,
        port,
        settings_prefix="PALLYCON_EMULATOR",
        access_log=access_log,
        max_header_bytes=MAX_URL_LENGTH + 16 * 1024,  # any URL the client can send
    )


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
    asgi.serve(_server(Emulator(config, seed=seed), host, port, access_log), on_ready)


@contextmanager
def running_emulator(
    config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> Iterator[tuple[str, Emulator]]:
    """An emulator in a background thread for the duration of the block: (URL, emulator)."""
    emulator = Emulator(config)
    with asgi.running(_server(emulator, host, port, access_log=False)) as url:
        yield url, emulator
