"""The servers the command line runs, in the foreground or in a background thread (the demo):
the callback receiver, wired to Redis and Celery, the metrics exporter, and the emulator."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from pallycon.limits import MAX_URL_LENGTH
from pallycon_config import Settings, SiteBook, load_callback_tokens
from pallycon_config.logs import LOGGERS, configure, log_start
from pallycon_emulator.app import Emulator, create_app
from pallycon_emulator.config import EmulatorConfig
from pallycon_pack.web import asgi, callbacks, exporter
from pallycon_store.messages import send_poll, sender
from pallycon_store.wiring import Store, keys_of


def callback_book(settings: Settings, tokens: Mapping[str, SecretStr]) -> SiteBook:
    """The sites the receiver serves: those with a callback token, and the default site."""
    default = settings.site_id
    return SiteBook(default, tuple(sorted({*tokens, *([default] if default else [])})))


def _server(
    settings: Settings,
    token: SecretStr | None,
    host: str,
    port: int,
    access_log: bool = False,
    tokens: dict[str, SecretStr] | None = None,
) -> asgi.Server:
    """The receiver; ``tokens``: the sites' callback tokens, if the caller read them already."""
    keys = keys_of(settings)
    app = sender(settings.redis, keys)
    if tokens is None:
        tokens = load_callback_tokens(settings) if settings.sites_path is not None else {}
    book = callback_book(settings, tokens)
    token = token or tokens.get(settings.site_id or "")
    receiver = callbacks.create_callback_app(
        callbacks.connect(settings.redis),
        keys,
        token,
        lambda request_ids: send_poll(app, request_ids),
        lease_seconds=settings.lease_seconds,
        site_tokens=tokens,
        book=book,
    )
    return asgi.make_server(
        receiver, host, port, settings_prefix="PALLYCON_CALLBACK", access_log=access_log
    )


def serve_callbacks(
    settings: Settings,
    token: SecretStr | None,
    on_ready: Callable[[str], None],
    *,
    access_log: bool = False,
    tokens: dict[str, SecretStr] | None = None,
) -> None:
    """Serve until interrupted, logging JSON lines on stderr: its start and settings, one line
    per callback (and, with ``access_log``, per HTTP request). ``tokens``: as for
    :func:`_server`."""
    configure(settings.log_level)
    log_start("callbacks", settings, access_log=access_log)
    host, port = settings.callback_host, settings.callback_port
    server = _server(settings, token, host, port, access_log, tokens)
    asgi.serve(server, on_ready)


@contextmanager
def running_callbacks(settings: Settings, token: SecretStr) -> Iterator[str]:
    """The receiver on a free loopback port for the block; yields its base URL."""
    with asgi.running(_server(settings, token, "127.0.0.1", 0)) as url:
        yield url


# --- The metrics exporter -------------------------------------------------------------------


def serve_metrics(
    settings: Settings, host: str, port: int, on_ready: Callable[[str], None]
) -> None:
    """Serve the fleet's metrics until interrupted (uvicorn, as the other servers: a header
    deadline, at most ``exporter.MAX_CONNECTIONS`` connections, the Host check on loopback);
    ``on_ready`` gets the URL once the socket listens.

    Each Redis round trip of a scrape is bounded by ``SCRAPE_TIMEOUT`` (no retries), and the
    scrape by ``SCRAPE_DEADLINE`` (see :class:`exporter.FleetCollector`)."""
    collector = exporter.FleetCollector(Store.of(settings, deadline=exporter.SCRAPE_TIMEOUT))
    server = asgi.make_server(
        exporter.create_app(collector, host),
        host,
        port,
        settings_prefix="PALLYCON_METRICS",
        max_connections=exporter.MAX_CONNECTIONS,
    )

    def ready(url: str) -> None:
        threading.Thread(target=collector.start, name="tail-start", daemon=True).start()
        on_ready(url)

    asgi.serve(server, ready)


# --- The emulator -----------------------------------------------------------------------------


class _DropNoise(logging.Filter):
    """uvicorn logs an error for every connection the emulator drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should return None" not in record.getMessage()


def _emulator_server(emulator: Emulator, host: str, port: int, access_log: bool) -> asgi.Server:
    logging.getLogger("uvicorn.error").addFilter(_DropNoise())
    return asgi.make_server(
        create_app(emulator),
        host,
        port,
        settings_prefix="PALLYCON_EMULATOR",
        access_log=access_log,
        max_header_bytes=MAX_URL_LENGTH + 16 * 1024,  # any URL the client can send
    )


#: The emulator's loggers: its own (callbacks it sends) besides the servers'.
EMULATOR_LOGGERS = (*LOGGERS, "emulator")


def serve_emulator(
    config: EmulatorConfig,
    host: str,
    port: int,
    *,
    on_ready: Callable[[str], None],
    access_log: bool = False,
    seed: int | None = None,
    settings: tuple[BaseSettings, ...] = (),
) -> None:
    """Serve the emulator until interrupted; ``on_ready`` gets the URL once the socket listens.

    Logs JSON lines on stderr: its start with ``settings`` (masked), a warning for each of the
    config's :meth:`~EmulatorConfig.warnings`, the callbacks it sends, and with ``access_log``
    one line per HTTP request.
    """
    configure("INFO", EMULATOR_LOGGERS)
    log_start(
        "emulator",
        *settings,
        sites=[site.site_id for site in config.sites],
        faults=config.faults.to_dict(),
        access_log=access_log,
        seed=seed,
    )
    for warning in config.warnings():
        logging.getLogger("emulator").warning(warning)
    asgi.serve(_emulator_server(Emulator(config, seed=seed), host, port, access_log), on_ready)


@contextmanager
def running_emulator(
    config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> Iterator[tuple[str, Emulator]]:
    """An emulator in a background thread for the duration of the block: (URL, emulator)."""
    emulator = Emulator(config)
    with asgi.running(_emulator_server(emulator, host, port, access_log=False)) as url:
        yield url, emulator
