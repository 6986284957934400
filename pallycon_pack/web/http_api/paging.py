"""The opaque cursor of ``GET /v1/requests``: where the next page starts (the last entry's
place in the order: when it entered its state, and its request id), as URL-safe base64 of
JSON. Pure."""

from __future__ import annotations

import base64
import binascii
import json
import math


class BadCursor(ValueError):
    """A cursor that is not one this server gave."""


def encode(position: tuple[float, str]) -> str:
    score, request_id = position
    text = json.dumps([score, request_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        score, request_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise BadCursor("not a cursor this server gave (use a page's next as it is)") from None
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise BadCursor("not a cursor this server gave (use a page's next as it is)")
    try:
        place = float(score)
    except OverflowError:  # an integer of hundreds of digits
        place = math.inf
    if not math.isfinite(place) or not isinstance(request_id, str):
        raise BadCursor("not a cursor this server gave (use a page's next as it is)")
    return place, request_id
