"""Flow control in Redis: priorities, the submit lanes, what is dispatched and in flight per
site, pauses, and the sweeper's wake-up.

A request waits to be registered on the **lane** of its site and priority (a sorted set of
request id -> when it is due, :meth:`pallycon_store.keys.Keys.submit_lane`). A sweeper reads
every lane's due count, each site's dispatched and in-flight counts and the pauses in one round
trip (:meth:`Flow.snapshot`), decides how many to take from each lane (the worker's pure rules,
``pallycon_worker.flow_rules``) and takes them in one script (:meth:`Flow.take`), which puts
them on the site's dispatched set; a submit task takes its requests off it as it starts
(:meth:`Flow.started`). So a sweeper sends no more than a few seconds of each site's work to the
submit queue, and what is registered next is chosen when a place frees, not when it was queued.

A site's in-flight set is written by the transition script with each change of state, and the
``submitting`` mark is refused there (atomically) when the site is paused or at its cap
(``max_in_flight``): nothing counts a place twice or leaks one (a dead worker's request stays
``submitting`` until its lookup settles it, and holds its place until then, as it should).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

import redis

from pallycon.errors import FieldError, InvalidRequest
from pallycon_store.clock import ServerClock, execute
from pallycon_store.events import State
from pallycon_store.keys import Keys, flow_site
from pallycon_store.scripts import register


class Priority(StrEnum):
    """A request's priority: what is registered next is the oldest of the highest priority
    waiting, except that lower ones keep a guaranteed share (:data:`SHARES`)."""

    HIGH = "high"
    NORMAL = "normal"
    BULK = "bulk"


#: Highest first.
PRIORITIES = (Priority.HIGH, Priority.NORMAL, Priority.BULK)

#: The share of a site's registrations a priority is guaranteed while it has requests waiting
#: and higher ones take the rest (high takes whatever the others leave: at least 70 %).
SHARES: Mapping[Priority, float] = {Priority.NORMAL: 0.2, Priority.BULK: 0.1}

#: The default of ``submit``, the Python API and the intake; ``submit --batch`` defaults to bulk.
DEFAULT_PRIORITY = Priority.NORMAL

#: The pause of every site (the paused hash's field).
EVERY_SITE = "*"

#: How long a dispatched request counts against its site's room if its task never starts (a
#: worker killed with it prefetched, a message lost), in seconds: its site then takes more,
#: while the request itself comes back after its lease.
DISPATCH_EXPIRY = 10.0

#: Flow events (pauses and resumes) kept.
FLOW_EVENTS_MAXLEN = 1000


def parse_priority(value: object, where: str = "priority") -> Priority:
    """A request's priority as given (None or "": the default); InvalidRequest naming
    ``where`` otherwise."""
    if value is None or value == "":
        return DEFAULT_PRIORITY
    if isinstance(value, str):
        try:
            return Priority(value.strip().lower())
        except ValueError:
            pass
    shown = repr(value[:40]) if isinstance(value, str) else repr(value)[:40]
    message = f"must be one of high, normal, bulk (got {shown})"
    raise InvalidRequest([FieldError(where, message)])


def stored_priority(priority: str) -> Priority:
    """A record's priority field ("" in records older than priorities: normal)."""
    try:
        return Priority(priority) if priority else DEFAULT_PRIORITY
    except ValueError:
        return DEFAULT_PRIORITY


@dataclass(frozen=True)
class Lane:
    """One submit lane: the requests of one site (stored form) and one priority."""

    site_id: str
    priority: Priority
    key: str


@dataclass(frozen=True)
class Pause:
    """A site's pause (``site_id`` :data:`EVERY_SITE` for all)."""

    site_id: str
    reason: str
    at: float


@dataclass(frozen=True)
class FlowSnapshot:
    """What the sweeper decides from: each lane's due requests, each site's dispatched and in
    flight, and the pauses."""

    now: float
    due: Mapping[Lane, int]
    dispatched: Mapping[str, int]  # site -> requests dispatched whose task has not started
    in_flight: Mapping[str, int]  # site -> requests that may be at PallyCon
    pauses: Mapping[str, Pause] = field(default_factory=dict)

    def paused(self, site_id: str) -> Pause | None:
        """The pause that holds ``site_id`` (its own, or every site's), if any."""
        return self.pauses.get(site_id) or self.pauses.get(EVERY_SITE)


class Flow:
    """The submit lanes and what the sweeper and the operators read and write about them."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._take = register(client, "take")

    # --- Lanes -----------------------------------------------------------------------------

    def lanes(self, sites: Iterable[str] = ()) -> list[Lane]:
        """Every lane a request was put on, and those of ``sites`` (stored forms)."""
        known = {str(key) for key in cast(set[Any], self.redis.smembers(self.keys.submit_lanes))}
        lanes = {self._lane(key) for key in known}
        lanes |= {self.lane(site, priority) for site in sites for priority in PRIORITIES}
        return sorted((lane for lane in lanes if lane is not None), key=_lane_order)

    def lane(self, site_id: str, priority: Priority) -> Lane:
        return Lane(site_id, priority, self.keys.submit_lane(site_id, priority))

    def _lane(self, key: str) -> Lane | None:
        """The lane of a key of the lanes' set (None: not a lane key of this prefix)."""
        for priority in PRIORITIES:
            if key == self.keys.submit_lane("", priority):
                return self.lane("", priority)
            head = f"{self.keys.prefix}:site:"
            tail = f":schedule:submit:{priority.value}"
            if key.startswith(head) and key.endswith(tail):
                return self.lane(key[len(head) : -len(tail)], priority)
        return None

    def snapshot(
        self, now: float, lanes: Sequence[Lane], clock: ServerClock | None = None
    ) -> FlowSnapshot:
        """Each lane's due count, each site's dispatched (those still counting) and in flight,
        and the pauses, in one round trip; writes nothing (readers with a read-only Redis user
        call it too). With ``clock``, Redis's ``TIME`` is read in the same round trip and
        observed by it."""
        sites = sorted({lane.site_id for lane in lanes})
        pipe = self.redis.pipeline(transaction=False)
        for lane in lanes:
            pipe.zcount(lane.key, "-inf", repr(now))
        for site in sites:  # a read only: the take drops past entries
            pipe.zcount(self.keys.dispatched(site), f"({now!r}", "+inf")
            pipe.scard(self.keys.in_flight(site))
        pipe.hgetall(self.keys.paused)
        replies = execute(pipe, clock)  # with Redis's time, for the next sweep (one clock)
        due = {lane: int(n) for lane, n in zip(lanes, replies, strict=False)}
        rest = replies[len(lanes) :]
        dispatched = {site: int(rest[2 * i]) for i, site in enumerate(sites)}
        in_flight = {site: int(rest[2 * i + 1]) for i, site in enumerate(sites)}
        return FlowSnapshot(now, due, dispatched, in_flight, _pauses(rest[-1]))

    def take(
        self,
        now: float,
        lease: float,
        counts: Mapping[Lane, int],
        lookups: Mapping[str, int] | None = None,
        *,
        marked_before: float | None = None,
    ) -> dict[str, list[str]]:
        """Claim the ``counts`` oldest due requests of each lane for ``lease`` seconds and put
        them on their site's dispatched set (for at most :data:`DISPATCH_EXPIRY`), atomically:
        site -> request ids (each claimed by one caller only; it comes back by itself when the
        lease ends).

        ``lookups``: per site, a budget spent first on its due **lookups**, in any of its lanes
        of ``counts`` (those with a count of 0 too), then shared with the counts: its requests
        in flight whose entry is due (a worker died mid-registration, an answer was lost).
        They hold their place at PallyCon already, so the caller does not count them against
        the cap (were all its places held by such requests, nothing would be taken again), and
        they do not wait behind the lane's backlog. They are read from the site's in-flight
        set (for sites with a cap, which keeps it small), and only when one of its requests
        was marked ``submitting`` before ``marked_before`` (default: ``now``): no lookup falls
        due sooner after its mark."""
        lookups = lookups or {}
        chosen = [
            (lane, n) for lane, n in counts.items() if n > 0 or lookups.get(lane.site_id, 0) > 0
        ]
        if not chosen:
            return {}
        keys: list[str] = []
        expiry = now + min(lease, DISPATCH_EXPIRY)
        before = now if marked_before is None else marked_before
        args: list[Any] = [repr(now), repr(now + lease), repr(expiry), repr(before)]
        for lane, n in chosen:
            site = lane.site_id
            keys += [
                lane.key,
                self.keys.dispatched(site),
                self.keys.in_flight(site),
                self.keys.site_state_index(site, State.SUBMITTING),
            ]
            args += [n, lookups.get(site, -1)]
        replies = self._take(keys=keys, args=args)
        taken: dict[str, list[str]] = {}
        for (lane, _), ids in zip(chosen, replies, strict=True):
            if ids:
                taken.setdefault(lane.site_id, []).extend(str(i) for i in ids)
        return taken

    def started(self, by_site: Mapping[str, Sequence[str]]) -> None:
        """Submit tasks started for these requests: off their sites' dispatched sets (the
        sweeper may send more), and a sweeper woken."""
        if not by_site:
            return
        pipe = self.redis.pipeline(transaction=False)
        for site, ids in by_site.items():
            if ids:
                pipe.zrem(self.keys.dispatched(site), *ids)
        _kick(pipe, self.keys)
        pipe.execute()

    def wait(self, timeout: float) -> bool:
        """Block until a kick or ``timeout`` seconds (whole seconds are not needed: Redis
        takes fractions): whether there was a kick."""
        return self.redis.blpop([self.keys.flow_kick], timeout=timeout) is not None

    def sort_old_schedule(self, default_site: str | None, chunk: int = 500) -> int:
        """Move each entry of the submit schedule that a version before lanes wrote (one
        sorted set for every site and priority, now the default site's normal lane) to its own
        lane, with its score; drop those whose record is gone. Once per deployment (a marker
        key says it is done); safe to run from several workers at once. How many moved."""
        if self.redis.exists(self.keys.lanes_sorted):
            return 0
        old = self.keys.submit_schedule
        moved, cursor = 0, 0
        while True:
            cursor, entries = self.redis.zscan(old, cursor, count=chunk)
            pairs = [(str(member), float(score)) for member, score in entries]
            if pairs:
                moved += self._sort(old, pairs, default_site)
            if cursor == 0:
                break
        self.redis.set(self.keys.lanes_sorted, "1")
        return moved

    def _sort(self, old: str, pairs: list[tuple[str, float]], default_site: str | None) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for request_id, _ in pairs:
            pipe.hmget(self.keys.request(request_id), ["site_id", "priority", "version"])
        found = pipe.execute(raise_on_error=False)
        moves = self.redis.pipeline(transaction=False)
        moved = 0
        for (request_id, score), fields in zip(pairs, found, strict=True):
            if isinstance(fields, Exception):  # not a record: left where it is
                continue
            site, priority, version = fields
            if version is None:  # the record is gone
                moves.zrem(old, request_id)
                continue
            lane = self.keys.submit_lane(flow_site(site or "", default_site), priority or "")
            if lane != old:
                moves.zadd(lane, {request_id: score}, nx=True)
                moves.sadd(self.keys.submit_lanes, lane)
                moves.zrem(old, request_id)
                moved += 1
        moves.execute()
        return moved

    # --- Pauses ----------------------------------------------------------------------------

    def pause(self, site_id: str, reason: str, now: float) -> bool:
        """Pause registrations of ``site_id`` (:data:`EVERY_SITE`: all): whether it was not
        paused already. Pausing again keeps when it was paused (what the paused-for-long alert
        counts from), takes a new reason, and is a flow event only if the reason changed."""
        before = self.pauses().get(site_id)
        if before is not None and before.reason == reason:
            return False
        at = before.at if before is not None else now
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.paused, site_id, json.dumps({"reason": reason, "at": at}))
        self._event(pipe, "paused", site_id, reason, now)
        pipe.execute()
        return before is None

    def resume(self, site_id: str, now: float, reason: str = "") -> Pause | None:
        """Resume ``site_id``: the pause it had (None: it was not paused, and nothing is
        written). A sweeper is woken."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hget(self.keys.paused, site_id)
        pipe.hdel(self.keys.paused, site_id)
        raw, removed = pipe.execute()
        if not removed:
            return None
        pipe = self.redis.pipeline(transaction=True)
        self._event(pipe, "resumed", site_id, reason, now)
        _kick(pipe, self.keys)
        pipe.execute()
        return _pause(site_id, raw)

    def _event(self, pipe: Any, kind: str, site_id: str, reason: str, now: float) -> None:
        pipe.xadd(
            self.keys.flow_events,
            {"type": kind, "site": site_id, "reason": reason, "at": repr(now)},
            maxlen=FLOW_EVENTS_MAXLEN,
            approximate=True,
        )

    def pauses(self) -> dict[str, Pause]:
        """Every pause in force, by site (:data:`EVERY_SITE` for all)."""
        return _pauses(self.redis.hgetall(self.keys.paused))

    def events(self, count: int = 20) -> list[dict[str, str]]:
        """The latest flow events (pauses and resumes), newest first."""
        entries = cast(list[Any], self.redis.xrevrange(self.keys.flow_events, count=count))
        return [{str(k): str(v) for k, v in fields.items()} for _, fields in entries]

    def in_flight(self, site_id: str) -> int:
        return int(self.redis.scard(self.keys.in_flight(site_id)))


def _kick(pipe: Any, keys: Keys) -> None:
    pipe.lpush(keys.flow_kick, 1)
    pipe.ltrim(keys.flow_kick, 0, 0)


def _pause(site_id: str, raw: str) -> Pause:
    try:
        value = json.loads(raw)
        return Pause(site_id, str(value.get("reason", "")), float(value.get("at", 0.0)))
    except (ValueError, TypeError, AttributeError):
        return Pause(site_id, "", 0.0)


def _pauses(raw: Mapping[Any, Any]) -> dict[str, Pause]:
    return {str(site): _pause(str(site), str(value)) for site, value in raw.items()}


def _lane_order(lane: Lane) -> tuple[str, int]:
    return lane.site_id, PRIORITIES.index(lane.priority)
