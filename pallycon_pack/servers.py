"""The callback receiver as a process or a background thread, wired to Redis and Celery."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pydantic import SecretStr

from config import Settings
from pallycon_pack import asgi
from worker.callbacks import create_callback_app
from worker.dispatch import send_poll
from worker.runtime import make_store
from worker.tasks import create_app


def _server(settings: Settings, token: SecretStr, host: str, port: int) -> asgi.Server:
    app = create_app(settings)
    receiver = create_callback_app(make_store(settings), token, lambda rid: send_poll(app, [rid]))
    return asgi.make_server(receiver, host, port, settings_prefix="PALLYCON_CALLBACK")


def serve_callbacks(settings: Settings, token: SecretStr, on_ready: Callable[[str], None]) -> None:
    asgi.serve(_server(settings, token, settings.callback_host, settings.callback_port), on_ready)


@contextmanager
def running_callbacks(settings: Settings, token: SecretStr) -> Iterator[str]:
    """The receiver on a free loopback port for the block; yields its base URL."""
    with asgi.running(_server(settings, token, "127.0.0.1", 0)) as url:
        yield url
