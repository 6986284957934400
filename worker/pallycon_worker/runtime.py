"""What a worker process needs, built once per process from the settings, and the one way a
step commits what it decided."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from pallycon.client import PallyConClient
from pallycon_config import Settings, SiteBook, Sites, UnknownSite
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


@dataclass
class Runtime:
    settings: Settings
    shared: Store
    sites: dict[str, SiteRuntime]
    catalog: Sites
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    _senders: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _page_unit: tuple[int, float] | None = field(default=None, init=False, repr=False)

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
            sites[named] = SiteRuntime(named, api, site.region, site.max_in_flight)
        return cls(settings, shared, sites, catalog)
