"""Reading the requests as an operator does: by state, newest first, with their history.

Every request sits in the index of its state (a sorted set per state, scored by when it entered
that state), kept by the same scripts that change it (``create.lua``, ``transition.lua``). So
listing the failed requests of the last hour reads those and only those, never a scan of every
key, and memory stays bounded by ``limit`` whatever is in flight.

A finished record expires (``PALLYCON_RECORD_TTL``) while its index entry stays: readers skip such
entries (they write nothing), and :meth:`Overview.trim` (the sweeper) drops the old ones.
:meth:`Overview.reindex` indexes requests recorded by a version without the indexes.

Sites: the state indexes hold every site's requests; a request that named a site is also in
that site's own index of its state (``Keys.site_state_index``). The sites are those the workers
announce (``Keys.sites``, never cleared: a site a worker once served stays there, and producers
refuse any other). So a named site's counts are its indexes' sizes, and the default site's are
the totals minus every other site's: a few ``ZCARD`` whatever is stored, never a scan.
"""

from __future__ import annotations

import builtins
import functools
import heapq
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import redis

from pallycon_config.site_ref import DEFAULT, SiteBook
from pallycon_store.events import State
from pallycon_store.failures import NO_CODE, explain
from pallycon_store.keys import Keys
from pallycon_store.record import Record, decode
from pallycon_store.sites import announced, book

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


def _both(
    first: Callable[[Record], bool], then: Callable[[Record], bool] | None
) -> Callable[[Record], bool]:
    return first if then is None else (lambda record: first(record) and then(record))


def _position(entry: tuple[str, float, State]) -> tuple[float, tuple[int, ...]]:
    """Where an index entry (request id, score, state) comes in :meth:`Overview.page`'s order:
    by score descending, then by request id descending byte by byte, as ``ZREVRANGEBYSCORE``
    orders one index (the trailing 0 puts ``ab`` after ``abc``)."""
    request_id, score, _ = entry
    return (-score, (*(-byte for byte in request_id.encode()), 0))


class Overview:
    """Counts, lists, histories and time series of the requests, read from the state indexes."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        default_site: str | None,
    ) -> None:
        self.redis = client
        self.keys = keys
        #: The default site's id (PALLYCON_SITE_ID); None: the one the workers announce as such.
        self.default_site = default_site
        #: Records skipped so far because this version cannot read them.
        self.unreadable = 0

    def sites(self) -> builtins.list[str]:
        """The ids of the sites the workers serve (announced in Redis), sorted."""
        return announced(self.redis, self.keys)[1]

    def book(self) -> SiteBook:
        """The sites the workers announce, the default one being :attr:`default_site` if set
        (one read)."""
        return book(self.redis, self.keys, default=self.default_site)

    def site_filter(self, label: str | None) -> str | None:
        """A site as a reader names it (``--site``, the console's ``site``) as the other
        methods take it (:meth:`SiteBook.filter`): None (or "") for every site, "" for the
        default one (by its label), else a site the workers serve;
        :class:`pallycon_config.UnknownSite` naming the sites otherwise."""
        return self.book().filter(label)

    def default_label(self) -> str:
        """What readers call the default site: its id, or "default" when it has none."""
        return self.book().label(DEFAULT)

    def _sites(self) -> tuple[SiteBook, builtins.list[str]]:
        """(the sites, the ids of those other than the default one, sorted)."""
        sites = self.book()
        return sites, [site for site in sites.ids if not sites.is_default(site)]

    def counts(self, site: str | None = None) -> dict[State, int]:
        """How many requests are in each state (finished ones: those not yet trimmed).
        ``site``: None for every site; "" or the default site's id for the default site (the
        requests that named no site or it); another id for the requests that named it."""
        if site is None:
            return self._counts([])[None]
        sites, named = self._sites()
        if not sites.is_default(site):
            keys = [self.keys.site_state_index(site, state) for state in State]
            return dict(zip(State, self._zcards(keys), strict=True))
        return self._counts(named)[""]

    def counts_by_site(self) -> dict[str | None, dict[State, int]]:
        """Counts by state of every site together (key None) and of each site: the default
        one as "" (the totals minus the other sites': the requests that named it or none),
        the others by id. Two round trips, whatever is stored."""
        return self._counts(self._sites()[1])

    def counts_of_sites(self) -> dict[str, dict[State, int]]:
        """Counts by state of each site, by the name readers give it: the default site first,
        by its id (or "default"), then the others by id. Without a default id the default
        site is left out when it holds nothing and other sites exist."""
        sites, named = self._sites()
        counts = self._counts(named)
        found: dict[str, dict[State, int]] = {}
        if sites.default or not named or any(counts[""].values()):
            found[sites.label(DEFAULT)] = counts[""]
        for site in named:
            found[site] = counts[site]
        return found

    def _counts(self, named: builtins.list[str]) -> dict[str | None, dict[State, int]]:
        keys = [self.keys.state_index(state) for state in State]
        for site in named:
            keys += [self.keys.site_state_index(site, state) for state in State]
        flat = self._zcards(keys)
        width = len(State)
        rows = [
            dict(zip(State, flat[n : n + width], strict=True)) for n in range(0, len(flat), width)
        ]
        found: dict[str | None, dict[State, int]] = {None: rows[0]}
        if named:
            # Read one after the other, not at one instant: never below 0
            found[""] = {
                state: max(0, rows[0][state] - sum(row[state] for row in rows[1:]))
                for state in State
            }
            found.update(zip(named, rows[1:], strict=True))
        else:
            found[""] = rows[0]
        return found

    def _zcards(self, keys: builtins.list[str]) -> builtins.list[int]:
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.zcard(key)
        return [int(n) for n in pipe.execute()]

    def list(
        self,
        state: State | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        where: Callable[[Record], bool] | None = None,
        site: str | None = None,
    ) -> builtins.list[Record]:
        """Up to ``limit`` requests in ``state`` (any state when None), newest first by when
        each entered its state, entered in [``since``, ``until``], and (``where``) matching.
        ``site`` as for :meth:`counts`: a named site's own indexes are read; the default
        site's requests are those of every site that named it or none."""
        if limit <= 0:
            return []
        states = [state] if state is not None else builtins.list(State)
        index_of = self.keys.state_index
        if site is not None:
            sites = self.book()
            if not sites.is_default(site):
                index_of = functools.partial(self.keys.site_state_index, site)
            else:
                mine = sites.stored_forms(DEFAULT)
                where = _both(lambda record: record.site_id in mine, where)
        streams = [self._newest(index_of(s), s, since, until) for s in states]
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

    def page(
        self,
        state: State | None = None,
        *,
        since: float | None = None,
        after: tuple[float, str] | None = None,
        limit: int = 50,
        sites: frozenset[str] | None = None,
        max_read: int | None = None,
    ) -> tuple[builtins.list[Record], tuple[float, str] | None]:
        """A page of :meth:`list`'s order (newest first by when each entered its state, ties
        by request id, descending): up to ``limit`` requests in ``state`` (any when None),
        entered at or after ``since``, after the position ``after`` (a previous page's
        ``next``), whose record's ``site_id`` is one of ``sites`` (as records keep it: ""
        for the default site; None: every site). Returns them and the position to read the
        next page from (None: this is the last).

        Named sites are read from their own indexes (merged); the default site's requests
        ("") have none, so a page of it reads every site's, filtered. ``max_read`` bounds the
        records read for one page: past it, the page ends there, shorter than ``limit`` (even
        empty), its next position the last entry read."""
        if limit <= 0:
            return [], None
        states = [state] if state is not None else builtins.list(State)
        indexes: builtins.list[tuple[str, State]] = [(self.keys.state_index(s), s) for s in states]
        where: Callable[[Record], bool] | None = None
        if sites is not None and DEFAULT in sites:
            where = lambda record: record.site_id in sites  # noqa: E731
        elif sites is not None:
            indexes = [
                (self.keys.site_state_index(site, s), s) for site in sorted(sites) for s in states
            ]
        until = after[0] if after is not None else None
        streams = [self._newest(key, s, since, until) for key, s in indexes]
        merged = heapq.merge(*streams, key=_position)
        found: builtins.list[tuple[Record, tuple[float, str]]] = []
        batch: builtins.list[tuple[str, float, State]] = []
        mark = _position((after[1], after[0], State.ACCEPTED)) if after is not None else None
        read = 0
        last: tuple[float, str] | None = None
        for entry in merged:
            if mark is not None and _position(entry) <= mark:
                continue  # on or before the previous page's last
            if max_read is not None and read >= max_read:
                found += self._placed(batch, where)
                if len(found) <= limit:  # stopped short: the next page reads on
                    return [record for record, _ in found], last
                batch = []
                break
            batch.append(entry)
            read += 1
            last = (entry[1], entry[0])
            if len(batch) >= max(limit + 1 - len(found), PAGE // 4):
                found += self._placed(batch, where)
                batch = []
                if len(found) > limit:
                    break
        found += self._placed(batch, where)
        more = len(found) > limit
        return [record for record, _ in found[:limit]], (found[limit - 1][1] if more else None)

    def _placed(
        self,
        batch: builtins.list[tuple[str, float, State]],
        where: Callable[[Record], bool] | None,
    ) -> builtins.list[tuple[Record, tuple[float, str]]]:
        """:meth:`_matching`, each record with its position (score, request id)."""
        scores = {request_id: score for request_id, score, _ in batch}
        records = self._matching([(request_id, index) for request_id, _, index in batch], where)
        return [(record, (scores[record.request_id], record.request_id)) for record in records]

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
        self, key: str, state: State, since: float | None, until: float | None
    ) -> Iterable[tuple[str, float, State]]:
        """(request id, time entered, ``state``) of ``state``'s index ``key``, newest first, a
        page at a time."""
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
        """Put every request in the index of its state (and, if it named a site, that site's
        index of it), and drop index entries whose request is gone, in another state or of
        another site: (entries added, entries dropped). For requests recorded by a version
        without the indexes (see docs/OPERATIONS.md, upgrading); safe to run at any time,
        while workers run (an entry a worker moves meanwhile is put right by it)."""
        added = dropped = 0
        sites = set(self.sites()) | self._indexed_sites(batch)
        prefix = len(self.keys.request(""))
        for ids in _batches(self.redis.scan_iter(self.keys.request("*"), count=batch), batch):
            pipe = self.redis.pipeline(transaction=False)
            for key in ids:
                pipe.hmget(key, "state", "updated_at", "created_at", "site_id")
            writes = self.redis.pipeline(transaction=False)
            for key, (state, updated, created, site) in zip(ids, pipe.execute(), strict=True):
                if state not in _STATES:
                    continue
                score = float(updated or created or 0.0)
                writes.zadd(self.keys.state_index(state), {key[prefix:]: score}, nx=True)
                if site:
                    sites.add(site)
                    index = self.keys.site_state_index(site, state)
                    writes.zadd(index, {key[prefix:]: score}, nx=True)
            added += sum(int(n) for n in writes.execute())
        for state in State:
            dropped += self._drop_stale(self.keys.state_index(state), state, None, batch)
            for site in sorted(sites):
                index = self.keys.site_state_index(site, state)
                dropped += self._drop_stale(index, state, site, batch)
        return added, dropped

    def _indexed_sites(self, batch: int) -> set[str]:
        """The sites that have an index (a SCAN of every key: :meth:`reindex` only), those no
        longer in :attr:`Keys.sites` too (removed from it while requests of theirs remain)."""
        start, end = self.keys.site_state_index("\0", "\0").split("\0")[:2]
        found = set()
        for key in self.redis.scan_iter(f"{start}*{end}*", count=batch):
            site, _, state = key[len(start) :].rpartition(end)
            if site and state in _STATES:
                found.add(site)
        return found

    def _drop_stale(self, index: str, state: State, site: str | None, batch: int) -> int:
        """Drop from ``index`` the requests gone or not in ``state`` (or, given ``site``, not
        of that site); how many."""
        dropped = 0
        for members in _batches((m for m, _ in self.redis.zscan_iter(index, count=batch)), batch):
            pipe = self.redis.pipeline(transaction=False)
            for request_id in members:
                pipe.hmget(self.keys.request(request_id), "state", "site_id")
            stale = [
                member
                for member, (now_in, of) in zip(members, pipe.execute(), strict=True)
                if now_in != state or (site is not None and (of or "") != site)
            ]
            if stale:
                dropped += int(self.redis.zrem(index, *stale))
        return dropped

    def per_bucket(
        self, state: State, since: float, until: float, bucket: float, site: str | None = None
    ) -> builtins.list[int]:
        """How many requests entered ``state`` in each ``bucket`` seconds from ``since`` to
        ``until`` (the last bucket may be shorter); of ``site``, as for :meth:`counts`."""
        if bucket <= 0 or until <= since:
            return []
        count = math.ceil((until - since) / bucket)
        key, minus = self.keys.state_index(state), []
        if site is not None:
            sites, named = self._sites()
            if not sites.is_default(site):
                key = self.keys.site_state_index(site, state)
            else:
                minus = [self.keys.site_state_index(other, state) for other in named]
        pipe = self.redis.pipeline(transaction=False)
        for n in range(count):
            start = since + n * bucket
            end = min(start + bucket, until)
            for index in (key, *minus):
                pipe.zcount(index, repr(start), f"({end!r}")
        flat = [int(value) for value in pipe.execute()]
        width = 1 + len(minus)
        return [max(0, flat[n] - sum(flat[n + 1 : n + width])) for n in range(0, len(flat), width)]

    def failures_by_code(
        self, since: float, limit: int = 1000, site: str | None = None
    ) -> builtins.list[tuple[str, str, int]]:
        """(error_code, what it means, count) among the newest ``limit`` requests that failed
        since ``since`` (of ``site``, as for :meth:`counts`), most frequent first. A code is
        explained with its failure's stage (a packaging failure's ``error`` is PallyCon's
        status word, not our :attr:`~pallycon_store.failures.FailureCode.ERROR`), so one code
        may head two rows."""
        failed = self.list(State.FAILED, since=since, limit=limit, site=site)
        found = Counter(
            (code, explain(code, record.error_stage))
            for record in failed
            for code in [record.error_code or NO_CODE]
        )
        return [(code, meaning, n) for (code, meaning), n in found.most_common()]

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

    def trim(self, now: float, record_ttl: float) -> int:
        """Drop the finished requests' index entries older than the records live
        (``record_ttl`` seconds: ``PALLYCON_RECORD_TTL``), of every site's indexes; how many
        entries."""
        indexes = [self.keys.state_index]
        indexes += [functools.partial(self.keys.site_state_index, s) for s in self.sites()]
        pipe = self.redis.pipeline(transaction=False)
        for index_of in indexes:
            for state in (State.COMPLETED, State.FAILED):
                pipe.zremrangebyscore(index_of(state), "-inf", f"({now - record_ttl!r}")
        return sum(int(n) for n in pipe.execute())
