"""Reading the requests as an operator does: by state, newest first, with their history.

Every request sits in the index of its state (a sorted set per state, scored by when it entered
that state), kept by the same scripts that change it (``create.lua``, ``transition.lua``). So
listing the failed requests of the last hour reads those and only those, never a scan of every
key, and memory stays bounded by ``limit`` whatever is in flight.

A finished record expires (``RECORD_TTL``) while its index entry stays: readers skip such
entries (they write nothing), and :meth:`Overview.trim` (the sweeper) drops the old ones.
:meth:`Overview.reindex` indexes requests recorded by a version without the indexes.
"""

from __future__ import annotations

import builtins
import heapq
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import redis

from store.events import State
from store.keys import Keys
from store.record import Record, decode
from store.records import RECORD_TTL

#: Index entries read per round trip while listing.
PAGE = 200
_STATES = {state.value for state in State}


def _batches(items: Iterable[str], size: int) -> Iterator[builtins.list[str]]:
    batch: builtins.list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Overview:
    """Counts, lists, histories and time series of the requests, read from the state indexes."""

    def __init__(self, client: redis.Redis, keys: Keys, *, record_ttl: int = RECORD_TTL) -> None:
        self.redis = client
        self.keys = keys
        self.record_ttl = record_ttl
        #: Records skipped so far because this version cannot read them.
        self.unreadable = 0

    def counts(self) -> dict[State, int]:
        """How many requests are in each state (finished ones: those not yet trimmed)."""
        pipe = self.redis.pipeline(transaction=False)
        for state in State:
            pipe.zcard(self.keys.state_index(state))
        return dict(zip(State, (int(n) for n in pipe.execute()), strict=True))

    def list(
        self,
        state: State | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        where: Callable[[Record], bool] | None = None,
    ) -> builtins.list[Record]:
        """Up to ``limit`` requests in ``state`` (any state when None), newest first by when
        each entered its state, entered in [``since``, ``until``], and (``where``) matching."""
        if limit <= 0:
            return []
        states = [state] if state is not None else builtins.list(State)
        streams = [self._newest(s, since, until) for s in states]
        merged = heapq.merge(*streams, key=lambda entry: -entry[1])
        found: builtins.list[Record] = []
        batch: builtins.list[tuple[str, State]] = []
        for request_id, _, index in merged:
            batch.append((request_id, index))
            if len(batch) >= max(limit - len(found), PAGE // 4):
                found += self._matching(batch, where)
                batch = []
                if len(found) >= limit:
                    break
        found += self._matching(batch, where)
        return found[:limit]

    def _matching(
        self, batch: builtins.list[tuple[str, State]], where: Callable[[Record], bool] | None
    ) -> builtins.list[Record]:
        """The records of ``batch`` still in the state whose index listed them, and matching."""
        ids = [request_id for request_id, _ in batch]
        wanted = dict(batch)
        return [
            record
            for record in self._records(ids)
            if record.state == wanted[record.request_id] and (where is None or where(record))
        ]

    def get(self, request_id: str) -> Record | None:
        """One request's record (None if there is none)."""
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.request(request_id)))
        return decode(request_id, raw) if raw else None

    def _newest(
        self, state: State, since: float | None, until: float | None
    ) -> Iterable[tuple[str, float, State]]:
        """(request id, time entered, ``state``) of ``state``'s index, newest first, a page at
        a time."""
        key = self.keys.state_index(state)
        high: str = "+inf" if until is None else repr(until)
        low = "-inf" if since is None else repr(since)
        offset = 0
        while True:
            page = cast(
                builtins.list[tuple[str, float]],
                self.redis.zrevrangebyscore(
                    key, high, low, start=offset, num=PAGE, withscores=True
                ),
            )
            for request_id, score in page:
                yield request_id, score, state
            if len(page) < PAGE:
                return
            offset += PAGE

    def _records(self, request_ids: builtins.list[str]) -> builtins.list[Record]:
        """The records of ``request_ids`` that exist and can be read, in order. Nothing is
        written: the entries of records gone (expired
        after they finished) are the sweeper's to drop (:meth:`trim`), those left behind by an
        older version :meth:`reindex`'s; :attr:`unreadable` counts records skipped because this
        version cannot read them."""
        if not request_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for request_id in request_ids:
            pipe.hgetall(self.keys.request(request_id))
        found: builtins.list[Record] = []
        for request_id, raw in zip(request_ids, pipe.execute(), strict=True):
            if not raw:
                continue
            try:
                record = decode(request_id, raw)
            except (ValueError, TypeError):  # written by a newer version, say
                self.unreadable += 1
                continue
            found.append(record)
        return found

    def reindex(self, batch: int = 1000) -> tuple[int, int]:
        """Put every request in the index of its state, and drop index entries whose request
        is gone or in another state: (entries added, entries dropped). For requests recorded
        by a version without the indexes (see docs/OPERATIONS.md, upgrading); safe to run at
        any time, while workers run (an entry a worker moves meanwhile is put right by it)."""
        added = dropped = 0
        for ids in _batches(self.redis.scan_iter(self.keys.request("*"), count=batch), batch):
            pipe = self.redis.pipeline(transaction=False)
            for key in ids:
                pipe.hmget(key, "state", "updated_at", "created_at")
            prefix = len(self.keys.request(""))
            writes = self.redis.pipeline(transaction=False)
            for key, (state, updated, created) in zip(ids, pipe.execute(), strict=True):
                if state not in _STATES:
                    continue
                score = float(updated or created or 0.0)
                writes.zadd(self.keys.state_index(state), {key[prefix:]: score}, nx=True)
            added += sum(int(n) for n in writes.execute())
        for state in State:
            index = self.keys.state_index(state)
            for members in _batches(
                (m for m, _ in self.redis.zscan_iter(index, count=batch)), batch
            ):
                pipe = self.redis.pipeline(transaction=False)
                for request_id in members:
                    pipe.hget(self.keys.request(request_id), "state")
                stale = [
                    m for m, now_in in zip(members, pipe.execute(), strict=True) if now_in != state
                ]
                if stale:
                    dropped += int(self.redis.zrem(index, *stale))
        return added, dropped

    def per_bucket(
        self, state: State, since: float, until: float, bucket: float
    ) -> builtins.list[int]:
        """How many requests entered ``state`` in each ``bucket`` seconds from ``since`` to
        ``until`` (the last bucket may be shorter)."""
        if bucket <= 0 or until <= since:
            return []
        count = math.ceil((until - since) / bucket)
        key = self.keys.state_index(state)
        pipe = self.redis.pipeline(transaction=False)
        for n in range(count):
            start = since + n * bucket
            end = min(start + bucket, until)
            pipe.zcount(key, repr(start), f"({end!r}")
        return [int(value) for value in pipe.execute()]

    def failures_by_code(self, since: float, limit: int = 1000) -> dict[str, int]:
        """error_code -> count among the newest ``limit`` requests that failed since ``since``,
        most frequent first."""
        failed = self.list(State.FAILED, since=since, limit=limit)
        return dict(Counter(record.error_code or "unknown" for record in failed).most_common())

    def timeline(self, request_id: str) -> builtins.list[dict[str, Any]]:
        """The request's result events, oldest first (those trimmed from the stream are gone;
        [] when there is no such request)."""
        entries = cast(str | None, self.redis.hget(self.keys.request(request_id), "events"))
        if not entries:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for entry in entries.split():
            pipe.xrange(self.keys.results, entry, entry)
        events = []
        for found in pipe.execute():
            for _, fields in found:
                events.append(json.loads(fields["event"]))
        return events

    def trim(self, now: float) -> int:
        """Drop the finished requests' index entries older than the records live; how many."""
        pipe = self.redis.pipeline(transaction=False)
        for state in (State.COMPLETED, State.FAILED):
            pipe.zremrangebyscore(
                self.keys.state_index(state), "-inf", f"({now - self.record_ttl!r}"
            )
        return sum(int(n) for n in pipe.execute())
