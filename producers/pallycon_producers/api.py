"""The Python API for upstream systems: submit packaging requests, look them up, read results.

    producer = Producer.from_settings(load_settings())
    request_id = producer.submit(job_body, request_id="cms-42")   # validated, then enqueued
    producer.get(request_id)                                     # the record, by id
    for entry_id, event in producer.events(after="0-0"): ...     # the result stream
    producer.wait(request_id, timeout=3600)                      # until it has finished
    producer.cancel(request_id)                                  # never registered, if not yet

A producer needs Redis only: never the PallyCon site key. It records requests on their submit
lanes; the workers' sweepers take them from there by priority and site.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis

from pallycon.models import JobRegisterRequest, api_dict
from pallycon_config import Settings, SiteBook
from pallycon_store.admission import (
    Limits,
    RequestConflict,
    Submission,
    admit,
    new_request_id,
    prepare,
)
from pallycon_store.cancel import Cancel, cancel
from pallycon_store.connect import REDIS_AWAY
from pallycon_store.durability import Durability
from pallycon_store.flow import Priority
from pallycon_store.keys import parked_stream
from pallycon_store.record import Record
from pallycon_store.records import Records
from pallycon_store.sites import announced, book
from pallycon_store.wiring import Store

__all__ = [
    "Cancel",
    "ParkedEvent",
    "Priority",
    "Producer",
    "RequestConflict",
    "ResultGroup",
    "SubmitUnconfirmed",
    "parked_counts",
]

log = logging.getLogger("pallycon_pack.producer")

Event = dict[str, Any]


class SubmitUnconfirmed(redis.TimeoutError):
    """Redis did not confirm that the requests are recorded, on disk and on the replicas asked
    for (``PALLYCON_REDIS_WAIT_REPLICAS``); they may be.

    Raised when the fsync or replica wait timed out after the write (the requests are recorded,
    and will be processed unless Redis crashes before its next fsync or fails over before a
    replica has them), or when the connection failed
    while the write was under way (they may or may not be recorded). Either way, submitting them
    again under :attr:`request_ids`, with the same bodies, is safe: nothing is created twice.
    """

    def __init__(self, request_ids: list[str], cause: Exception) -> None:
        self.request_ids = request_ids
        shown = ", ".join(request_ids[:10]) + (", ..." if len(request_ids) > 10 else "")
        super().__init__(
            f"{len(request_ids)} request(s) not confirmed ({cause}); submit them again with "
            f"the same ids, which is safe (they may also go through on their own): {shown}"
        )


class Producer:
    """Submits packaging requests and reads their records and events, through Redis only.

    Requests are admitted by :func:`pallycon_store.admission.prepare` and
    :func:`~pallycon_store.admission.admit`, the path the stream intake takes too. Each
    ``submit``/``submit_many`` call reads the sites the workers announce (one ``HGETALL``) and
    checks every request's site against them, so that a request naming no site where the
    workers have no default site is refused here, as by the intake, ``submit --batch`` and
    ``submit --site``, rather than failed later by a worker.
    """

    def __init__(
        self,
        records: Records,
        durability: Durability,
        *,
        max_api_json: int,
        max_api_json_any_site: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.records = records
        self.redis = records.redis
        self.keys = records.keys
        self.durability = durability
        #: The request size limits (for a named site: its id's length unknown here, the longest).
        self.limits = Limits(max_api_json, min(max_api_json, max_api_json_any_site or max_api_json))
        #: Times written in records; schedules follow Redis's clock unless a clock is given
        #: (a test's, which then rules both).
        self.clock = clock or time.time
        self._schedule_at_server = clock is None

    @classmethod
    def from_settings(cls, settings: Settings) -> Producer:
        store = Store.of(settings)
        return cls(
            store.records,
            store.durability,
            max_api_json=settings.max_api_json_bytes,
            max_api_json_any_site=settings.max_api_json_bytes_any_site,
        )

    def submit(
        self,
        body: Mapping[str, Any] | JobRegisterRequest,
        request_id: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        site_id: str | None = None,
        priority: Priority | str | None = None,
    ) -> str:
        """Validate and enqueue a packaging request; its request id.

        ``metadata``: your own JSON object (at most ``pallycon_store.admission.MAX_METADATA_BYTES``
        of compact JSON), kept in the record and carried in every event of the request.
        ``site_id``: the PallyCon site to package for (None or "": the workers' default site,
        which its id names too), checked against the sites the workers announce in Redis (read
        on every call, as the intake, ``submit --batch`` and ``submit --site`` check): one they
        do not serve, or none where they have no default site, is refused (an
        ``InvalidRequest`` whose errors name ``site_id``, beside any other bad field). Before
        any worker has announced a site, a request naming none is accepted.
        ``priority``: ``high``, ``normal`` (the default) or ``bulk``: what is registered next
        is the oldest of the highest priority waiting for its site, lower ones keeping a
        guaranteed share (docs/FLOW.md).

        Raises ``InvalidRequest`` (nothing enqueued) naming every bad field, or
        ``RequestConflict`` when ``request_id`` was used for a different body. Submitting the
        same body under the same id again returns the id and enqueues nothing new (the first
        submission's metadata stands).
        """
        ids = [request_id] if request_id else None
        return self.submit_many(
            [body], ids, metadata=[metadata], site_ids=[site_id], priority=priority
        )[0]

    def submit_many(
        self,
        bodies: Sequence[Mapping[str, Any] | JobRegisterRequest],
        request_ids: Sequence[str | None] | None = None,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        site_ids: Sequence[str | None] | None = None,
        priority: Priority | str | None = None,
        priorities: Sequence[Priority | str | None] | None = None,
    ) -> list[str]:
        """Validate and enqueue many requests at once, all or nothing: their ids.

        Every body is validated first: an invalid one raises ``InvalidRequest`` naming
        ``[index].field`` (just ``field`` for a batch of one), and so does an id given twice
        with different bodies; nothing is enqueued. Then all are recorded in one atomic step
        (one round trip, one fsync): if ids are already used for other bodies,
        ``RequestConflict`` names them (``request_ids``) and nothing is recorded; if Redis
        refuses the write (out of memory: ``redis.exceptions.OutOfMemoryError``), nothing is
        recorded. If Redis cannot
        confirm the write (connection lost under way, fsync not in time), ``SubmitUnconfirmed``
        carries the ids to submit again. Ids already used for the same body are returned as
        they are (nothing new is enqueued for them).

        ``metadata``, ``site_ids``, ``priorities``: one each (or None) per body, as for
        :meth:`submit` (the announced sites are read once per call); ``priority``: every
        body's, where ``priorities`` does not say. One call is one script and one transaction:
        for thousands of requests, call it in chunks of a few hundred (as ``pallycon-pack
        submit --batch`` does).
        """
        now = self.clock()
        ids: list[str | None] = list(request_ids) if request_ids else [None] * len(bodies)
        metas: list[Mapping[str, Any] | None] = (
            list(metadata) if metadata is not None else [None] * len(bodies)
        )
        sites: list[str | None] = list(site_ids) if site_ids is not None else [None] * len(bodies)
        ranks: list[Priority | str | None] = (
            [p if p is not None else priority for p in priorities]
            if priorities is not None
            else [priority] * len(bodies)
        )
        if any(len(given) != len(bodies) for given in (ids, metas, sites, ranks)):
            raise ValueError(
                "submit_many: one request id, metadata, site and priority per body, or none"
            )
        # Ids given now, so that a request is submitted again under the same one should Redis be
        # away from the sites' read on.
        named = [i or new_request_id() for i in ids]
        try:
            book = self.site_book()
        except REDIS_AWAY as exc:  # nothing written: submitting them again is safe
            raise SubmitUnconfirmed(named, exc) from exc
        submissions = [
            Submission(
                api_dict(body) if isinstance(body, JobRegisterRequest) else body,
                i,
                m,
                s,
                priority=p,
            )
            for body, i, m, s, p in zip(bodies, named, metas, sites, ranks, strict=True)
        ]
        prepared = prepare(submissions, now, sites=book, limits=self.limits)
        unique = list({p.request_id: p for p in prepared}.values())
        try:
            due: float | Literal["now"] = "now" if self._schedule_at_server else now
            outcomes = admit(self.records, self.durability, unique, submit_at=due)
        except REDIS_AWAY as exc:
            raise SubmitUnconfirmed([p.request_id for p in unique], exc) from exc
        conflicts = [p.request_id for p, o in zip(unique, outcomes, strict=True) if o == "conflict"]
        if conflicts:
            raise RequestConflict(*conflicts)
        return [p.request_id for p in prepared]

    def cancel(self, request_id: str, reason: str = "") -> Cancel:
        """Cancel a request (kept in Redis: it outlives restarts). One not yet registered is
        never registered and ends ``cancelled``; one that may be registered stops being tracked,
        and its job may still run at PallyCon (which has no cancel call): the result's
        ``outcome`` and ``message`` say which. A finished or unknown request is left alone."""
        return cancel(self.records, request_id, self.clock(), reason)

    @property
    def max_api_json(self) -> int:
        """The largest API JSON, in bytes, of a request for the default site."""
        return self.limits.max_api_json

    @property
    def max_api_json_any_site(self) -> int:
        """The largest API JSON, in bytes, of a request naming a site."""
        return self.limits.max_api_json_any_site

    def sites(self) -> list[str]:
        """The sites the workers serve (announced in Redis at their start-up), sorted."""
        return list(self.site_book().ids)

    def site_book(self) -> SiteBook:
        """The sites the workers announce in Redis, and their default one: what requests are
        checked against (one read)."""
        return book(self.redis, self.keys)

    def announced(self) -> tuple[str | None, list[str]]:
        """(the default site, if the workers have one; every site they serve, sorted), as
        the workers announce them in Redis."""
        return announced(self.redis, self.keys)

    def get(self, request_id: str) -> Record | None:
        """The request's record (state, job id, last status, error), or None."""
        return self.records.get(request_id)

    def events(
        self, *, after: str = "0-0", count: int = 500, block_ms: int | None = None
    ) -> list[tuple[str, Event]]:
        """Result events after the stream entry ``after`` (``$``: only new ones)."""
        reply = self.redis.xread({self.keys.results: after}, count=count, block=block_ms)
        entries = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], reply or [])
        return [
            (entry_id, json.loads(fields["event"]))
            for _, batch in entries
            for entry_id, fields in batch
        ]

    def follow(self, *, after: str = "$", block_ms: int = 1000) -> Iterator[tuple[str, Event]]:
        """Every result event from ``after`` on, waiting for new ones; never ends by itself."""
        cursor = after
        if cursor == "$":
            cursor = self.last_entry_id()
        while True:
            for entry_id, event in self.events(after=cursor, block_ms=block_ms):
                cursor = entry_id
                yield entry_id, event

    def wait(self, request_id: str, timeout: float, *, recheck: float = 1.0) -> Record:
        """Block until the request has finished (completed, failed, cancelled or stopped;
        TimeoutError after ``timeout``).

        The record is the truth; a pub/sub wake-up (announced with each event) has it read
        again at once. Pub/sub is at most once, so the record is also read every ``recheck``
        seconds without one.
        """
        deadline = self.clock() + timeout
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(self.keys.wake_channel)
        try:
            while True:
                record = self.get(request_id)
                if record is not None and record.state.final:
                    return record
                left = deadline - self.clock()
                if left <= 0:
                    state = record.state.value if record else "unknown"
                    raise TimeoutError(f"request {request_id} still {state} after {timeout:g} s")
                pubsub.get_message(timeout=min(left, recheck))
        finally:
            pubsub.close()

    def last_entry_id(self) -> str:
        """The newest result entry's id: read after it to see only what comes next."""
        last = self.redis.xrevrange(self.keys.results, count=1)
        return str(last[0][0]) if last else "0-0"


#: Deliveries of one event to a consumer group after which :class:`ResultGroup` parks it.
MAX_DELIVERIES = 5
#: Parked events kept per group (approximately: the oldest are trimmed past it).
PARKED_MAXLEN = 10_000


def over_limit(deliveries: int, max_deliveries: int) -> bool:
    """Whether an event delivered ``deliveries`` times (XPENDING's count, this delivery
    included) is parked instead of handed over."""
    return deliveries > max_deliveries


def parked_fields(
    entry_id: str, event: str | bytes, consumer: str, deliveries: int, max_deliveries: int
) -> dict[str, str | bytes | int]:
    """The parked stream's entry for an event: the event's text as it was, the result stream
    entry it was, the consumer it was last given to, its deliveries and why it was parked."""
    reason = (
        f"delivered {deliveries} times without being acknowledged "
        f"(more than max_deliveries={max_deliveries})"
    )
    return {
        "event": event,
        "entry_id": entry_id,
        "consumer": consumer,
        "deliveries": deliveries,
        "reason": reason,
    }


@dataclass(frozen=True)
class ParkedEvent:
    """An event a consumer group parked (see :class:`ResultGroup`)."""

    parked_id: str  # its entry in the parked stream (for :meth:`ResultGroup.drop`)
    entry_id: str  # its entry in the result stream
    event: Event
    consumer: str  # the consumer it was last given to
    deliveries: int
    reason: str


class ResultGroup:
    """Reading the result stream with a consumer group: at least once, acknowledged.

    Every group sees every event; within a group each event goes to one consumer, and stays
    pending until acknowledged. Read, handle, then acknowledge what was handled::

        group = ResultGroup(redis.Redis(), "pp:results", "my-cms", "consumer-1")
        while True:
            for entry_id, event in group.read():
                handle(event)             # idempotent: deduplicate on event["event_id"]
                group.ack(entry_id)

    ``read`` gives this consumer's own unacknowledged events first (left by a crash, or by a
    handler that raised), one at a time, then new ones: a consumer restarted under the same
    name resumes where it was. An event delivered more than ``max_deliveries`` times (Redis
    counts each delivery: XPENDING) is parked instead: acknowledged and copied, with the
    reason, to the stream ``<stream>:parked:<group>`` (``pp:results:parked:my-cms``; at most
    about :data:`PARKED_MAXLEN`), and reading goes on with the next events; :meth:`parked`
    lists them. Given again alone, an event a handler cannot get past is parked without its
    neighbours. A dead consumer's events are taken over with ``claim_stale`` (parked the same
    way when delivered too often). Any client works, decoding responses or not.
    """

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        consumer: str,
        max_deliveries: int = MAX_DELIVERIES,
    ) -> None:
        self.redis, self.stream, self.group, self.consumer = client, stream, group, consumer
        self.max_deliveries = max_deliveries
        self.parked_stream = parked_stream(stream, group)
        self._cursor = "0"  # our own pending entries first, then new ones (">")
        try:
            client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int = 100, block_ms: int = 1000) -> list[tuple[str, Event]]:
        """This consumer's oldest pending event, else up to ``count`` new ones (waiting up to
        ``block_ms``). Each stays pending until :meth:`ack`; once all events returned are
        acknowledged, the next read gives new ones. Pending events delivered too often are
        parked on the way (see the class)."""
        while self._cursor == "0":
            again = self._redeliver()
            if again is None:
                self._cursor = ">"  # nothing of ours pending: now the new ones
            elif again:
                return again
        reply = self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        events = self._events(_entries(reply))
        if events:
            self._cursor = "0"  # these stay pending until acknowledged: read them again first
        return events

    def _redeliver(self) -> list[tuple[str, Event]] | None:
        """This consumer's oldest pending event, given again alone; [] if it was parked (or
        trimmed from the stream), None if nothing is pending."""
        reply = self.redis.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=1)
        entries = _entries(reply)
        return self._events(self._sift(entries)) if entries else None

    def _sift(self, entries: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        """The entries given again, less those delivered too often, which are parked."""
        if not entries:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for raw_id, _ in entries:
            pipe.xpending_range(
                self.stream, self.group, raw_id, raw_id, 1, consumername=self.consumer
            )
        kept = []
        for (raw_id, fields), found in zip(entries, pipe.execute(), strict=True):
            deliveries = int(found[0]["times_delivered"]) if found else 0
            value = (fields or {}).get("event", (fields or {}).get(b"event"))
            if value is not None and over_limit(deliveries, self.max_deliveries):
                self._park(_text(raw_id), value, deliveries)
            else:
                kept.append((raw_id, fields))
        return kept

    def _park(self, entry_id: str, event: str | bytes, deliveries: int) -> None:
        """Copy an event to the parked stream and acknowledge it, in one transaction."""
        fields = parked_fields(entry_id, event, self.consumer, deliveries, self.max_deliveries)
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(self.parked_stream, fields, maxlen=PARKED_MAXLEN, approximate=True)  # type: ignore[arg-type]
        pipe.xack(self.stream, self.group, entry_id)
        pipe.execute()
        log.warning("result event %s parked in %s: %s", entry_id, self.parked_stream,
                    fields["reason"])  # fmt: skip

    def _events(self, entries: list[tuple[Any, Any]]) -> list[tuple[str, Event]]:
        """Entries as (entry id, event); an entry trimmed from the stream while pending (no
        fields left) is acknowledged and skipped: there is nothing left to hand over."""
        events, gone = [], []
        for raw_id, fields in entries:
            entry_id = _text(raw_id)
            value = (fields or {}).get("event", (fields or {}).get(b"event"))
            if value is None:
                gone.append(entry_id)
                continue
            events.append((entry_id, cast(Event, json.loads(value))))
        self.ack(*gone)
        return events

    def ack(self, *entry_ids: str) -> None:
        """Acknowledge handled events: they are not given again to anyone in the group."""
        if entry_ids:
            self.redis.xack(self.stream, self.group, *entry_ids)

    def claim_stale(self, min_idle_ms: int = 60_000, count: int = 100) -> list[tuple[str, Event]]:
        """Take over events another consumer of the group left unacknowledged ``min_idle_ms``;
        acknowledge them once handled, as with :meth:`read`. Those delivered more than
        ``max_deliveries`` times (the takeover counts one) are parked instead."""
        reply = self.redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_ms, "0-0", count=count
        )
        claimed = cast(tuple[Any, list[tuple[Any, Any]]], reply)[1]
        return self._events(self._sift(claimed))

    def parked(self, count: int = 100) -> list[ParkedEvent]:
        """The group's parked events, oldest first (up to ``count``)."""
        entries = cast(
            list[tuple[Any, dict[Any, Any]]],
            self.redis.xrange(self.parked_stream, count=count),
        )
        return [_parked(raw_id, fields) for raw_id, fields in entries]

    def drop(self, *parked_ids: str) -> None:
        """Delete parked events (dealt with by hand) from the parked stream."""
        if parked_ids:
            self.redis.xdel(self.parked_stream, *parked_ids)


def parked_counts(client: redis.Redis, stream: str) -> dict[str, int]:
    """Events parked by each consumer group of the result stream ``stream`` (its groups from
    XINFO GROUPS; 0 for one that parked none); none without the stream."""
    try:
        groups = cast(list[dict[Any, Any]], client.xinfo_groups(stream))
    except redis.ResponseError as exc:
        if "no such key" in str(exc).lower():
            return {}
        raise
    names = [_text(group["name"]) for group in groups]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.xlen(parked_stream(stream, name))
    return dict(zip(names, (int(n) for n in pipe.execute()), strict=True))


def _entries(reply: Any) -> list[tuple[Any, Any]]:
    """The entries of an XREADGROUP reply of one stream."""
    streams = cast(list[tuple[Any, list[tuple[Any, Any]]]], reply or [])
    return [entry for _, batch in streams for entry in batch]


def _parked(raw_id: Any, fields: dict[Any, Any]) -> ParkedEvent:
    text = {_text(name): _text(value) for name, value in fields.items()}
    return ParkedEvent(
        _text(raw_id),
        text["entry_id"],
        cast(Event, json.loads(text["event"])),
        text["consumer"],
        int(text["deliveries"]),
        text["reason"],
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
