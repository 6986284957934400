"""The store's objects and a site's client, built from the settings in one place: every
setting reaches them, and no constructor keeps a default of its own for one."""

from __future__ import annotations

import inspect

import httpx
import pytest
import redis

from pallycon.models import JobListRequest
from pallycon_config import Settings
from pallycon_pack.web.exporter import FleetCollector
from pallycon_producers.api import Producer
from pallycon_store.durability import Durability
from pallycon_store.fleet import Fleet
from pallycon_store.keys import Keys
from pallycon_store.overview import Overview
from pallycon_store.ratelimit import TokenBucket
from pallycon_store.records import Records
from pallycon_store.wiring import Store
from pallycon_worker.clients import site_client
from pallycon_worker.decisions import PollPolicy, RetryPolicy
from pallycon_worker.loops import LoopHealth
from support.samples import REGION, SAMPLE_SITE

#: Parameters named otherwise than the setting they take.
ALIASES = {
    "prefix": "key_prefix",
    "mark": "key_prefix",
    "wait_ms": "redis_fsync_wait_ms",
    "replicas": "redis_wait_replicas",
    "replica_wait_ms": "redis_replica_wait_ms",
    "retry_after": "lease_seconds",
    "default_site": "site_id",
    "rate": "api_rate",
    "burst": "api_burst",
    "base": "retry_base",
    "cap": "retry_cap",
    "interval": "poll_interval",
    "busy_interval": "poll_busy_interval",
    "grid": "poll_grid",
}
#: The classes the settings are wired into.
WIRED = [
    Keys,
    Records,
    Overview,
    Durability,
    Fleet,
    TokenBucket,
    Store,
    Producer,
    LoopHealth,
    RetryPolicy,
    PollPolicy,
    FleetCollector,
]


@pytest.mark.parametrize("kind", WIRED, ids=lambda kind: kind.__name__)
def test_no_constructor_default_restates_a_setting(kind: type):
    """A parameter that takes a setting has no default: a caller that forgets it fails at
    once instead of running with a value the settings may not hold."""
    settings = set(Settings.model_fields)
    assert set(ALIASES.values()) <= settings
    defaulted = [
        name
        for name, parameter in inspect.signature(kind).parameters.items()
        if parameter.default is not inspect.Parameter.empty
        and (name in settings or name in ALIASES)
    ]
    assert defaulted == []


def _settings(**values) -> Settings:
    base = {
        "site_id": SAMPLE_SITE.site_id,
        "access_key": SAMPLE_SITE.access_key,
        "site_key": SAMPLE_SITE.site_key,
        "region": REGION,
        "redis_url": "redis://127.0.0.1:9/0",
    }
    return Settings(_env_file=None, **{**base, **values})


def test_the_store_takes_every_setting_it_needs():
    """Store.of hands each setting to the object that uses it (no Redis round trip)."""
    settings = _settings(
        key_prefix="wired",
        result_maxlen=4321,
        record_ttl=777,
        redis_fsync_wait_ms=55,
        redis_wait_replicas=2,
        redis_replica_wait_ms=66,
    )
    store = Store.of(settings, redis.Redis(port=9))
    assert store.keys == Keys("wired")
    assert (store.records.keys, store.records.result_maxlen) == (store.keys, 4321)
    assert store.records.record_ttl == 777
    durability = store.durability
    assert durability.mark == "wired:durability"
    assert (durability.wait_ms, durability.replicas, durability.replica_wait_ms) == (55, 2, 66)
    assert store.overview().default_site == SAMPLE_SITE.site_id
    assert store.overview().keys == store.fleet().keys == store.keys
    assert store.sender().conf.task_default_queue == "wired.submit"


def test_a_sites_client_signs_as_the_site_with_the_settings_options():
    """The default site from the settings' keys, at the settings' API URL with their read
    timeout, or with the timeout given (a health check's)."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"error_code": "0000", "total_count": 0, "data": []})

    settings = _settings(api_url="http://api.example:8000", read_timeout=17.0)
    query = JobListRequest(region=REGION, page_unit=1)
    for timeout in (None, 2.5):
        with site_client(settings, transport=httpx.MockTransport(answer), timeout=timeout) as api:
            api.list_jobs(query)
    default, bounded = (request.extensions["timeout"] for request in seen)
    assert str(seen[0].url).startswith(f"http://api.example:8000/api/v2/pack/{SAMPLE_SITE.site_id}")
    assert default["read"] == 17.0
    assert (bounded["connect"], bounded["read"]) == (2.5, 2.5)
