"""The store's objects, built from the settings in one place.

Every process (worker, producer, command line, console, exporter) reaches the shared state in
Redis through a :class:`Store`: the keys under ``PALLYCON_KEY_PREFIX``, the records with
``PALLYCON_RESULT_MAXLEN`` and ``PALLYCON_RECORD_TTL``, the durability waits of
``PALLYCON_REDIS_*``. The objects' constructors take every such value without a default, so
that none can be built with a value the settings do not hold. Building them makes no round
trip (scripts are registered, not loaded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis import Redis

from pallycon_config import Settings
from pallycon_store.connect import connect_redis
from pallycon_store.counters import Counters
from pallycon_store.durability import Durability
from pallycon_store.fleet import Fleet
from pallycon_store.flow import Flow
from pallycon_store.keys import Keys
from pallycon_store.messages import sender
from pallycon_store.overview import Overview
from pallycon_store.records import Records
from pallycon_store.schedules import Schedules

if TYPE_CHECKING:  # Celery is imported by what sends, not by what only reads
    from celery import Celery


def keys_of(settings: Settings) -> Keys:
    """The keys under the settings' prefix."""
    return Keys(settings.key_prefix)


def durability_of(client: Redis, settings: Settings, keys: Keys) -> Durability:
    """The waits ``settings`` ask for, on ``client``, marking under ``keys``."""
    return Durability(
        client,
        wait_ms=settings.redis_fsync_wait_ms,
        mark=keys.durability_mark,
        replicas=settings.redis_wait_replicas,
        replica_wait_ms=settings.redis_replica_wait_ms,
    )


@dataclass(frozen=True)
class Store:
    """The shared state in Redis, as one process reaches it with its settings."""

    settings: Settings
    redis: Redis
    keys: Keys
    records: Records
    schedules: Schedules
    counters: Counters
    durability: Durability
    flow: Flow

    @classmethod
    def of(
        cls, settings: Settings, client: Redis | None = None, *, deadline: float | None = None
    ) -> Store:
        """The store on ``client``, else on a new connection to the settings' Redis (each
        command bounded by ``deadline`` seconds when given)."""
        if client is None:
            client = connect_redis(settings.redis, deadline=deadline)
        keys = keys_of(settings)
        return cls(
            settings,
            client,
            keys,
            Records(
                client,
                keys,
                result_maxlen=settings.result_maxlen,
                record_ttl=settings.record_ttl,
                default_site=settings.site_id,
            ),
            Schedules(client, keys, default_site=settings.site_id),
            Counters(client, keys),
            durability_of(client, settings, keys),
            Flow(client, keys),
        )

    def overview(self) -> Overview:
        """The operator's reads of the requests (the default site: ``PALLYCON_SITE_ID``)."""
        return Overview(self.redis, self.keys, default_site=self.settings.site_id)

    def fleet(self) -> Fleet:
        """The reads of the whole fleet's state (queues, schedules, intake, heartbeats)."""
        return Fleet(self.redis, self.keys)

    def sender(self) -> Celery:
        """A Celery app that sends the tasks to the settings' broker (defines none)."""
        return sender(self.settings.redis, self.keys)
