"""The body of a webhook: a result event in Standard Webhooks' envelope. Pure.

A delivery's body is ``{"type": "request.<event type>", "timestamp": <the event's ts>,
"data": <the result event>}`` (docs/RESULTS.md for the event), its ``webhook-id`` the event's
``event_id``: the same on every attempt and every replay, so that a receiver dedupes on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pallycon_store.events import EventType
from pallycon_store.webhooks.errors import MalformedEndpoint

#: The prefix of every delivered type (``request.completed``).
TYPE_PREFIX = "request."
#: The type of the message ``webhooks test`` sends.
TEST_TYPE = "webhook.test"
#: The event types an endpoint may ask for.
EVENT_TYPES = frozenset(kind.value for kind in EventType)
#: What an endpoint receives when it names no events: the outcomes of requests.
DEFAULT_EVENTS = frozenset({"completed", "failed", "cancelled", "stopped", "rejected"})


def parse_events(names: Iterable[str]) -> frozenset[str]:
    """The event types named (``completed``, ``failed``, ...; :data:`DEFAULT_EVENTS` if none);
    a :class:`MalformedEndpoint` naming an unknown one and listing the known ones."""
    chosen = frozenset(name.strip() for name in names if name.strip())
    unknown = sorted(chosen - EVENT_TYPES)
    if unknown:
        raise MalformedEndpoint(
            f"unknown event type {', '.join(unknown)}; known: {', '.join(sorted(EVENT_TYPES))}"
        )
    return chosen or DEFAULT_EVENTS


def encode(kind: str, timestamp: str, data: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (compact JSON, UTF-8): what the signature covers."""
    message = {"type": kind, "timestamp": timestamp, "data": data}
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def of_event(event: Mapping[str, Any]) -> bytes:
    """The body delivering the result event ``event``."""
    return encode(TYPE_PREFIX + str(event["type"]), str(event["ts"]), event)
