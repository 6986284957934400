"""The PallyCon API client of a site, built from the settings in one place.

The worker, the direct API commands, ``health``'s API check and the demo all sign through
:func:`site_client`: the site's keys, and the settings' client options (API URL, timeouts,
pool size, the ``apidata`` transport, the response size limit).
"""

from __future__ import annotations

import dataclasses

import httpx

from pallycon.client import PallyConClient
from pallycon_config import Settings, Site


def site_client(
    settings: Settings,
    site: Site | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    timeout: float | None = None,
) -> PallyConClient:
    """A client signing as ``site`` (None: the settings' default site, whose missing key a
    ``ConfigError`` names) with the settings' client options; ``timeout`` (seconds), when
    given, bounds each connect and each read instead of the settings' timeouts."""
    credentials = settings.credentials() if site is None else site.credentials()
    options = settings.client_options()
    if timeout is not None:
        options = dataclasses.replace(options, connect_timeout=timeout, read_timeout=timeout)
    return PallyConClient(credentials, options, transport=transport)
