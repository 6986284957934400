"""Operational counters, shared by every process in one Redis hash: the named metrics.

Every counter has a name here (and its stored name, which docs, tests and dashboards read).
The hash also holds the API calls per method and API, counted by the token bucket as they are
granted (:func:`pallycon_store.api_calls.api_call`); the API call statistics are
:mod:`pallycon_store.api_calls`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import cast

import redis

from pallycon_store.keys import Keys


class Metric(StrEnum):
    """A counter's stored name."""

    RECONCILIATIONS = "reconciliations"  # registrations whose outcome was looked up
    RECONCILE_LOOKUP_RETRIES = "reconcile lookup retry"  # ... whose lookup failed, retried
    SUBMIT_RESENDS = "submit resend"  # registrations refused before anything was made, resent
    SUBMIT_RECONCILES = "submit reconcile"  # registrations whose outcome is unknown
    POLL_LOOKUPS = "poll lookups"  # jobs looked up by id
    POLL_PAGES = "poll pages"  # job-list pages read
    POLL_PAGES_TOO_LARGE = "poll pages too large"  # pages over the response size limit
    POLL_RETRIES = "poll retries"  # polls retried after a failed read
    CALLBACKS_USED = "callbacks used"  # callbacks that sent a poll at once
    CALLBACKS_COALESCED = "callbacks coalesced"  # ... that came within the window of another
    CALLBACKS_UNKNOWN_JOB = "callbacks unknown job"  # ... for no job being polled
    CALLBACKS_REFUSED_WRONG_TOKEN = "callbacks refused wrong token"  # noqa: S105 - refused: a wrong token
    CALLBACKS_REFUSED_TOO_LARGE = "callbacks refused too large"  # ... a body over the limit
    CALLBACKS_REFUSED_TOO_SLOW = "callbacks refused too slow"  # ... a body not sent in time
    CALLBACKS_REFUSED_NOT_A_CALLBACK = "callbacks refused not a callback"  # ... a body unread


class Counters:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.key = keys.counters

    def add(self, metric: Metric, amount: int = 1) -> None:
        self.redis.hincrby(self.key, metric.value, amount)

    def read(self) -> dict[str, int]:
        """Every counter by its stored name."""
        raw = cast(Mapping[str, str], self.redis.hgetall(self.key))
        return {name: int(value) for name, value in raw.items()}
