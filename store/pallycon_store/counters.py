"""Operational counters, shared by every process in one Redis hash: the named metrics.

Every counter has a name here (and its stored name, which docs, tests and dashboards read);
API calls are counted per method and API by the token bucket as they are granted. Each call's
outcome (a bounded code: :func:`outcome_code`) and duration (a histogram of fixed buckets,
:data:`LATENCY_BUCKETS`) are counted by the worker that made it, and sent with that worker's next
token request (:class:`CallStats`): no Redis round trip of their own. They, and the waits for
tokens, are kept in a hash of their own (``Keys.api_calls``), read with :func:`read_api_calls`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import cast

import redis

from pallycon.codes import API_CODES
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


class ApiMetric(StrEnum):
    """A counter of the API call statistics (``Keys.api_calls``) that is not per call."""

    RATE_LIMIT_WAITS = "rate limit waits"  # times a call waited for a token
    RATE_LIMIT_WAIT_MS = "rate limit wait ms"  # ... and how long, in all (milliseconds)


#: Upper bounds (seconds) of the API call duration histogram's buckets; +Inf is implied.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: The APIs and methods counted by name; any other is counted as "other" (bounded labels).
APIS = frozenset({"pack", "storage"})
METHODS = frozenset({"GET", "POST", "PUT"})
#: Outcomes that are not an API code: no answer, or an HTTP error.
TRANSPORT_OUTCOMES = frozenset(
    {"no_token", "connect_error", "timeout", "io_error", "http_429", "http_4xx", "http_5xx"}
)


def api_call(method: str, api: str) -> str:
    """The counter of calls to one API (``api POST job``), counted as each is let through."""
    return f"api {method} {api}"


def api_labels(method: str, api: str) -> tuple[str, str]:
    """``method`` and ``api`` as counted: the known ones, else ``other`` (bounded labels)."""
    return (method if method in METHODS else "other", api if api in APIS else "other")


def outcome_code(code: str) -> str:
    """An outcome as counted: a code of the guide (``0000``, ``A1002``, ...: ``API_CODES``), one
    of :data:`TRANSPORT_OUTCOMES`, else ``other``: a closed set, so that a hostile answer cannot
    grow the labels."""
    if code in TRANSPORT_OUTCOMES or code in API_CODES:
        return code
    return "other"


def api_result(method: str, api: str, code: str) -> str:
    """The counter of calls to one API that ended with ``code`` (``api result POST pack 0000``)."""
    return f"api result {method} {api} {code}"


def api_latency(method: str, api: str, bucket: str) -> str:
    """The counter of calls to one API whose duration fell in ``bucket`` (its upper bound as
    written in :func:`bucket_of`, or ``+Inf``; not cumulative), or ``sum ms`` (their total)."""
    return f"api latency {method} {api} {bucket}"


def bucket_of(seconds: float) -> str:
    """The histogram bucket (its upper bound, as stored) that a duration falls in."""
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            return f"{bound:g}"
    return "+Inf"


@dataclass
class CallStats:
    """Counts of API calls' outcomes and durations, held by one process until they are sent.

    They go out with the process's next token request (:meth:`drain`), in the same script call;
    a process that makes no call for a while sends them itself (``worker.ratelimit``). A process
    killed loses what it had not sent (a couple of seconds' worth at most).
    """

    pending: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, method: str, api: str, code: str, seconds: float | None) -> None:
        method, api = api_labels(method, api)
        with self.lock:
            self.pending[api_result(method, api, outcome_code(code))] += 1
            if seconds is not None:
                self.pending[api_latency(method, api, bucket_of(seconds))] += 1
                self.pending[api_latency(method, api, "sum ms")] += round(seconds * 1000)

    def add(self, metric: ApiMetric, amount: int = 1) -> None:
        with self.lock:
            self.pending[metric.value] += amount

    def drain(self) -> list[tuple[str, int]]:
        """What is pending, now taken out (the caller sends it)."""
        with self.lock:
            items = list(self.pending.items())
            self.pending.clear()
        return items

    def restore(self, items: Iterable[tuple[str, int]]) -> None:
        """Put back what could not be sent."""
        with self.lock:
            for name, amount in items:
                self.pending[name] += amount


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


def read_api_calls(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """The API call statistics by stored name."""
    raw = cast(Mapping[str, str], client.hgetall(keys.api_calls))
    return {name: int(value) for name, value in raw.items()}
