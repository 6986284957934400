"""Reading the requests as an operator does: by state, newest first, with their history.

Every request sits in the index of its state (a sorted set per state, scored by when it entered
that state), kept by the same scripts that change it (``create.lua``, ``transition.lua``). So
listing the failed requests of the last hour reads those and only those, never a scan of every
key, and memory stays bounded by ``limit`` whatever is in flight.

A finished record expires (``RECORD_TTL``) while its index entry stays: readers skip such
entries and drop them (:meth:`Overview.list`), and :meth:`Overview.trim` drops the old ones.
"""

from __future__ import annotations

import builtins
import heapq
import json
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any, cast

import redis

from store.events import State
from store.keys import Keys
from store.record import Record, decode
from store.records import RECORD_TTL

#: Index entries read per round trip while listing.
PAGE = 200


class Overview:
    """Counts, lists, histories and time series of the requests, read from the state indexes."""

    def __init__(self, client: redis.Redis, keys: Keys, *, record_ttl: int = RECORD_TTL) -> None:
        self.redis = client
        self.keys = keys
        self.record_ttl = record_ttl

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
    ) -> builtins.list[Record]:
        """Up to ``limit`` requests in ``state`` (any state when None), newest first by when
        each entered its state, entered in [``since``, ``until``]."""
        if limit <= 0:
            return []
        states = [state] if state is not None else list(State)
        streams = [self._newest(s, since, until) for s in states]
        merged = heapq.merge(*streams, key=lambda pair: -pair[1])
        found: builtins.list[Record] = []
        batch: builtins.list[str] = []
        for request_id, _ in merged:
            batch.append(request_id)
            if len(batch) >= limit - len(found):
                found += self._records(batch)
                batch = []
                if len(found) >= limit:
                    break
        found += self._records(batch)
        return found[:limit]

    def get(self, request_id: str) -> Record | None:
        """One request's record (None if there is none)."""
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.request(request_id)))
        return decode(request_id, raw) if raw else None

    def _newest(
        self, state: State, since: float | None, until: float | None
    ) -> Iterable[tuple[str, float]]:
        """(request id, time entered) of ``state``'s index, newest first, a page at a time."""
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
            yield from page
            if len(page) < PAGE:
                return
            offset += PAGE

    def _records(self, request_ids: builtins.list[str]) -> builtins.list[Record]:
        """The records of ``request_ids`` that still exist, in order; the index entries of the
        others (expired after they finished) are dropped."""
        if not request_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for request_id in request_ids:
            pipe.hgetall(self.keys.request(request_id))
        found: builtins.list[Record] = []
        gone: builtins.list[str] = []
        for request_id, raw in zip(request_ids, pipe.execute(), strict=True):
            if raw:
                found.append(decode(request_id, raw))
            else:
                gone.append(request_id)
        if gone:
            self._drop(gone)
        return found

    def _drop(self, request_ids: builtins.list[str]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for state in (State.COMPLETED, State.FAILED):
            pipe.zrem(self.keys.state_index(state), *request_ids)
        pipe.execute()

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
