"""Fixtures for the reliability figures: a private stack per test, and the figures' report."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from pallycon.client import ClientOptions, PallyConClient
from pallycon.models import JobListRequest
from pallycon_pack.processes import WorkerProcess
from pallycon_pack.redis_server import RedisServer
from producers.api import Producer
from tests.conftest import REGION, SAMPLE_SITE, EmulatorProcess, make_settings
from tests.integration.test_queue import register_storage


@dataclass
class Stack:
    """One test's own Redis server, emulator, settings, producer and storage."""

    redis: RedisServer
    emulator: EmulatorProcess
    settings: Settings
    producer: Producer
    storage_id: str

    def body(self, content_id: str) -> dict[str, Any]:
        from tests.integration.test_queue import body_for

        return body_for(self.storage_id, content_id)

    def remote_jobs(self, marker: str) -> list[str]:
        query = JobListRequest(
            region=REGION, search_keyword=marker, search_keyword_type="cid", page_unit=500
        )
        with PallyConClient(SAMPLE_SITE, ClientOptions(base_url=self.emulator.url)) as client:
            return [job.job_id for job in client.iter_jobs(query)]

    def wait_final(self, ids: list[str], timeout: float) -> dict[str, Any]:
        """Final records; survives a Redis restart while waiting."""
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                records = self.producer.records.get_many(ids)
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.2)
                continue
            if len(records) == len(ids) and all(r.state.final for r in records.values()):
                return records
            time.sleep(0.25)
        counts: dict[str, int] = {}
        for record in self.producer.records.get_many(ids).values():
            counts[record.state.value] = counts.get(record.state.value, 0) + 1
        raise AssertionError(f"not all final after {timeout} s: {counts}")


@pytest.fixture
def stack_factory(
    tmp_path: Path, emulator_factory: Callable[..., EmulatorProcess]
) -> Iterator[Callable[..., Stack]]:
    servers: list[RedisServer] = []

    def build(*emulator_args: str, **settings: Any) -> Stack:
        server = RedisServer(tmp_path / f"redis-{len(servers)}").start()
        servers.append(server)
        emulator = emulator_factory(*emulator_args)
        config = make_settings(server.url, emulator.url, **settings)
        producer = Producer.from_settings(config)
        return Stack(server, emulator, config, producer, register_storage(emulator.url))

    yield build
    for server in servers:
        server.stop()


def stalls(producer: Producer, ids: list[str]) -> dict[str, float]:
    """Per request, the longest time it went without an event: p50, p99 and max, in seconds."""
    from datetime import datetime

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


__all__ = ["Stack", "WorkerProcess", "stalls"]
