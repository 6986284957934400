"""The queue from the outside, for tests and benchmarks: settings for a private Redis and
emulator, a storage to package from, waiting for requests to end, reading their events."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from itertools import pairwise
from typing import Any, TypeVar

from pallycon.client import ClientOptions, PallyConClient
from pallycon.models import StorageRegisterRequest
from pallycon.signing import SiteCredentials
from pallycon_config import Settings
from pallycon_producers.api import Producer
from pallycon_store.sites import announce
from support.samples import REGION, SAMPLE_SITE, storage_request

T = TypeVar("T")

#: Timings that make a test's requests move in seconds, not minutes.
FAST = {
    "poll_interval": 0.5,
    "poll_busy_interval": 0.5,
    "poll_grid": 0.25,
    "sweep_interval": 0.1,
    "lease_seconds": 5.0,
    "retry_base": 0.2,
    "retry_cap": 2.0,
    "reconcile_grace": 1.0,
    "api_rate": 200.0,
    "api_burst": 200,
    "visibility_timeout": 60,
}


def make_settings(redis_url: str, api_url: str, **values: Any) -> Settings:
    """Settings for one test: its own key prefix (and so its own queues), fast timings."""
    base = {
        "site_id": SAMPLE_SITE.site_id,
        "access_key": SAMPLE_SITE.access_key,
        "site_key": SAMPLE_SITE.site_key,
        "region": REGION,
        "api_url": api_url,
        "redis_url": redis_url,
        "key_prefix": f"t{os.urandom(4).hex()}",
        "callback_token": "test-callback-token-0123456789",
        **FAST,
    }
    return Settings(_env_file=None, **{**base, **values})


def register_storage(
    api_url: str,
    site: SiteCredentials = SAMPLE_SITE,
    request: StorageRegisterRequest | None = None,
) -> str:
    """A storage registered on the emulator at ``api_url`` for ``site``; its id."""
    with PallyConClient(site, ClientOptions(base_url=api_url)) as client:
        found = client.register_storage(request or storage_request()).storage_id
    assert found
    return found


def wait_all(producer: Producer, request_ids: list[str], timeout: float = 60.0) -> dict[str, Any]:
    """The final records of these requests (fails the test if one does not end in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = producer.records.get_many(request_ids)
        if len(records) == len(request_ids) and all(r.state.final for r in records.values()):
            return records
        time.sleep(0.1)
    states = {rid: r.state.value for rid, r in producer.records.get_many(request_ids).items()}
    raise AssertionError(f"not finished in {timeout} s: {states}")


def eventually(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 30.0) -> T:
    """Read until ``done`` holds for what was read (fails the test with the last value if not)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"still {value!r} after {timeout} s")
        time.sleep(0.1)


def announce_sites(producer: Producer, default: str, *others: str, region: str = REGION) -> None:
    """Write ``pp:sites`` as workers serving ``default`` and ``others`` do at start-up (for
    readers' tests, where no worker runs)."""
    regions = dict.fromkeys((default, *others), region)
    announce(producer.redis, producer.keys, regions, default)


def events_of(producer: Producer, request_id: str | None = None) -> list[dict[str, Any]]:
    """The events on the result stream (of one request, if given), oldest first."""
    return [e for _, e in producer.events(count=100_000) if request_id in (None, e["request_id"])]


def stalls(producer: Producer, ids: list[str]) -> dict[str, float]:
    """Per request, the longest time it went without an event: p50, p99 and max, in seconds."""
    times: dict[str, list[float]] = {}
    wanted = set(ids)
    for _, event in producer.events(count=10_000_000):
        if event["request_id"] in wanted:
            times.setdefault(event["request_id"], []).append(
                datetime.fromisoformat(event["ts"]).timestamp()
            )
    worst = sorted(max((b - a for a, b in pairwise(ts)), default=0.0) for ts in times.values())
    if not worst:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}

    def pick(q: float) -> float:
        return round(worst[min(len(worst) - 1, int(q * len(worst)))], 1)

    return {"p50": pick(0.5), "p99": pick(0.99), "max": round(worst[-1], 1)}
