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
from redis import Redis

from config import Settings
from pallycon.client import PallyConClient
from store.connect import connect_redis
from store.counters import Counters
from store.durability import Durability
from store.keys import Keys
from store.ratelimit import TokenBucket
from store.records import Records
from store.schedules import Schedules
from worker.outcome import Outcome, StepPolicy
from worker.ratelimit import RateLimitedTransport

log = logging.getLogger("pallycon_pack.requests")

#: How long a smaller job-list page size, learnt from a page that was too large, is kept.
PAGE_UNIT_MEMORY = 3600.0


@dataclass(frozen=True)
class Shared:
    """The shared state in Redis, as one process reaches it."""

    redis: Redis
    keys: Keys
    records: Records
    schedules: Schedules
    counters: Counters
    durability: Durability

    @classmethod
    def of(cls, settings: Settings, client: Redis | None = None) -> Shared:
        client = client or connect_redis(settings.redis)
        keys = Keys(settings.key_prefix)
        records = Records(
            client, keys, result_maxlen=settings.result_maxlen, record_ttl=settings.record_ttl
        )
        return cls(
            client,
            keys,
            records,
            Schedules(client, keys),
            Counters(client, keys),
            Durability.of(client, settings),
        )


@dataclass
class Runtime:
    settings: Settings
    shared: Shared
    api: PallyConClient
    region: str
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    _senders: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _page_unit: tuple[int, float] | None = field(default=None, init=False, repr=False)

    @functools.cached_property
    def policy(self) -> StepPolicy:
        return StepPolicy.of(self.settings)

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

    @classmethod
    def build(cls, settings: Settings, transport: httpx.BaseTransport | None = None) -> Runtime:
        """Everything a worker needs; ConfigError names any missing setting."""
        credentials, region = settings.credentials(), settings.require_region()
        shared = Shared.of(settings)
        pool = httpx.Limits(
            max_connections=settings.http_pool_size,
            max_keepalive_connections=settings.http_pool_size,
        )
        bucket = TokenBucket(
            shared.redis, shared.keys, rate=settings.api_rate, burst=settings.api_burst
        )
        limited = RateLimitedTransport(transport or httpx.HTTPTransport(limits=pool), bucket)
        api = PallyConClient(credentials, settings.client_options(), transport=limited)
        return cls(settings, shared, api, region)
