"""What a worker process needs, built once per process from the settings."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import redis

from config import Settings
from pallycon.client import PallyConClient
from pallycon_pack.wiring import client_options
from worker.decisions import PollPolicy, RetryPolicy
from worker.keys import Keys
from worker.ratelimit import RateLimitedTransport
from worker.store import RequestStore

#: How long a smaller job-list page size, learnt from a page that was too large, is kept.
PAGE_UNIT_MEMORY = 3600.0


def connect_redis(url: str, *, decode: bool = True) -> redis.Redis:
    """A client that decodes to str (unless ``decode`` is off: bytes) and checks idle
    connections before use."""
    return redis.Redis.from_url(
        url, decode_responses=decode, health_check_interval=15, socket_connect_timeout=5
    )


def make_store(settings: Settings, client: redis.Redis | None = None) -> RequestStore:
    return RequestStore(
        client or connect_redis(settings.redis_url),
        Keys(settings.key_prefix),
        result_maxlen=settings.result_maxlen,
        record_ttl=settings.record_ttl,
        fsync_wait_ms=settings.redis_fsync_wait_ms,
    )


@dataclass
class Runtime:
    settings: Settings
    store: RequestStore
    api: PallyConClient
    region: str
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    _senders: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _page_unit: tuple[int, float] | None = field(default=None, init=False, repr=False)

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

    @property
    def retry(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(s.retry_base, s.retry_cap, s.reconcile_grace)

    @property
    def polling(self) -> PollPolicy:
        s = self.settings
        return PollPolicy(s.poll_interval, s.poll_busy_interval, s.poll_grid)

    @classmethod
    def build(cls, settings: Settings, transport: httpx.BaseTransport | None = None) -> Runtime:
        """Everything a worker needs; ConfigError names any missing setting."""
        credentials, region = settings.credentials(), settings.require_region()
        store = make_store(settings)
        pool = httpx.Limits(
            max_connections=settings.http_pool_size,
            max_keepalive_connections=settings.http_pool_size,
        )
        limited = RateLimitedTransport(
            transport or httpx.HTTPTransport(limits=pool),
            store,
            rate=settings.api_rate,
            burst=settings.api_burst,
        )
        api = PallyConClient(credentials, client_options(settings), transport=limited)
        return cls(settings, store, api, region)
