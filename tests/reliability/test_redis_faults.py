"""Figure 11: Redis out of memory, and Redis stalled. Nothing half-written, nothing lost."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from pallycon_producers.api import Producer
from support.queue import make_settings
from support.samples import job_body
from support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.heavy]


def _fill_to_the_limit(client: redis.Redis, headroom: int) -> None:
    """Set maxmemory to what Redis uses now plus ``headroom`` bytes (noeviction)."""
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + headroom)


def test_figure_11_submit_many_is_all_or_nothing_when_redis_runs_out_of_memory(
    stack_factory, figure
):
    """Batches of 100 until Redis refuses: each batch is recorded whole or not at all."""
    stack = stack_factory()
    producer, client = stack.producer, stack.producer.redis
    _fill_to_the_limit(client, 2_000_000)
    whole, refused, errors = 0, 0, []
    try:
        for batch in range(40):
            ids = [f"oom-{batch}-{n}" for n in range(100)]
            try:
                producer.submit_many([stack.body(f"oom-{batch}-{n}") for n in range(100)], ids)
            except redis.RedisError as exc:
                errors.append(type(exc).__name__)
                refused += 1
                found = producer.records.get_many(ids)
                assert found == {}, f"batch {batch} half written: {len(found)} of 100"
                if refused == 3:
                    break
            else:
                whole += 1
                assert len(producer.records.get_many(ids)) == 100
    finally:
        client.config_set("maxmemory", 0)
    figure("11 redis out of memory, submit_many", batches_recorded_whole=whole,
           batches_refused_whole=refused, partial_batches=0, errors=sorted(set(errors)))  # fmt: skip
    assert whole >= 1
    assert refused == 3
    assert set(errors) == {"OutOfMemoryError"}


def _remote(stack: Stack, marker: str) -> list[str]:
    return stack.remote_jobs(marker)


def test_figure_11_workers_ride_out_redis_refusing_writes(stack_factory, worker_factory, figure):
    """40 requests in flight; Redis refuses every write for 8 s (out of memory), then has room
    again: every request completes, each with one remote job, and the worker never restarts."""
    stack = stack_factory("--job-seconds", "3")
    worker = worker_factory(stack.settings)
    marker = f"oom-run-{time.monotonic_ns()}"
    ids = [stack.producer.submit(stack.body(f"{marker}-{n}")) for n in range(40)]
    client = stack.producer.redis
    time.sleep(1.0)
    client.config_set("maxmemory", 1)  # below what it uses: every write is refused
    time.sleep(8)
    client.config_set("maxmemory", 0)
    records = stack.wait_final(ids, timeout=90)
    jobs = _remote(stack, marker)
    log = worker.log.read_text(errors="replace")
    figure("11 redis out of memory, workers", requests=len(ids),
           completed=sum(r.state.value == "completed" for r in records.values()),
           remote_jobs=len(jobs), duplicate_remote_jobs=len(jobs) - len(set(jobs)),
           writes_refused_logged=log.count("used memory > 'maxmemory'"), worker_restarts=log.count(" ready.") - 1)  # fmt: skip
    assert {r.state.value for r in records.values()} == {"completed"}
    assert len(jobs) == len(ids)
    assert sorted(r.job_id for r in records.values()) == sorted(jobs)
    assert log.count("used memory > 'maxmemory'") >= 1  # the outage did happen
    assert log.count(" ready.") == 1
    assert worker.process is not None
    assert worker.process.poll() is None


def test_figure_11_a_stalled_redis_delays_but_loses_nothing(stack_factory, worker_factory, figure):
    """40 requests in flight; the Redis process is frozen (SIGSTOP) for 6 s mid-run: every
    request completes with one remote job, and the worker carries on by itself."""
    stack = stack_factory("--job-seconds", "3")
    worker = worker_factory(stack.settings)
    marker = f"stall-{time.monotonic_ns()}"
    ids = [stack.producer.submit(stack.body(f"{marker}-{n}")) for n in range(40)]
    time.sleep(1.5)
    assert stack.redis.process is not None
    pid = stack.redis.process.pid
    os.kill(pid, signal.SIGSTOP)
    time.sleep(6)
    os.kill(pid, signal.SIGCONT)
    records = stack.wait_final(ids, timeout=90)
    jobs = _remote(stack, marker)
    log = worker.log.read_text(errors="replace")
    figure("11 redis stalled", requests=len(ids), stall_s=6,
           completed=sum(r.state.value == "completed" for r in records.values()),
           remote_jobs=len(jobs), duplicate_remote_jobs=len(jobs) - len(set(jobs)),
           worker_restarts=log.count(" ready.") - 1)  # fmt: skip
    assert {r.state.value for r in records.values()} == {"completed"}
    assert len(jobs) == len(ids) == len(set(jobs))
    assert worker.process is not None
    assert worker.process.poll() is None


def test_a_single_submit_under_out_of_memory_leaves_nothing(redis_server):
    """One request refused by a full Redis raises OutOfMemoryError and writes nothing."""
    settings = make_settings(redis_server.url, "http://127.0.0.1:9")
    producer = Producer.from_settings(settings)
    client = producer.redis
    client.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            producer.submit(job_body(), request_id="full-1")
    finally:
        client.config_set("maxmemory", 0)
    assert client.keys(f"{settings.key_prefix}:*") == []
