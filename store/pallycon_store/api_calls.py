"""The API call statistics in Redis: their format, and the one reader.

Each call's outcome (a bounded code: :func:`outcome_code`) and duration (a histogram of fixed
buckets, :data:`LATENCY_BUCKETS`) are counted by the worker that made it, and sent with that
worker's next token request (:class:`CallStats`): no Redis round trip of their own. They, and
the waits for tokens (:class:`ApiMetric`), are kept in the hash ``Keys.api_calls``:

- ``api result <METHOD> <api> <code>``: calls that ended with ``code``;
- ``api latency <METHOD> <api> <bucket>``: calls whose duration fell in ``bucket`` (its upper
  bound as :func:`bucket_of` writes it, or ``+Inf``; not cumulative);
- ``api latency <METHOD> <api> sum ms``: their total duration;
- ``rate limit waits``, ``rate limit wait ms``.

Methods, APIs and codes come from closed sets (``other`` otherwise), so the hash stays small
whatever the API answers. :func:`read_api_calls` reads it for ``stats`` and the Prometheus
exporter alike (:class:`ApiCalls`). The calls let through per method and API
(:func:`api_call`, ``api POST pack``) are counted in the counters hash
(``pallycon_store.counters``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

import redis

from pallycon.codes import API_CODES
from pallycon_store.keys import Keys


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
    a process that makes no call for a while sends them itself (``pallycon_worker.ratelimit``). A
    process killed loses what it had not sent (a couple of seconds' worth at most).
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


#: The stored names of the histogram's buckets, in order (+Inf last).
BUCKET_NAMES = (*(f"{bound:g}" for bound in LATENCY_BUCKETS), "+Inf")
_BUCKETS = frozenset(BUCKET_NAMES)


def _count(value: str | int) -> int | None:
    """A stored count, or None if it is not an integer (a hash written by someone else)."""
    try:
        return int(value)
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True)
class ApiCalls:
    """The API call statistics as read: every label bounded, every count an integer."""

    calls: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (method, api, code)
    buckets: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # by bucket name
    sum_ms: dict[tuple[str, str], int] = field(default_factory=dict)  # (method, api)
    rate_limit_waits: int = 0
    rate_limit_wait_ms: int = 0

    @classmethod
    def parse(cls, raw: Mapping[str, str | int]) -> ApiCalls:
        """The hash's fields, grouped (pure). Labels outside the closed sets count as
        ``other`` (added up); fields of no known shape, unknown buckets and values that are
        not integers are skipped."""
        calls: Counter[tuple[str, str, str]] = Counter()
        buckets: dict[tuple[str, str], Counter[str]] = {}
        sum_ms: Counter[tuple[str, str]] = Counter()
        waits = {metric.value: 0 for metric in ApiMetric}
        for name, value in raw.items():
            count = _count(value)
            if count is None:
                continue
            if name in waits:
                waits[name] += count
                continue
            words = name.split(" ")
            if len(words) < 5 or words[0] != "api" or words[1] not in ("result", "latency"):
                continue
            method, api = api_labels(words[2], words[3])
            rest = words[4:]
            if words[1] == "result" and len(rest) == 1:
                calls[(method, api, outcome_code(rest[0]))] += count
            elif words[1] == "latency" and rest == ["sum", "ms"]:
                sum_ms[(method, api)] += count
            elif words[1] == "latency" and len(rest) == 1 and rest[0] in _BUCKETS:
                buckets.setdefault((method, api), Counter())[rest[0]] += count
        return cls(
            dict(calls),
            {pair: dict(per) for pair, per in buckets.items()},
            dict(sum_ms),
            waits[ApiMetric.RATE_LIMIT_WAITS.value],
            waits[ApiMetric.RATE_LIMIT_WAIT_MS.value],
        )

    def by_code(self) -> dict[str, int]:
        """Calls by outcome code, every method and API together, sorted by code."""
        found: Counter[str] = Counter()
        for (_, _, code), count in self.calls.items():
            found[code] += count
        return dict(sorted(found.items()))

    def by_api(self) -> dict[str, dict[str, int]]:
        """Calls by ``"<METHOD> <api>"``, then by outcome code, sorted."""
        found: dict[str, dict[str, int]] = {}
        for (method, api, code), count in sorted(self.calls.items()):
            found.setdefault(f"{method} {api}", {})[code] = count
        return dict(sorted(found.items()))

    def total_ms(self) -> dict[str, int]:
        """Time spent in calls by ``"<METHOD> <api>"`` (milliseconds), sorted."""
        return {f"{method} {api}": ms for (method, api), ms in sorted(self.sum_ms.items())}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, as ``stats`` shows it."""
        return {
            "by_code": self.by_code(),
            "by_api": self.by_api(),
            "total_ms": self.total_ms(),
            "rate_limit_waits": self.rate_limit_waits,
            "rate_limit_wait_ms": self.rate_limit_wait_ms,
        }


def read_api_calls(client: redis.Redis, keys: Keys) -> ApiCalls:
    """The API call statistics (one ``HGETALL``, then :meth:`ApiCalls.parse`)."""
    return ApiCalls.parse(cast(Mapping[str, str], client.hgetall(keys.api_calls)))
