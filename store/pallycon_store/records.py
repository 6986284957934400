"""Request records in Redis, and their changes with the result stream, atomically.

Every change of a request is one Lua script (``transition.lua``) that checks the record's
version, writes the new fields, appends the result event with its ``event_id`` stamped from the
new version, publishes the wake-up and moves the request between schedules, all at once. A
script replayed by a client retry after a lost reply finds the version already moved on and
does nothing, so no event is ever written twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal, cast

import redis

from pallycon_store.clock import ServerClock, execute
from pallycon_store.keys import Keys, flow_site
from pallycon_store.record import Fields, Record, decode, encode
from pallycon_store.schedules import Schedule
from pallycon_store.scripts import register

Created = Literal["created", "duplicate", "conflict", "skipped"]


class Applied(IntEnum):
    """What became of a change (the transition script's answer)."""

    GONE = -1  # the record is gone (expired)
    MOVED = 0  # the record's version moved on: someone else changed it first
    DONE = 1
    PAUSED = 2  # a gated change: its site is paused
    FULL = 3  # a gated change: its site is at its cap of requests in flight


@dataclass(frozen=True)
class NewRequest:
    """A request to create: its record's fields and its first event (without ``event_id``)."""

    request_id: str
    body_hash: str
    fields: Fields
    event: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Change:
    """One change of a request, made from ``record``'s version (see :meth:`Records.apply`).

    ``fields`` are written, ``event`` appended to the result stream (its ``event_id`` is
    stamped by the script, and the record's ``metadata`` added), the request moved to
    ``schedule`` due ``at``, its ``index_job`` indexed; ``finish`` takes it off both schedules
    and lets the record expire, ``revive`` keeps a finished record for good again. A change of
    ``state`` moves the request to that state's index, as entered at ``updated_at``, and in or
    out of its site's in-flight set (:attr:`pallycon_store.events.State.in_flight`).

    ``gate`` (the ``submitting`` mark): the site's cap of requests in flight (0: none); the
    change is not made if the site is paused or at its cap (:class:`Applied`).
    ``sent_before``: the change is not made (MOVED) if the record's ``sent_at`` is later: it
    was decided on a registration that never left, and its sender has since said it leaves.
    """

    record: Record
    fields: Fields
    event: dict[str, Any] | None = None
    schedule: Schedule | None = None
    at: float = 0.0
    index_job: str = ""
    finish: bool = False
    revive: bool = False
    gate: int | None = None
    sent_before: float | None = None


class Records:
    """The records of every request, their changes, and the result stream those write.

    ``result_maxlen``: the result events kept in the stream (approximately; older ones are
    trimmed at each write); ``record_ttl``: how long a finished request's record is kept
    (seconds). Both from the settings (``pallycon_store.wiring.Store``).
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        result_maxlen: int,
        record_ttl: int,
        default_site: str | None,
    ) -> None:
        self.redis = client
        self.keys = keys
        #: The default site's id (PALLYCON_SITE_ID): a record naming it by id (written before
        #: it became the default) waits on the default site's lanes and counts in its places.
        self.default_site = default_site
        self.result_maxlen = result_maxlen
        self.record_ttl = record_ttl
        self._create = register(client, "create")
        self._transition = register(client, "transition")
        self._leaving = register(client, "leaving")

    def create(self, new: NewRequest, *, submit_at: float | Literal["now"] | None) -> Created:
        """Record a new request (version 1) with its first event, unless the id is taken."""
        return self.create_many([new], submit_at=submit_at)[0]

    def create_many(
        self, items: Sequence[NewRequest], *, submit_at: float | Literal["now"] | None
    ) -> list[Created]:
        """:meth:`create` for many requests, all or nothing; each is put on its submit lane due
        at ``submit_at`` (``"now"``: Redis's time, one clock for schedules; None: not
        scheduled).

        Each is ``created``, or ``duplicate`` (the id holds the same body); if one is a
        ``conflict`` (the id holds another body), nothing at all is written and the others are
        ``skipped``. One atomic script: a Redis that refuses writes refuses the whole batch.
        """
        if not items:
            return []
        if len({item.request_id for item in items}) < len(items):
            raise ValueError("create_many: a request id is given twice")
        keys = [self.keys.results, self.keys.submit_lanes, self.keys.flow_kick]
        args: list[Any] = [
            self.result_maxlen,
            self.keys.wake_channel,
            "" if submit_at is None else submit_at if submit_at == "now" else repr(submit_at),
        ]
        for item in items:
            _check_event(item.event)
            state = item.fields["state"]
            site = item.fields.get("site_id", "")
            keys += [
                self.keys.request(item.request_id),
                self.keys.state_index(state),
                self.keys.site_state_index(site, state),
                self.keys.submit_lane(self.flow_site(site), item.fields.get("priority", "")),
            ]
            args += [
                item.request_id,
                item.body_hash,
                json.dumps(encode({**item.fields, "body_hash": item.body_hash})),
                json.dumps(item.event),
                self.record_ttl if state.final else "",
                repr(item.fields.get("created_at", 0.0)),
            ]
        outcomes = [str(outcome) for outcome in self._create(keys=keys, args=args)]
        if "conflict" in outcomes:
            outcomes = ["skipped" if o == "created" else o for o in outcomes]
        return cast(list[Created], outcomes)

    def flow_site(self, site_id: str) -> str:
        """:func:`pallycon_store.keys.flow_site` with this deployment's default site."""
        return flow_site(site_id, self.default_site)

    def get(self, request_id: str) -> Record | None:
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.request(request_id)))
        return decode(request_id, raw) if raw else None

    def get_many(
        self, request_ids: Sequence[str], clock: ServerClock | None = None
    ) -> dict[str, Record]:
        """The records of these ids (those that exist), in one round trip; with ``clock``,
        Redis's ``TIME`` is read in the same round trip and observed by it."""
        pipe = self.redis.pipeline(transaction=False)
        for request_id in request_ids:
            pipe.hgetall(self.keys.request(request_id))
        replies = execute(pipe, clock)
        return {
            request_id: decode(request_id, raw)
            for request_id, raw in zip(request_ids, replies, strict=True)
            if raw
        }

    def apply(self, changes: Sequence[Change]) -> list[bool]:
        """Apply changes (each atomic on its own) in one round trip: which were applied.

        A change made from a version someone else has moved on from is not applied (False).
        """
        return [outcome is Applied.DONE for outcome in self.apply_each(changes)]

    def apply_each(self, changes: Sequence[Change]) -> list[Applied]:
        """:meth:`apply`, saying why a change was not applied."""
        if len(changes) < 2:  # no pipeline needed
            calls = [self._transition_call(change) for change in changes]
            return [Applied(int(self._transition(keys=keys, args=args))) for keys, args in calls]
        pipe = self.redis.pipeline(transaction=False)
        for change in changes:
            keys, args = self._transition_call(change)
            self._transition(keys=keys, args=args, client=pipe)
        return [Applied(int(result)) for result in pipe.execute()]

    def _transition_call(self, change: Change) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the transition script for one change."""
        record = change.record
        request_id = record.request_id
        event = change.event
        if event is not None:
            _check_event(event)
            if record.metadata and "metadata" not in event:
                event = {**event, "metadata": json.loads(record.metadata)}
            if record.site_id and "site_id" not in event:
                event = {**event, "site_id": record.site_id}
        state = change.fields.get("state", record.state)
        entered = change.fields.get("updated_at", record.updated_at)
        site = record.site_id
        flow = self.flow_site(site)
        if state.in_flight and not record.state.in_flight:
            in_flight = "+"
        elif record.state.in_flight and not state.in_flight:
            in_flight = "-"
        else:
            in_flight = ""
        keys = [
            self.keys.request(request_id),
            self.keys.results,
            self.keys.submit_lane(flow, record.priority),
            self.keys.poll_schedule,
            self.keys.job_index,
            self.keys.state_index(record.state),
            self.keys.state_index(state),
            self.keys.site_state_index(site, record.state),
            self.keys.site_state_index(site, state),
            self.keys.submit_lanes,
            self.keys.flow_kick,
            self.keys.in_flight(flow),
            self.keys.paused,
        ]
        args = [
            str(record.version),
            json.dumps(encode(change.fields)),
            json.dumps(event) if event is not None else "",
            self.result_maxlen,
            self.keys.wake_channel,
            request_id,
            change.schedule or "",
            repr(change.at),
            self.keys.job_field(record.site_id, change.index_job) if change.index_job else "",
            self.record_ttl if change.finish else "",
            repr(entered) if state != record.state else "",
            "1" if change.revive else "",
            in_flight,
            "" if change.gate is None else str(change.gate),
            flow,
            "" if change.sent_before is None else repr(change.sent_before),
        ]
        return keys, args

    def leaving(self, records: Sequence[Record], now: float) -> list[bool]:
        """Write that these marked requests' registrations are about to leave (``sent_at``), each
        only if its record is still the version given (one round trip): which may be sent."""
        if not records:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for record in records:
            keys = [self.keys.request(record.request_id)]
            self._leaving(keys=keys, args=[str(record.version), repr(now)], client=pipe)
        return [int(result) == 1 for result in pipe.execute()]

    def count_deliveries(self, request_ids: Sequence[str]) -> list[int]:
        """Count one more delivery of each request, in one round trip: the new counts."""
        name = "deliveries"
        if len(request_ids) < 2:  # no pipeline needed
            return [int(self.redis.hincrby(self.keys.request(r), name, 1)) for r in request_ids]
        pipe = self.redis.pipeline(transaction=False)
        for request_id in request_ids:
            pipe.hincrby(self.keys.request(request_id), name, 1)
        return [int(value) for value in pipe.execute()]

    def request_for_job(self, job_id: str, site_id: str = "") -> str | None:
        """The request whose remote job is ``job_id`` of the site it named (``""``: none)."""
        found = self.redis.hget(self.keys.job_index, self.keys.job_field(site_id, job_id))
        return str(found) if found else None

    def created_by(self, request_id: str, entry_id: str) -> bool:
        """Whether the request ``request_id`` was created from the intake entry ``entry_id``."""
        return bool(self.redis.hget(self.keys.request(request_id), "entry_id") == entry_id)


def _check_event(event: dict[str, Any]) -> None:
    """The scripts put ``event_id`` first into the event's JSON: it must be a non-empty object
    without one."""
    if not event or "event_id" in event:
        raise ValueError("an event to write is a non-empty object without event_id")
