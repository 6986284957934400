"""The language-neutral intake: packaging requests as JSON on a Redis stream.

A producer in any language adds an entry to the ``<prefix>:intake`` stream with the fields
``request`` (the job registration JSON, as text) and, optionally, ``request_id``,
``metadata`` (a JSON object as text, kept and carried in every event), ``site_id`` (the
PallyCon site, one the workers serve; none: the default site) and ``priority`` (``high``,
``normal``, the default, or ``bulk``). Workers read
it with a consumer group and give every entry exactly one visible outcome on the result stream:

- a valid request is recorded and enqueued exactly as the Python API does (``accepted``);
- an invalid one (any bytes: not UTF-8, not JSON, too large, a broken rule) whose request id is
  free is recorded as a ``failed`` request (stage ``validation``) naming the fields;
- an entry whose request id is taken changes nothing of that request: it gets a ``rejected``
  event (``conflict``, ``duplicate`` or ``invalid_request``) naming the entry and the reason.

An entry is acknowledged and deleted from the stream (never trimmed while pending) in the same
transaction that writes a ``rejected`` event, or once its request is recorded. Entries are read
as bytes and decoded field by field, so no entry can stop the intake; one whose handling fails
is retried with a backoff and, after ``PALLYCON_MAX_DELIVERIES`` failures, dead-lettered. A
dead worker's pending entries are taken over after :data:`CLAIM_IDLE_MS`. Only a failed handling
and a takeover count towards the limit (:func:`counts`): entries read again after a Redis error
are not redeliveries.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, cast

import redis

from pallycon.errors import FieldError, InvalidRequest
from pallycon_store.admission import (
    Limits,
    Submission,
    admit,
    check_metadata,
    check_request_id,
    parse_metadata,
    prepare,
    refuse,
)
from pallycon_store.connect import connect_redis, describe
from pallycon_store.events import FailStage, rejected
from pallycon_store.failures import FailureCode
from pallycon_store.keys import INTAKE_GROUP
from pallycon_store.records import Created, NewRequest
from pallycon_worker.loops import TRANSIENT, LoopHealth, next_pause
from pallycon_worker.runtime import Runtime

log = logging.getLogger("pallycon_pack.intake")

RawEntries = list[tuple[bytes, dict[bytes, bytes]]]

#: Entries read at once.
BATCH = 100
#: The largest intake entry (all its field names and values), in bytes; larger ones are refused.
MAX_ENTRY_BYTES = 256 * 1024
#: An entry pending this long with a consumer that does not acknowledge it is taken over.
CLAIM_IDLE_MS = 60_000
#: How often a worker looks for entries to take over, in seconds.
CLAIM_EVERY = 10.0
#: A consumer (a worker's name) idle this long with nothing pending is removed from the group.
FORGET_CONSUMER_MS = 3_600_000
#: How long one read waits for new entries, in milliseconds.
BLOCK_MS = 1000


# --- Pure: what an entry says --------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """An intake entry, decoded: what it asks for, or why it cannot be read."""

    entry_id: str
    request_id: str  # the given one if usable, else ``stream-<entry id>``
    request: str | None  # the job JSON text
    errors: tuple[FieldError, ...] = ()  # set: refused without reading ``request``
    metadata: str | None = None  # the producer's metadata, JSON object text
    site_id: str | None = None  # the PallyCon site it names
    priority: str | None = None  # high, normal or bulk

    def parsed_metadata(self) -> Any:
        """The metadata, parsed (raises InvalidRequest naming ``metadata``)."""
        return parse_metadata(self.metadata)

    def valid_metadata(self) -> str:
        """The metadata as compact JSON if it is valid, else "" (for a refused entry)."""
        try:
            return check_metadata(self.parsed_metadata())
        except InvalidRequest:
            return ""

    def body(self) -> Any:
        """The job JSON, parsed (raises InvalidRequest)."""
        if self.request is None:
            raise InvalidRequest([FieldError("request", "missing: the job JSON as text")])
        try:
            return json.loads(self.request)
        except (ValueError, RecursionError) as exc:
            raise InvalidRequest([FieldError("request", f"not JSON: {exc}")]) from None


def decode_entry(entry_id: str, fields: dict[bytes, bytes], max_bytes: int) -> Entry:
    """Decode an entry read as bytes, field by field; never raises."""
    fallback = f"stream-{entry_id}"
    size = sum(len(name) + len(value) for name, value in fields.items())
    if size > max_bytes:
        message = f"the entry is {size} bytes, over the limit of {max_bytes}"
        return Entry(entry_id, fallback, None, (FieldError("request", message),))
    texts: dict[str, str] = {}
    errors = []
    for raw_name, raw_value in fields.items():
        name = raw_name.decode("utf-8", errors="replace")
        try:
            texts[name] = raw_value.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(FieldError(name, f"not valid UTF-8 (byte {exc.start})"))
    request_id = texts.get("request_id") or fallback
    try:
        check_request_id(request_id)
    except InvalidRequest as exc:
        errors.extend(exc.errors)
        request_id = fallback
    return Entry(
        entry_id,
        request_id,
        texts.get("request"),
        tuple(errors),
        texts.get("metadata"),
        texts.get("site_id"),
        texts.get("priority"),
    )


class Delivery(Enum):
    """Why an entry is in hand, or what just happened to it: what its count says."""

    NEW = "new"  # read for the first time
    READ_AGAIN = "read_again"  # our own pending entry read again: after a failure or Redis error
    FAILED = "failed"  # its handling just failed: it stays pending, to be read again
    TAKEN_OVER = "taken_over"  # claimed from a consumer that left it pending and went quiet
    INHERITED = "inherited"  # pending at our start: this consumer's previous life left it


def counts(delivery: Delivery) -> bool:
    """Whether ``delivery`` counts towards ``PALLYCON_MAX_DELIVERIES``: a handling that failed,
    and an entry whose consumer died with it in hand (taken over, or inherited from this
    consumer's previous life: the process may have died handling it). Reading an entry again
    is not: a failure was counted when it happened, and a Redis error says nothing of it."""
    return delivery in (Delivery.FAILED, Delivery.TAKEN_OVER, Delivery.INHERITED)


def dead_letter_due(deliveries: int, limit: int) -> bool:
    """Whether an entry counted ``deliveries`` times is dead-lettered instead of handled."""
    return deliveries > limit


# --- I/O: reading, handling, finishing -----------------------------------------------------


class Intake:
    """One worker's consumer of the intake stream.

    An entry is admitted by the same :func:`pallycon_store.admission.prepare` and
    :func:`~pallycon_store.admission.admit` as the Python API's requests, with two deliberate
    differences. Its site is checked against the sites this worker is configured with (its
    ``Sites.book()``), not those the workers announce in Redis: no Redis read per entry, and
    the worker that accepts a request can serve it (during a rolling change that adds a site,
    an older worker's intake refuses an entry for it). And the write is not waited for (see
    ``admit``'s ``confirm``).
    """

    def __init__(
        self,
        rt: Runtime,
        consumer: str,
        health: LoopHealth,
        raw: redis.Redis | None = None,
    ) -> None:
        self.rt, self.consumer, self.health = rt, consumer, health
        #: Entries inherited at start and counted already (see :meth:`inherit`).
        self.inherited: set[str] = set()
        self.shared = rt.shared
        self.records = rt.shared.records
        self.stream = rt.shared.keys.intake
        # Entries are read as bytes: a field that is not UTF-8 is the entry's problem, not ours.
        self.raw = raw or connect_redis(rt.settings.redis, decode=False)
        #: The sites entries are checked against: this worker's (see the class's docstring).
        self.book = rt.catalog.book(served=True)
        self.limits = Limits.of(rt.settings)

    def run(self, stop: threading.Event) -> None:
        """Read until ``stop``; Redis errors are waited out with a backoff.

        Our own pending entries (``cursor`` ``0``: left by a failure, a Redis error, or this
        consumer's previous life) are read before new ones (``>``). Those the previous life
        left are counted once, at start (:meth:`inherit`); reading them again is not counted.
        """
        pause, cursor, next_claim, grouped = 0.5, "0", 0.0, False
        while not stop.is_set():
            try:
                if not grouped:  # once; a group deleted later fails the loop, which restarts
                    self.ensure_group()
                    self.inherit()
                    grouped = True
                if self.rt.clock() >= next_claim:
                    cursor = "0" if self.take_over() else cursor
                    next_claim = self.rt.clock() + CLAIM_EVERY
                entries = self.read(cursor)
                if cursor == "0" and not entries:
                    cursor = ">"  # our own pending entries are done: now the new ones
                elif self.handle_all(
                    entries, Delivery.NEW if cursor == ">" else Delivery.READ_AGAIN
                ):
                    cursor = "0"  # some failed: they are read again from our pending list
                    stop.wait(pause)
                    pause = next_pause(pause)
                    continue
                self.health.ok("intake")
                pause = 0.5
            except TRANSIENT as exc:
                log.warning("intake read failed (%s); retrying in %.1fs", describe(exc), pause)
                self.health.failed("intake", exc)
                cursor = "0"
                stop.wait(pause)
                pause = next_pause(pause)

    def ensure_group(self) -> None:
        try:
            self.raw.xgroup_create(self.stream, INTAKE_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def inherit(self) -> None:
        """Count once the entries pending with this consumer at its start (its previous life,
        under the same name, left them: it may have died handling one). Each once, even when
        a Redis error makes the loop start this again."""
        last = "-"
        while True:
            pending = cast(
                list[dict[str, bytes]],
                self.raw.xpending_range(
                    self.stream, INTAKE_GROUP, last, "+", BATCH, consumername=self.consumer
                ),
            )
            if not pending:
                return
            ids = [entry["message_id"].decode("ascii") for entry in pending]
            for entry_id in ids:
                if entry_id not in self.inherited:
                    self.count(entry_id, Delivery.INHERITED)
                    self.inherited.add(entry_id)
            last = f"({ids[-1]}"

    def read(self, cursor: str) -> RawEntries:
        block = BLOCK_MS if cursor == ">" else None
        replies = self.raw.xreadgroup(
            INTAKE_GROUP, self.consumer, {self.stream: cursor}, count=BATCH, block=block
        )
        return [
            entry
            for _, entries in cast(list[tuple[bytes, RawEntries]], replies or [])
            for entry in entries
        ]

    def take_over(self) -> int:
        """Claim the entries consumers left pending for :data:`CLAIM_IDLE_MS` and handle them
        (a redelivery each); the number that failed. Consumers idle for
        :data:`FORGET_CONSUMER_MS` with nothing pending are removed from the group."""
        reply = self.raw.xautoclaim(
            self.stream, INTAKE_GROUP, self.consumer, CLAIM_IDLE_MS, "0-0", count=BATCH
        )
        claimed = cast(RawEntries, reply[1])
        if claimed:
            log.warning("took over %d pending intake entries", len(claimed))
        for consumer in self.raw.xinfo_consumers(self.stream, INTAKE_GROUP):
            if consumer["pending"] == 0 and consumer["idle"] > FORGET_CONSUMER_MS:
                self.raw.xgroup_delconsumer(self.stream, INTAKE_GROUP, consumer["name"])
        return self.handle_all(claimed, Delivery.TAKEN_OVER)

    def handle_all(self, entries: RawEntries, delivery: Delivery) -> int:
        """Handle each entry on its own; the number whose handling failed (left pending, and
        counted). An entry counted more than ``max_deliveries`` times (:func:`counts`: its
        handling failed, or its consumer died with it) is dead-lettered instead."""
        failures, limit = 0, self.rt.settings.max_deliveries
        for raw_id, fields in entries:
            entry_id = raw_id.decode("ascii")
            if not fields:  # deleted while pending
                self.finish(entry_id)
            elif dead_letter_due(self.count(entry_id, delivery), limit):
                self.dead_letter(entry_id, fields)
            elif not self.handle_safely(entry_id, fields):
                self.count(entry_id, Delivery.FAILED)
                failures += 1
        return failures

    def handle_safely(self, entry_id: str, fields: dict[bytes, bytes]) -> bool:
        """Handle one entry; False if an unexpected error left it pending, to be read again."""
        try:
            self.handle(entry_id, fields)
        except TRANSIENT:
            raise  # Redis is away: the whole read is retried
        except Exception as exc:  # an entry must never stop the intake
            log.exception("intake entry %s could not be handled", entry_id)
            self.health.failed("intake", exc)
            return False
        return True

    def handle(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """Give one entry its outcome, then acknowledge it (idempotent on redelivery)."""
        entry = decode_entry(entry_id, fields, MAX_ENTRY_BYTES)
        now = self.rt.clock()
        try:
            ready = self.prepare(entry, now)
        except InvalidRequest as exc:
            outcome = refuse(
                self.records,
                entry.request_id,
                exc.errors,
                now,
                entry_id=entry_id,
                metadata=entry.valid_metadata(),
            )
            self.settle(entry, outcome, exc.errors)
            return
        # Redis's clock, or a test's
        due: float | Literal["now"] = "now" if self.rt.server_clock is not None else now
        (outcome,) = admit(self.records, self.shared.durability, [ready], submit_at=due,
                           confirm=False)  # fmt: skip
        self.settle(entry, outcome, [])

    def prepare(self, entry: Entry, now: float) -> NewRequest:
        """The entry's request, prepared for :func:`admit`; InvalidRequest naming every bad
        field (an entry that cannot be read, or whose body is not JSON, without the rest)."""
        if entry.errors:
            raise InvalidRequest(list(entry.errors))
        errors: list[FieldError] = []
        try:
            metadata = entry.parsed_metadata()
        except InvalidRequest as bad:
            metadata, errors = None, bad.errors
        try:
            body = entry.body()
        except InvalidRequest as bad:
            raise InvalidRequest(errors + bad.errors) from None
        submission = Submission(
            body, entry.request_id, metadata, entry.site_id, entry.entry_id, entry.priority
        )
        try:
            (ready,) = prepare([submission], now, sites=self.book, limits=self.limits)
        except InvalidRequest as bad:
            raise InvalidRequest(errors + bad.errors) from None
        if errors:
            raise InvalidRequest(errors)
        return ready

    def settle(self, entry: Entry, outcome: Created, errors: Sequence[FieldError]) -> None:
        """Acknowledge an entry; unless it created its request (or did, on an earlier
        delivery), with a ``rejected`` event: the id was taken by another entry or producer."""
        taken = outcome in ("duplicate", "conflict")
        if outcome == "created" or (taken and self.created_by(entry)):
            self.finish(entry.entry_id)
            return
        if errors:
            code, reason = FailureCode.INVALID_REQUEST, "; ".join(str(error) for error in errors)
            message = f"request id {entry.request_id!r} is taken; this entry: {reason}"
        elif outcome == "duplicate":
            code = FailureCode.DUPLICATE
            message = f"request {entry.request_id} was submitted before"
        else:
            code = FailureCode.CONFLICT
            message = f"request id {entry.request_id!r} is already used with a different body"
        fields = [{"field": e.field, "message": e.message} for e in errors] or None
        at = self.rt.clock()
        self.finish(
            entry.entry_id,
            rejected(entry.entry_id, entry.request_id, at, code, message, fields=fields),
        )

    def created_by(self, entry: Entry) -> bool:
        """Whether the request of the entry's id was created by this very entry."""
        return self.records.created_by(entry.request_id, entry.entry_id)

    def dead_letter(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """End an entry delivered too often: a failed request (stage ``dead_letter``), or a
        rejected event if its request id is taken or cannot be written."""
        limit = self.rt.settings.max_deliveries
        why = f"delivered more than {limit} times without being handled (see the worker log)"
        log.error("intake entry %s dead-lettered: %s", entry_id, why)
        entry = decode_entry(entry_id, fields, MAX_ENTRY_BYTES)
        error = FieldError("request", why)
        now = self.rt.clock()
        try:
            outcome = refuse(
                self.records,
                entry.request_id,
                [error],
                now,
                entry_id=entry_id,
                stage=FailStage.DEAD_LETTER,
                code=FailureCode.DEAD_LETTER,
            )
        except redis.ResponseError:  # the request's key is what fails: leave it alone
            outcome = "skipped"
        if outcome == "created" or (outcome == "duplicate" and self.created_by(entry)):
            self.finish(entry_id)
            return
        self.finish(
            entry_id, rejected(entry_id, entry.request_id, now, FailureCode.DEAD_LETTER, why)
        )

    def count(self, entry_id: str, delivery: Delivery) -> int:
        """The entry's count after ``delivery``: one more if it :func:`counts`, else as it
        was (none read for a new entry)."""
        key = self.shared.keys.intake_failures
        if counts(delivery):
            return int(self.shared.redis.hincrby(key, entry_id, 1))
        if delivery is Delivery.NEW:
            return 0
        return int(cast(str | None, self.shared.redis.hget(key, entry_id)) or 0)

    def finish(self, entry_id: str, event: dict[str, Any] | None = None) -> None:
        """Acknowledge and delete an entry, with its ``rejected`` event if any, atomically."""
        keys = self.shared.keys
        pipe = self.shared.redis.pipeline(transaction=True)
        if event is not None:
            pipe.xadd(
                keys.results,
                {"event": json.dumps(event)},
                maxlen=self.records.result_maxlen,
                approximate=True,
            )
            pipe.publish(keys.wake_channel, event["request_id"])
        pipe.xack(self.stream, INTAKE_GROUP, entry_id)
        pipe.xdel(self.stream, entry_id)
        pipe.hdel(keys.intake_failures, entry_id)
        pipe.execute()


def consume_intake(
    rt: Runtime, consumer: str, stop: threading.Event, health: LoopHealth
) -> Callable[[], None]:
    """The intake loop, ready to be supervised."""
    intake = Intake(rt, consumer, health)
    return lambda: intake.run(stop)
