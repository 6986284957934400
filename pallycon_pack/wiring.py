"""Building the protocol layer's objects from the settings: the one place that maps them."""

from __future__ import annotations

import httpx

from config import Settings
from pallycon.client import ClientOptions, PallyConClient
from pallycon.models import WireOptions


def client_options(settings: Settings) -> ClientOptions:
    return ClientOptions(
        base_url=settings.api_url,
        apidata_in=settings.apidata_in,
        wire=WireOptions(protection_key=settings.protection_key),
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        pool_size=settings.http_pool_size,
        max_response_bytes=settings.max_response_bytes,
    )


def make_client(settings: Settings, transport: httpx.BaseTransport | None = None) -> PallyConClient:
    """A client for the site in ``settings`` (ConfigError names any missing credential)."""
    return PallyConClient(settings.credentials(), client_options(settings), transport=transport)
