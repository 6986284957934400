"""The callback receiver as a process or a background thread, wired to Redis and Celery."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pydantic import SecretStr

from config import Settings
from pallycon_pack import asgi
from store.keys import Keys
from store.messages import send_poll, sender
from worker import callbacks
from worker.logs import configure


def _server(settings: Settings, token: SecretStr, host: str, port: int) -> asgi.Server:
    app = sender(settings.redis_url, Keys(settings.key_prefix))
    receiver = callbacks.create_callback_app(
        callbacks.connect(settings.redis_url),
        Keys(settings.key_prefix),
        token,
        lambda request_id: send_poll(app, [request_id]),
        lease_seconds=settings.lease_seconds,
    )
    return asgi.make_server(receiver, host, port, settings_prefix="PALLYCON_CALLBACK")


def serve_callbacks(settings: Settings, token: SecretStr, on_ready: Callable[[str], None]) -> None:
    """Serve until interrupted, logging one JSON line per callback on stderr."""
    configure(settings.log_level)
    asgi.serve(_server(settings, token, settings.callback_host, settings.callback_port), on_ready)


@contextmanager
def running_callbacks(settings: Settings, token: SecretStr) -> Iterator[str]:
    """The receiver on a free loopback port for the block; yields its base URL."""
    with asgi.running(_server(settings, token, "127.0.0.1", 0)) as url:
        yield url
