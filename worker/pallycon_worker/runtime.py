"""What a worker process needs, built once per process from the settings, and the one way a
step commits what it decided."""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from pallycon.client import PallyConClient
from pallycon_config import Settings, SiteBook, Sites, UnknownSite
from pallycon_store.clock import ServerClock
from pallycon_store.connect import REDIS_AWAY
from pallycon_store.ratelimit import TokenBucket
from pallycon_store.record import Record
from pallycon_store.schedules import Schedule
from pallycon_store.sites import announce, book
from pallycon_store.wiring import Store
from pallycon_worker.clients import site_client
from pallycon_worker.flow_rules import SiteLimits
from pallycon_worker.outcome import Outcome, StepPolicy, not_served
from pallycon_worker.ratelimit import RateLimitedTransport

log = logging.getLogger("pallycon_pack.requests")

#: How long a smaller job-list page size, learnt from a page that was too large, is kept.
PAGE_UNIT_MEMORY = 3600.0


@dataclass(frozen=True)
class SiteRuntime:
    """One PallyCon site as a worker reaches it: its client (signing with the site's keys,
    through the site's own token bucket) and region."""

    site_id: str  # "" for the default site (the records' and keys' spelling)
    api: PallyConClient
    region: str
    max_in_flight: int = 0  # its cap of jobs at PallyCon at once (0: none)
    limiter: RateLimitedTransport | None = None  # its token bucket, to take a token ahead


@dataclass
class Runtime:
    settings: Settings
    shared: Store
    sites: dict[str, SiteRuntime]
    catalog: Sites
    clock: Callable[[], float] = time.time
    #: The clock corrected by Redis's (``TIME``, read with the records): ``clock`` in a worker
    #: (None where a test gives its own clock).
    server_clock: ServerClock | None = None
    rng: random.Random = field(default_factory=random.Random)
    _senders: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _page_unit: tuple[int, float] | None = field(default=None, init=False, repr=False)
    _unsettled: Unsettled | None = field(default=None, init=False, repr=False)

    @property
    def unsettled(self) -> Unsettled:
        """What this process decided but could not write (Redis away): written before anything
        else it does, and by a thread of its own until it is (see :class:`Unsettled`)."""
        if self._unsettled is None:
            self._unsettled = Unsettled(self)
        return self._unsettled

    @functools.cached_property
    def policy(self) -> StepPolicy:
        return StepPolicy.of(self.settings)

    def served(self, records: list[Record], schedule: Schedule) -> list[Record]:
        """The records of sites this worker serves; the others are committed as
        :func:`pallycon_worker.outcome.not_served` decides (left on ``schedule`` for a worker that
        serves their site; failed if none does and nothing was sent yet)."""
        kept, others = [], []
        for record in records:
            try:
                self.site(record.site_id)
            except UnknownSite as exc:
                others.append((record, exc.reason))
            else:
                kept.append(record)
        if others:  # rare: read which sites other workers serve
            served = book(self.shared.redis, self.shared.keys).ids
            now = self.clock()
            self.commit(
                [
                    not_served(record, why, now, self.policy, schedule,
                               elsewhere=bool(record.site_id) and record.site_id in served)
                    for record, why in others
                ]
            )  # fmt: skip
        return kept

    def served_limits(self) -> dict[str, SiteLimits]:
        """Each site this worker serves (stored form) with what bounds its dispatch: its API
        rate and its cap of jobs in flight."""
        return {
            self.book.stored(site.site_id): SiteLimits(site.api_rate, site.max_in_flight)
            for site in self.catalog.by_id.values()
        }

    @property
    def book(self) -> SiteBook:
        """The sites this worker serves, and its default one."""
        return self.catalog.book()

    def site(self, site_id: str) -> SiteRuntime:
        """The site a record names (``""``: the default); :class:`pallycon_config.UnknownSite` if
        this worker does not serve it."""
        return self.sites[self.book.stored(site_id)]

    def commit(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply the outcomes' changes in one round trip; log and count those applied.

        A change made from a version someone else has moved on from is not applied (False).
        """
        applied = self.shared.records.apply([outcome.change for outcome in outcomes])
        for outcome, done in zip(outcomes, applied, strict=True):
            if not done:
                continue
            if outcome.message:
                log.log(
                    logging.WARNING if outcome.level == "warning" else logging.INFO,
                    outcome.message,
                    extra={
                        "request_id": outcome.change.record.request_id,
                        "fields": outcome.fields,
                    },
                )
            for metric in outcome.counts:
                self.shared.counters.add(metric)
        return applied

    def commit_or_keep(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """:meth:`commit`; should Redis be away, the outcomes are kept to be written once it is
        back (:attr:`unsettled`) and the error raised."""
        try:
            return self.commit(outcomes)
        except REDIS_AWAY:
            self.unsettled.keep(outcomes)
            raise

    def page_unit(self) -> int:
        """Jobs per job-list page: the setting, or a smaller size learnt lately (see
        :meth:`shrink_page_unit`)."""
        if self._page_unit is not None:
            unit, until = self._page_unit
            if self.clock() < until:
                return unit
            self._page_unit = None
        return self.settings.poll_page_unit

    def shrink_page_unit(self, unit: int) -> None:
        """Use pages of ``unit`` jobs for :data:`PAGE_UNIT_MEMORY` (a page was too large)."""
        self._page_unit = (unit, self.clock() + PAGE_UNIT_MEMORY)

    def senders(self) -> ThreadPoolExecutor:
        """The threads that send a batch's registrations at once (started on first use)."""
        if self._senders is None:
            self._senders = ThreadPoolExecutor(
                self.settings.submit_concurrency, thread_name_prefix="pallycon-send"
            )
        return self._senders

    def drop_senders(self) -> None:
        """Give up the sending threads (their POSTs run to their end; none queued starts):
        the next batch gets new ones, so that a POST leaves when its ``sent_at`` says, not
        after POSTs an interrupted batch left running."""
        if self._senders is not None:
            self._senders.shutdown(wait=False, cancel_futures=True)
            self._senders = None

    def announce(self) -> None:
        """Write the sites this worker serves to Redis (:attr:`pallycon_store.keys.Keys.sites`: ids,
        regions, which is the default; never a secret), for producers to check requests
        against."""
        regions = {site.site_id: site.region for site in self.catalog.by_id.values()}
        caps = {site.site_id: site.max_in_flight for site in self.catalog.by_id.values()}
        announce(self.shared.redis, self.shared.keys, regions, self.catalog.default, caps)

    @classmethod
    def build(cls, settings: Settings, transport: httpx.BaseTransport | None = None) -> Runtime:
        """Everything a worker needs; ConfigError names any missing setting or bad site."""
        catalog = settings.sites()
        shared = Store.of(settings)
        pool = httpx.Limits(
            max_connections=settings.http_pool_size,
            max_keepalive_connections=settings.http_pool_size,
        )
        inner = transport or httpx.HTTPTransport(limits=pool)
        sites = {}
        for site in catalog.by_id.values():
            named = catalog.book().stored(site.site_id)
            bucket = TokenBucket(
                shared.redis, shared.keys, rate=site.api_rate, burst=site.api_burst, site_id=named
            )
            limited = RateLimitedTransport(inner, bucket)
            api = site_client(settings, site, transport=limited)
            sites[named] = SiteRuntime(named, api, site.region, site.max_in_flight, limited)
        server_clock = ServerClock()
        return cls(settings, shared, sites, catalog, clock=server_clock, server_clock=server_clock)


#: The pause between two tries of writing what a process keeps (seconds): doubled up to
#: :data:`UNSETTLED_MAX_PAUSE` while Redis stays away.
UNSETTLED_PAUSE = 0.25
UNSETTLED_MAX_PAUSE = 2.0


class Unsettled:
    """Changes a process made and could not write because Redis went away mid-step: the
    outcomes of registrations it sent (their job ids) and the take-back of marks it never sent.

    Kept in memory and written, version-checked, as soon as Redis answers: before the next step
    of this process does anything (:meth:`settle`) and by a thread of its own meanwhile, so that
    a Redis restart, failover or stall costs these requests seconds, not the hard time limit
    that marks left standing would wait. A change whose record moved on meanwhile is made again
    from the record as it is, if it is still the same attempt (a restarted Redis may have lost
    the writes after the mark); else it is dropped (someone else settled it)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._kept: list[Outcome] = []
        self._polls: list[str] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept) + len(self._polls)

    def _start(self) -> None:
        """The thread that retries while anything is kept (one at a time)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._retry, name="pallycon-unsettled", daemon=True
            )
            self._thread.start()

    def keep(self, outcomes: Sequence[Outcome]) -> None:
        """Keep these to write once Redis is back; a thread retries meanwhile."""
        if not outcomes:
            return
        with self._lock:
            self._kept.extend(outcomes)
        self._start()
        log.warning(
            "%d change(s) kept until Redis answers again (written before anything else)",
            len(outcomes),
        )

    def settle(self) -> None:
        """Write what is kept (REDIS_AWAY if Redis is still away: what is left is kept, for
        the next try). Polls kept are made due now."""
        with self._lock:
            kept, self._kept = self._kept, []
            polls, self._polls = self._polls, []
        if not kept and not polls:
            return
        try:
            applied = self.rt.commit(kept)
            again = [o for o, done in zip(kept, applied, strict=True) if not done]
            kept = again
            rebased = [o for o in (self._rebase(o) for o in again) if o is not None]
            kept = rebased
            self.rt.commit(rebased)
            kept = []
            if polls:
                self.rt.shared.schedules.poll_now(polls, self.rt.clock())
        except REDIS_AWAY:
            with self._lock:
                self._kept = kept + self._kept
                self._polls = polls + self._polls
            raise
        log.info("kept changes written after Redis came back")

    def _rebase(self, outcome: Outcome) -> Outcome | None:
        """``outcome`` made again from its record as it is now, if it is the same attempt; a
        registration's outcome (its job id) also when Redis lost the mark since (the record is
        back to before it, and has no job): its job exists, it must not be registered again."""
        before = outcome.change.record
        now = self.rt.shared.records.get(before.request_id)
        if now is None or now.state.final:
            return None
        same_attempt = now.state == before.state and now.submitting_at == before.submitting_at
        found_job = bool(outcome.change.index_job) and not now.job_id
        if not (same_attempt or found_job):
            return None
        return dataclasses.replace(outcome, change=dataclasses.replace(outcome.change, record=now))

    def keep_polls(self, request_ids: Sequence[str]) -> None:
        """A poll of these was cut short by Redis: make them due again as soon as it answers
        (not after the claim's lease)."""
        if not request_ids:
            return
        with self._lock:
            self._polls.extend(request_ids)
        self._start()

    def _retry(self) -> None:
        pause = UNSETTLED_PAUSE
        while len(self):
            time.sleep(pause)
            try:
                self.settle()
            except REDIS_AWAY:
                pause = min(pause * 2, UNSETTLED_MAX_PAUSE)
            except Exception:  # a defect: logged; the requests' schedules still bring them back
                log.exception("writing kept changes failed; dropping them")
                with self._lock:
                    self._kept, self._polls = [], []
