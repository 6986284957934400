"""The protocol client for the CLI's direct API commands, from the settings."""

from __future__ import annotations

import httpx
from pallycon_config import Settings

from pallycon.client import PallyConClient


def make_client(settings: Settings, transport: httpx.BaseTransport | None = None) -> PallyConClient:
    """A client for the site in ``settings`` (ConfigError names any missing credential)."""
    return PallyConClient(settings.credentials(), settings.client_options(), transport=transport)
