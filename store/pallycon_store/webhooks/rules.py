"""What the webhook deliveries decide. Pure: the time, the random source and what was read
are arguments.

- :func:`fan_out`: which endpoints get a result event (its deliveries, their bodies);
- :func:`decide`: what an attempt's outcome does to its delivery (delivered, retry at, dead,
  disable the endpoint), and to its endpoint's failing streak (:func:`streak_start`);
- :func:`attempt_kind`, :func:`bucket`: the bounded labels the counters use;
- :func:`no_sender`: whether the live workers all lack the key (none can send).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pallycon_store import heartbeats
from pallycon_store.webhooks import payload, schedule
from pallycon_store.webhooks.endpoints import Endpoint
from pallycon_store.webhooks.outcome import Outcome, Verdict

#: Upper bounds (seconds) of the attempt latency histogram's buckets; +Inf is implied.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Upper bounds (seconds) of the lag histogram (an event's time to its 2xx); +Inf implied.
LAG_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
    3600.0,
    86400.0,
)


class AttemptKind(StrEnum):
    """An attempt's outcome as counted (a closed set of labels)."""

    HTTP_2XX = "2xx"
    HTTP_3XX = "3xx"
    HTTP_410 = "410"
    HTTP_429 = "429"
    HTTP_4XX = "4xx"
    HTTP_5XX = "5xx"
    TIMEOUT = "timeout"
    NO_CONNECTION = "no_connection"
    REFUSED_ADDRESS = "refused_address"
    ERROR = "error"  # no response for another reason (a broken connection)
    WORKER_LOST = "worker_lost"  # the attempt's lease ended unsettled (its worker died)


def status_kind(status: int) -> AttemptKind:
    """The kind of an attempt answered with ``status``."""
    if 200 <= status < 300:
        return AttemptKind.HTTP_2XX
    if status == 410:
        return AttemptKind.HTTP_410
    if status == 429:
        return AttemptKind.HTTP_429
    if 300 <= status < 400:
        return AttemptKind.HTTP_3XX
    if 400 <= status < 500:
        return AttemptKind.HTTP_4XX
    return AttemptKind.HTTP_5XX


def bucket(seconds: float, bounds: Sequence[float]) -> str:
    """The histogram bucket ``seconds`` falls in: its upper bound as written (``0.25``), or
    ``+Inf``."""
    for bound in bounds:
        if seconds <= bound:
            return f"{bound:g}"
    return "+Inf"


# --- Fan-out ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewDelivery:
    """One result event for one endpoint: what the outbox stores."""

    endpoint_id: str
    webhook_id: str  # the event's event_id
    type: str  # the event's type
    request_id: str
    event_at: float  # the event's time (Unix seconds), for the lag
    body: bytes

    @property
    def delivery_id(self) -> str:
        """``<endpoint id>/<event id>``: the same event is one delivery per endpoint."""
        return f"{self.endpoint_id}/{self.webhook_id}"


def event_time(event: Mapping[str, Any], default: float) -> float:
    """The event's ``ts`` as Unix seconds (``default`` if it has none that reads)."""
    try:
        return datetime.fromisoformat(str(event["ts"])).timestamp()
    except (KeyError, ValueError):
        return default


def parse_entry(fields: Mapping[str, str]) -> dict[str, Any] | None:
    """The event a result stream entry holds (its ``event`` field), or None if it holds none
    that reads (such an entry is acknowledged and skipped)."""
    try:
        event = json.loads(fields.get("event", ""))
    except ValueError:
        return None
    if not isinstance(event, dict) or not event.get("event_id") or not event.get("type"):
        return None
    return event


def needs_site(endpoints: Iterable[Endpoint]) -> bool:
    """Whether matching needs each event's site: some enabled endpoint names one."""
    return any(e.site and e.disabled is None for e in endpoints)


def fan_out(
    events: Sequence[Mapping[str, Any]],
    endpoints: Sequence[Endpoint],
    site_of: Callable[[Mapping[str, Any]], str],
    now: float,
) -> list[NewDelivery]:
    """The deliveries of ``events`` (in order): one per event and enabled endpoint that wants
    it (:meth:`Endpoint.wants`: its types and site), the body built now
    (:func:`payload.of_event`). ``site_of`` gives an event's site (its request's; "" when
    unknown: only endpoints of every site get it)."""
    found: list[NewDelivery] = []
    for event in events:
        kind = str(event["type"])
        wanted = [e for e in endpoints if e.disabled is None and kind in e.events]
        if not wanted:
            continue
        site = site_of(event) if any(e.site for e in wanted) else ""
        body = payload.of_event(event)
        at = event_time(event, now)
        found.extend(
            NewDelivery(
                endpoint.id,
                str(event["event_id"]),
                kind,
                str(event.get("request_id", "")),
                at,
                body,
            )
            for endpoint in wanted
            if endpoint.wants(kind, site)
        )
    return found


# --- Settling an attempt ---------------------------------------------------------------------


class Settle(StrEnum):
    """What an attempt does to its delivery."""

    DELIVERED = "delivered"
    RETRY = "retry"  # due again at ``Decision.at``
    DEAD = "dead"  # to the dead-letter list: the schedule ran out
    DISABLE = "disable"  # the endpoint is disabled; this and its pending deliveries go dead


@dataclass(frozen=True)
class Decision:
    """What to do with a delivery after an attempt, and why (the outcome's reason, or what
    disabled the endpoint)."""

    settle: Settle
    reason: str
    at: float | None = None  # the next attempt's time (RETRY)
    #: The start of the endpoint's failing streak this failure belongs to (None: delivered).
    failing_since: float | None = None


#: The outcome of an attempt whose worker was lost (its lease ended unsettled).
LOST = "worker lost (the attempt's lease ended unsettled)"


def lost(
    attempts: int, now: float, delays: Sequence[float], random: Callable[[], float]
) -> Decision:
    """The decision for a delivery whose attempt number ``attempts`` was lost with its worker
    (the lease ended unsettled): a failed attempt on the schedule, retried after its next
    delay or dead once it has run out. The endpoint's failing streak is left as it is (the
    worker may have died of something else): no disable, ``failing_since`` None."""
    delay = schedule.next_delay(max(1, attempts), random, None, delays)
    if delay is None:
        return Decision(Settle.DEAD, f"{attempts} attempts failed (last: {LOST})")
    return Decision(Settle.RETRY, LOST, now + delay)


def streak_gap(delays: Sequence[float], lease: float) -> float:
    """The longest quiet time between two failures of one failing streak: the schedule's
    longest delay, jittered, and a lease (the attempt that ends it). Failures further apart
    belong to two streaks (between them, the endpoint had nothing to send, or its deliveries
    ran out and were dead-lettered)."""
    return max(delays, default=0.0) * (1 + schedule.JITTER) + lease


def streak_start(
    failing_since: float | None, last_failure: float | None, now: float, gap: float
) -> float:
    """When the failing streak of an endpoint that fails at ``now`` began: ``failing_since``
    if its previous failure (``last_failure``) is at most ``gap`` seconds old
    (:func:`streak_gap`), else now (a new streak)."""
    if failing_since is None or last_failure is None or now - last_failure > gap:
        return now
    return failing_since


def decide(
    outcome: Outcome,
    attempts: int,
    now: float,
    *,
    failing_since: float | None,
    delays: Sequence[float],
    disable_after: float,
    random: Callable[[], float],
    last_failure: float | None = None,
    gap: float = 0.0,
) -> Decision:
    """The decision after attempt number ``attempts`` (1 or more) had ``outcome`` at ``now``.

    A 2xx delivers. A 410 disables the endpoint. A failure is retried after the schedule's
    next delay (``delays``, jittered; ``Retry-After`` a floor), unless the endpoint's failing
    streak (:func:`streak_start` of ``failing_since``, its ``last_failure`` and ``gap``) has
    lasted ``disable_after`` seconds (then it is disabled) or the schedule has run out (then
    the delivery is dead)."""
    if outcome.verdict is Verdict.DELIVERED:
        return Decision(Settle.DELIVERED, outcome.reason)
    streak = streak_start(failing_since, last_failure, now, gap)
    if outcome.verdict is Verdict.DISABLE:
        return Decision(Settle.DISABLE, f"{outcome.reason} (Gone) at a delivery", None, streak)
    if now - streak >= disable_after:
        days = disable_after / 86400
        span = f"{days:g} days" if days >= 1 else f"{disable_after:g} s"
        reason = f"no delivery succeeded for {span} (last: {outcome.reason})"
        return Decision(Settle.DISABLE, reason, None, streak)
    delay = schedule.next_delay(attempts, random, outcome.retry_after, delays)
    if delay is None:
        reason = f"{attempts} attempts failed (last: {outcome.reason})"
        return Decision(Settle.DEAD, reason, None, streak)
    return Decision(Settle.RETRY, outcome.reason, now + delay, streak)


#: The name of the workers' webhooks loop in their heartbeats.
LOOP = "webhooks"
#: How a worker without PALLYCON_WEBHOOK_KEY says it sends nothing (its log, its heartbeat).
NO_KEY = (
    "PALLYCON_WEBHOOK_KEY is not set: this worker sends no webhooks (it cannot sign); "
    "deliveries wait for a worker that has the key"
)


def no_sender(beats: Iterable[heartbeats.Heartbeat]) -> bool:
    """Whether workers are alive (their webhooks loop heard from within
    :data:`heartbeats.HEARD_WITHIN`) and none of them can send a delivery (each without the
    key). No worker heard from: False (workers may not be started yet)."""
    alive = [b for b in beats if b.loop == LOOP and b.heard <= heartbeats.HEARD_WITHIN]
    return bool(alive) and not any(b.signs for b in alive)
