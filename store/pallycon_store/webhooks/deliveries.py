"""The webhook outbox in Redis: deliveries, their per-endpoint schedules, the dead-letter list,
and the one read of their health (:meth:`Deliveries.overview`).

A delivery is one result event for one endpoint (id ``<endpoint id>/<event id>``), a hash
(``Keys.webhook_delivery``) holding its body (built at fan-out: the result stream is capped),
``webhook-id``, type, attempts and last outcome. Per endpoint, sorted sets hold the deliveries
waiting (``due``: when due), being sent (``inflight``: when the lease ends), not yet ended
(``pending``: the event's time) and dead (``dead``: when); ``schedule`` orders the endpoints
by when each next has something to do. The claim takes due deliveries endpoint by endpoint,
each within its cap of deliveries in flight, so that one slow or dead endpoint holds only its
own. Every change is one Lua script (``*.lua`` beside this module, each prefixed with
``common.lua``): the fan-out with the acknowledgement of its stream entries, the claim, each
attempt's settle, the release of a delivery not attempted, the replay.

Counters (``Keys.webhook_counters``): ``attempts <kind>`` (:class:`rules.AttemptKind`),
``latency <bucket>`` / ``latency sum ms`` / ``latency count`` (attempts that got a response),
``lag <bucket>`` / ``lag sum ms`` / ``lag count`` (an event's time to its 2xx), ``delivered``,
``dead``, ``dead dropped`` (dead letters dropped past the number kept), ``disabled``,
``replayed``; buckets are upper bounds in seconds
(:data:`rules.LATENCY_BUCKETS`, :data:`rules.LAG_BUCKETS`) or ``+Inf``, not cumulative.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from redis.commands.core import Script

from pallycon_store.keys import WEBHOOK_GROUP, Keys
from pallycon_store.scripts import source
from pallycon_store.webhooks import rules
from pallycon_store.webhooks.endpoints import Disabled, Endpoint, Endpoints
from pallycon_store.webhooks.rules import Decision, NewDelivery, Settle

#: Webhook events kept in ``Keys.webhook_events`` (approximately).
EVENTS_KEPT = 10_000
#: Endpoints one claim looks at, at most.
CLAIM_LOOKS = 200
#: The most deliveries one script buries, drops or replays (a script blocks Redis while it
#: runs): more are done a chunk per claim, or per call (replay).
CHUNK = 500
#: Dead letters kept per endpoint by default (``PALLYCON_WEBHOOK_DEAD_LETTERS``): beyond, the
#: oldest are dropped as new ones come.
DEAD_LETTERS = 10_000
#: The values per delivery in a claim's reply (claim.lua).
CLAIM_FIELDS = 10


@functools.cache
def _text(name: str) -> str:
    return source("common", __file__) + "\n" + source(name, __file__)


@dataclass(frozen=True)
class Claimed:
    """A delivery taken to be sent: leased to this worker until its lease ends."""

    delivery_id: str
    endpoint_id: str
    attempts: int  # before this attempt (counted in Redis as it was claimed)
    webhook_id: str
    body: bytes
    event_at: float
    failing_since: float | None  # the start of the endpoint's failing streak (None: none)
    lease_ends: float  # the claim's token: a settle applies only while this lease holds
    last_failure: float | None = None  # the endpoint's last failed attempt (None: none)
    #: Its lease had ended unsettled (its worker died during the attempt, counted in
    #: ``attempts``): to settle as a failed attempt (:func:`rules.lost`), not to send.
    lost: bool = False


@dataclass(frozen=True)
class Attempted:
    """What an attempt found: its kind (as counted), its latency (None: no response) and
    what happened (``HTTP 503``, ``no response in 15 s (timeout)``: its last outcome)."""

    kind: rules.AttemptKind
    seconds: float | None
    reason: str = ""


@dataclass(frozen=True)
class DeadLetter:
    """A delivery on a dead-letter list (``webhooks failures``)."""

    delivery_id: str
    endpoint_id: str
    webhook_id: str
    type: str
    request_id: str
    attempts: int
    last_outcome: str
    dead_reason: str
    dead_at: float
    event_at: float


@dataclass(frozen=True)
class EndpointHealth:
    """One endpoint's deliveries at a moment (:meth:`Deliveries.overview`).

    ``pending``: deliveries neither delivered nor dead (waiting or being sent); ``due_now``:
    waiting and due; ``in_flight``: being sent (leased); ``oldest_pending_age``: seconds since
    the event of the oldest pending one (its lag; None when none is pending); ``dead``: on its
    dead-letter list; ``last_success``: its last 2xx (Unix seconds, None: none known);
    ``failing_since``: the start of its failing streak (None: not failing), failures at most
    :func:`rules.streak_gap` apart since its last success or replay; ``last_outcome``: the
    outcome of its last failed attempt in that streak ("": not failing); ``disabled``: why
    and when (None: enabled)."""

    endpoint_id: str
    url: str
    pending: int
    due_now: int
    in_flight: int
    oldest_pending_age: float | None
    dead: int
    last_success: float | None
    failing_since: float | None
    disabled: Disabled | None
    last_outcome: str = ""


@dataclass(frozen=True)
class Histogram:
    """Counts per bucket (upper bound in seconds as written, or ``+Inf``; not cumulative),
    their sum in seconds and their count."""

    buckets: dict[str, int]
    sum_seconds: float
    count: int


@dataclass(frozen=True)
class DeliveryCounters:
    """The counters of every worker's deliveries since Redis was first used."""

    attempts: dict[str, int]  # by rules.AttemptKind value
    latency: Histogram  # attempts that got a response
    lag: Histogram  # an event's time to its 2xx
    delivered: int
    dead: int  # deliveries sent to a dead-letter list
    disabled: int  # endpoints disabled by a delivery (410, failing for days)
    replayed: int
    dead_dropped: int = 0  # dead letters dropped, the oldest past the number kept


@dataclass(frozen=True)
class WebhookOverview:
    """:meth:`Deliveries.overview`: every endpoint's health (oldest first) and the counters."""

    endpoints: list[EndpointHealth]
    counters: DeliveryCounters
    disabled_endpoints: int = field(default=0)


def _float(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


def _histogram(found: dict[str, str], name: str, bounds: Sequence[float]) -> Histogram:
    labels = [f"{b:g}" for b in bounds] + ["+Inf"]
    return Histogram(
        {label: int(found.get(f"{name} {label}", 0)) for label in labels},
        int(found.get(f"{name} sum ms", 0)) / 1000,
        int(found.get(f"{name} count", 0)),
    )


class Deliveries:
    """The webhook outbox of one deployment (its keys), in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys, dead_letters: int = DEAD_LETTERS) -> None:
        self.redis = client
        self.keys = keys
        self.dead_letters = dead_letters  # kept per endpoint (the workers' setting)
        self.endpoints = Endpoints(client, keys)
        self._fanout = self._script("fanout")
        self._claim = self._script("claim")
        self._settle = self._script("settle")
        self._replay = self._script("replay")
        self._release = self._script("release")

    def _script(self, name: str) -> Script:
        return self.redis.register_script(_text(name))

    # --- The workers' side -------------------------------------------------------------------

    def ensure_group(self) -> None:
        """The result stream's webhook consumer group, created at the stream's end (``$``)
        if absent: events written before the first worker with webhooks started are not
        delivered."""
        try:
            self.redis.xgroup_create(self.keys.results, WEBHOOK_GROUP, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def fan_out(
        self, entry_ids: Sequence[str], deliveries: Sequence[NewDelivery], now: float, cap: int
    ) -> int:
        """Create ``deliveries`` (each only if absent, due now) and acknowledge the result
        stream entries ``entry_ids``, in one script: how many were created."""
        args: list[Any] = [self.keys.webhooks_base, now, cap, WEBHOOK_GROUP, len(entry_ids)]
        args += entry_ids
        for d in deliveries:
            args += [d.delivery_id, d.endpoint_id, d.webhook_id, d.type, d.request_id]
            args += [repr(d.event_at), d.body]
        return int(cast(int, self._fanout(keys=[self.keys.results], args=args)))

    def claim(
        self, now: float, lease: float, cap: int, limit: int, skip: Sequence[str] = ()
    ) -> tuple[list[Claimed], float | None]:
        """Take up to ``limit`` due deliveries, endpoint by endpoint, each endpoint at most
        ``cap`` in flight; each leased until ``now + lease``, its attempt counted. With them,
        the deliveries whose lease ended unsettled (:attr:`Claimed.lost`, leased again to the
        caller to settle), and when the next endpoint has something to do (None: none has).
        The endpoints ``skip`` are left as they are (the caller cannot sign for them)."""
        reply = cast(
            list[Any],
            self._claim(
                keys=[
                    self.keys.webhook_endpoints,
                    self.keys.webhook_state,
                    self.keys.webhook_counters,
                ],
                args=[
                    self.keys.webhooks_base,
                    now,
                    lease,
                    cap,
                    limit,
                    CLAIM_LOOKS,
                    CHUNK,
                    self.dead_letters,
                    *skip,
                ],
            ),
        )
        head, rest = reply[0], reply[1:]
        claimed = [
            Claimed(
                delivery_id=_str(rest[i]),
                endpoint_id=_str(rest[i + 1]),
                attempts=int(rest[i + 2] or 0),
                webhook_id=_str(rest[i + 3]),
                body=rest[i + 4] if isinstance(rest[i + 4], bytes) else str(rest[i + 4]).encode(),
                event_at=float(rest[i + 5]),
                failing_since=_float(_str(rest[i + 6])),
                lease_ends=float(rest[i + 7]),
                last_failure=_float(_str(rest[i + 8])),
                lost=_str(rest[i + 9]) == "1",
            )
            for i in range(0, len(rest), CLAIM_FIELDS)
        ]
        return claimed, _float(_str(head))

    def streak(self, endpoint_id: str) -> tuple[float | None, float | None]:
        """The endpoint's failing streak as stored now: its start and its last failure (None:
        none). Read again when an attempt fails: the claim's copy can be older than a 2xx that
        another attempt got meanwhile, and must not bring the streak it ended back."""
        start, last = self.redis.hmget(
            self.keys.webhook_state, [f"{endpoint_id} failing_since", f"{endpoint_id} last_failure"]
        )
        return _float(start), _float(last)

    def settle(
        self,
        claimed: Claimed,
        decision: Decision,
        attempted: Attempted,
        now: float,
        cap: int,
        announce: bool = True,
    ) -> bool:
        """Record an attempt of ``claimed`` and apply ``decision``, in one script. A
        :attr:`Settle.DISABLE` also needs the endpoint disabled (:meth:`disable_endpoint`
        does both; ``announce``: this attempt disabled it, its event is written and counted
        even if the lease had ended). False if another claim held the delivery by then (its
        lease had ended): only the counters changed."""
        latency_bucket = latency_ms = ""
        if attempted.seconds is not None:
            latency_bucket = rules.bucket(attempted.seconds, rules.LATENCY_BUCKETS)
            latency_ms = str(round(attempted.seconds * 1000))
        lag = max(0.0, now - claimed.event_at)
        event = json.dumps(
            {
                "type": "endpoint_disabled",
                "endpoint_id": claimed.endpoint_id,
                "reason": decision.reason,
                "at": now,
            }
        )
        args: list[str | float | int] = [
            self.keys.webhooks_base,
            now,
            cap,
            claimed.delivery_id,
            claimed.endpoint_id,
            decision.settle.value,
            "" if decision.at is None else repr(decision.at),
            dead_reason(decision),
            attempted.kind.value,
            claimed.attempts if claimed.lost else claimed.attempts + 1,
            latency_bucket,
            latency_ms,
            rules.bucket(lag, rules.LAG_BUCKETS),
            str(round(lag * 1000)),
            event if announce else "",
            EVENTS_KEPT,
            repr(claimed.lease_ends),
            attempted.reason or decision.reason,
            "" if decision.failing_since is None else repr(decision.failing_since),
            self.dead_letters,
            CHUNK,
        ]
        keys = [self.keys.webhook_counters, self.keys.webhook_state, self.keys.webhook_events]
        keys.append(self.keys.webhook_endpoints)
        return bool(self._settle(keys=keys, args=args))

    def release(self, claimed: Claimed, at: float, cap: int) -> bool:
        """Put ``claimed`` back unattempted (no request was sent): due at ``at``, nothing
        counted, while its claim still holds it (False if another did by then)."""
        args: list[str | float | int] = [self.keys.webhooks_base, at, cap, claimed.delivery_id]
        args += [claimed.endpoint_id, repr(at), repr(claimed.lease_ends)]
        return bool(self._release(keys=[], args=args))

    def disable_endpoint(
        self, claimed: Claimed, decision: Decision, attempted: Attempted, now: float, cap: int
    ) -> Endpoint:
        """Disable the endpoint of ``claimed`` saying why (nothing more is claimed for it),
        then settle ``claimed``: it goes to the dead-letter list and an event says so
        (``Keys.webhook_events``; only if this disabled it, and even if its lease had ended);
        the next claims put the endpoint's other pending deliveries there, :data:`CHUNK` at a
        time."""
        endpoint = self.endpoints.disable(claimed.endpoint_id, decision.reason, now)
        first = endpoint.disabled == Disabled(decision.reason, now)  # not disabled before
        self.settle(claimed, decision, attempted, now, cap, announce=first)
        return endpoint

    # --- The operators' side -----------------------------------------------------------------

    def failures(
        self, endpoint_ids: Iterable[str], since: float | None = None, limit: int = 1000
    ) -> list[DeadLetter]:
        """The dead-letter lists of ``endpoint_ids`` (dead at or after ``since``), newest
        first, at most ``limit``."""
        low = "-inf" if since is None else repr(since)
        ids: list[tuple[str, float]] = []
        for endpoint_id in endpoint_ids:
            found = self.redis.zrevrangebyscore(
                self.keys.webhook_dead(endpoint_id), "+inf", low, start=0, num=limit,
                withscores=True,
            )  # fmt: skip
            ids += [(str(i), float(s)) for i, s in cast(list[tuple[str, float]], found)]
        ids.sort(key=lambda pair: -pair[1])
        ids = ids[:limit]
        pipe = self.redis.pipeline(transaction=False)
        for delivery_id, _ in ids:
            pipe.hgetall(self.keys.webhook_delivery(delivery_id))
        letters = []
        for (delivery_id, dead_at), values in zip(ids, pipe.execute(), strict=True):
            if not values:
                continue
            letters.append(
                DeadLetter(
                    delivery_id=delivery_id,
                    endpoint_id=values.get("endpoint", delivery_id.split("/", 1)[0]),
                    webhook_id=values.get("webhook_id", ""),
                    type=values.get("type", ""),
                    request_id=values.get("request_id", ""),
                    attempts=int(values.get("attempts", 0)),
                    last_outcome=values.get("last_outcome", ""),
                    dead_reason=values.get("dead_reason", ""),
                    dead_at=dead_at,
                    event_at=float(values.get("event_at", 0.0)),
                )
            )
        return letters

    def replay(
        self,
        endpoint_ids: Sequence[str],
        now: float,
        cap: int,
        since: float | None = None,
        limit: int = 1_000_000,
    ) -> int:
        """Put the dead-lettered deliveries of ``endpoint_ids`` (dead at or after ``since``,
        at most ``limit``, and at most those there as it starts) back: attempts reset, due
        now. :data:`CHUNK` per script call. How many."""
        if not endpoint_ids:
            return 0
        low = "-inf" if since is None else repr(since)
        pipe = self.redis.pipeline(transaction=False)
        for endpoint_id in endpoint_ids:
            pipe.zcount(self.keys.webhook_dead(endpoint_id), low, "+inf")
        left = min(limit, sum(int(n) for n in pipe.execute()))
        keys = [self.keys.webhook_counters, self.keys.webhook_state]
        replayed = 0
        while left > 0:
            chunk = min(CHUNK, left)
            args: list[str | float | int] = [self.keys.webhooks_base, now, cap, low, chunk]
            args += endpoint_ids
            count, looked = cast(list[int], self._replay(keys=keys, args=args))
            replayed += int(count)
            left -= int(looked)
            if int(looked) < chunk:
                break
        return replayed

    def look_now(self, endpoint_id: str) -> None:
        """Make the next claim look at the endpoint at once: after it is disabled (its
        pending deliveries go to its dead-letter list then) or removed (its deliveries and
        dead-letter list are dropped then), whenever they were due."""
        self.redis.zadd(self.keys.webhook_schedule, {endpoint_id: 0})

    def disable_by_hand(self, endpoint_id: str, reason: str, now: float) -> Endpoint:
        """Disable the endpoint saying why; the next claim puts its pending deliveries on its
        dead-letter list."""
        endpoint = self.endpoints.disable(endpoint_id, reason, now)
        self.look_now(endpoint_id)
        return endpoint

    def remove_endpoint(self, endpoint_id: str) -> Endpoint:
        """Remove the endpoint; the next claims drop its deliveries, its dead-letter list and
        its health (``Keys.webhook_state``)."""
        endpoint = self.endpoints.remove(endpoint_id)
        self.look_now(endpoint_id)
        return endpoint

    def enable_endpoint(self, endpoint_id: str) -> Endpoint:
        """Enable the endpoint again: its failing streak is forgotten (the days before it is
        disabled again count from its next failure)."""
        endpoint = self.endpoints.enable(endpoint_id)
        self.redis.hdel(
            self.keys.webhook_state,
            f"{endpoint_id} failing_since",
            f"{endpoint_id} last_failure",
            f"{endpoint_id} last_outcome",
        )
        return endpoint

    # --- The read for stats, the exporter and the console ------------------------------------

    def overview(self, now: float) -> WebhookOverview:
        """Every endpoint's :class:`EndpointHealth` at ``now`` (oldest endpoint first) and the
        :class:`DeliveryCounters`, in two round trips."""
        endpoints = self.endpoints.list()
        pipe = self.redis.pipeline(transaction=False)
        for e in endpoints:
            pipe.zcard(self.keys.webhook_pending(e.id))
            pipe.zcount(self.keys.webhook_due(e.id), "-inf", repr(now))
            pipe.zcard(self.keys.webhook_in_flight(e.id))
            pipe.zrange(self.keys.webhook_pending(e.id), 0, 0, withscores=True)
            pipe.zcard(self.keys.webhook_dead(e.id))
        pipe.hgetall(self.keys.webhook_state)
        pipe.hgetall(self.keys.webhook_counters)
        replies = pipe.execute()
        counters: dict[str, str] = replies.pop()
        state: dict[str, str] = replies.pop()
        health = []
        for n, e in enumerate(endpoints):
            pending, due, flight, oldest, dead = replies[5 * n : 5 * n + 5]
            health.append(
                EndpointHealth(
                    endpoint_id=e.id,
                    url=e.url,
                    pending=int(pending),
                    due_now=int(due),
                    in_flight=int(flight),
                    oldest_pending_age=max(0.0, now - float(oldest[0][1])) if oldest else None,
                    dead=int(dead),
                    last_success=_float(state.get(f"{e.id} last_success")),
                    failing_since=_float(state.get(f"{e.id} failing_since")),
                    disabled=e.disabled,
                    last_outcome=_str(state.get(f"{e.id} last_outcome") or ""),
                )
            )
        kinds = {
            kind.value: int(counters.get(f"attempts {kind.value}", 0)) for kind in rules.AttemptKind
        }
        return WebhookOverview(
            endpoints=health,
            counters=DeliveryCounters(
                attempts=kinds,
                latency=_histogram(counters, "latency", rules.LATENCY_BUCKETS),
                lag=_histogram(counters, "lag", rules.LAG_BUCKETS),
                delivered=int(counters.get("delivered", 0)),
                dead=int(counters.get("dead", 0)),
                disabled=int(counters.get("disabled", 0)),
                replayed=int(counters.get("replayed", 0)),
                dead_dropped=int(counters.get("dead dropped", 0)),
            ),
            disabled_endpoints=sum(e.disabled is not None for e in endpoints),
        )

    def events(self, count: int = 100) -> list[dict[str, Any]]:
        """The latest webhook events (endpoints disabled by a delivery), oldest first."""
        found = cast(
            list[tuple[str, dict[str, str]]],
            self.redis.xrevrange(self.keys.webhook_events, count=count),
        )
        return [json.loads(fields["event"]) for _, fields in reversed(found)]


#: How a dead letter's reason starts when its endpoint was disabled (by this delivery, or
#: while it was pending).
DISABLED = "endpoint disabled: "


def dead_reason(decision: Decision) -> str:
    """Why a delivery settled by ``decision`` is on the dead-letter list (if it is): its
    reason, prefixed with :data:`DISABLED` when the attempt disabled its endpoint, as the
    endpoint's other deliveries buried after it are (claim.lua)."""
    if decision.settle is Settle.DISABLE:
        return DISABLED + decision.reason
    return decision.reason


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = [
    "Attempted",
    "Claimed",
    "DeadLetter",
    "Deliveries",
    "DeliveryCounters",
    "EndpointHealth",
    "Histogram",
    "Settle",
    "WebhookOverview",
]
