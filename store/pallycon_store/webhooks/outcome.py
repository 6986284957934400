"""What an attempt's response means for a webhook delivery. Pure: the time is an argument.

Only a 2xx delivers. 410 Gone disables the endpoint. Any other status (3xx included: redirects
are not followed) is a failure to retry; a ``Retry-After`` on 429 or 503 (seconds, or an
HTTP-date) sets the earliest next attempt. An attempt with no response (timeout, refused
connection, refused address) is a failure to retry too (:func:`no_response`).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum

#: Statuses whose ``Retry-After`` is read.
RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE = 410


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DISABLE = "disable"


@dataclass(frozen=True)
class Outcome:
    """One attempt's verdict, why (``"HTTP 503"``, ``"timeout"``) and the receiver's
    ``Retry-After`` in seconds from now, when it sent one."""

    verdict: Verdict
    reason: str
    retry_after: float | None = None


def classify(status: int, retry_after: str | None, now: float) -> Outcome:
    """The outcome of a response with ``status`` and ``Retry-After`` header ``retry_after``
    received at ``now`` (Unix seconds)."""
    reason = f"HTTP {status}"
    if 200 <= status < 300:
        return Outcome(Verdict.DELIVERED, reason)
    if status == GONE:
        return Outcome(Verdict.DISABLE, reason)
    if status in RETRY_AFTER_STATUSES and retry_after is not None:
        return Outcome(Verdict.RETRY, reason, parse_retry_after(retry_after, now))
    return Outcome(Verdict.RETRY, reason)


def no_response(reason: str) -> Outcome:
    """The outcome of an attempt that got no response (``reason``: what happened)."""
    return Outcome(Verdict.RETRY, reason)


def parse_retry_after(value: str, now: float) -> float | None:
    """A ``Retry-After`` value (delay-seconds or an HTTP-date) as seconds from ``now``, never
    negative; ``None`` if it is neither. The caller bounds it
    (:data:`pallycon_store.webhooks.schedule.MAX_RETRY_AFTER`)."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT; a date without a zone is taken as such
        return None
    return max(0.0, when.timestamp() - now)
