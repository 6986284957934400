"""How the client talks to the API, and the largest request it can send. Pure: no HTTP.

Kept apart from :mod:`pallycon.client` so that what validates a request before it is queued (a
producer, the settings) needs neither httpx nor the cipher.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

from pallycon.limits import MAX_FORM_API_JSON_BYTES, MAX_URL_LENGTH
from pallycon.models import WireOptions
from pallycon.signing import apidata_length

APIDATA = "pallycon-apidata"
API_VERSION = "v2"
#: Site ids are at most this long (the settings refuse longer ones).
SITE_ID_MAX_LENGTH = 32


@dataclass(frozen=True)
class ClientOptions:
    """How the client talks; every field has the default a production deployment wants."""

    base_url: str = "https://api.pallycon.com"
    apidata_in: Literal["query", "form"] = "query"
    wire: WireOptions = field(default_factory=WireOptions)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    pool_size: int = 20
    max_response_bytes: int = 8 * 1024 * 1024

    def max_api_json_bytes(self, site_id: str | None = None) -> int:
        """The largest API JSON this client can send (see :func:`max_api_json_bytes`)."""
        return max_api_json_bytes(self.base_url, self.apidata_in, site_id)


@functools.lru_cache(maxsize=64)
def max_api_json_bytes(base_url: str, apidata_in: str, site_id: str | None = None) -> int:
    """The largest API JSON, in bytes, that can be sent to ``base_url``.

    With ``pallycon-apidata`` in the query string the URL is the limit: its length depends on
    the size of the API JSON only (see :func:`pallycon.signing.apidata_length`; the base64 of
    the ASCII envelope never holds a ``+`` or ``/`` to percent-encode, only its ``=`` padding).
    Without ``site_id`` (a producer that has none) the longest allowed one is assumed. In a
    form body the limit is :data:`MAX_FORM_API_JSON_BYTES`.
    """
    if apidata_in != "query":
        return MAX_FORM_API_JSON_BYTES
    site = quote(site_id, safe="") if site_id else "X" * SITE_ID_MAX_LENGTH
    prefix = len(f"{base_url}/api/{API_VERSION}/pack/{site}?{APIDATA}=")

    def fits(size: int) -> bool:
        return prefix + _quoted_length(size) <= MAX_URL_LENGTH

    low, high = 0, MAX_URL_LENGTH  # fits(low); not fits(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def _quoted_length(size: int) -> int:
    """The percent-encoded length of the ``pallycon-apidata`` value (each ``=`` is ``%3D``)."""
    length, pad = apidata_length(size)
    return length + 2 * pad
