"""A private stack for one benchmark: Redis, the emulator, workers, the callback receiver."""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from config import Settings
from emulator.config import DEMO_REGION, DEMO_SITE
from pallycon.client import ClientOptions, PallyConClient
from pallycon.models import StorageRegisterRequest
from pallycon_pack.processes import ServerProcess, WorkerProcess, child_env
from pallycon_pack.redis_server import RedisServer
from producers.api import Producer
from store.events import EventType

BENCH = {
    "site_id": DEMO_SITE.site_id,
    "access_key": DEMO_SITE.access_key,
    "site_key": DEMO_SITE.site_key,
    "region": DEMO_REGION,
    "api_rate": 5000.0,
    "api_burst": 500,
    "callback_token": "benchmark-callback-token-0123",
}


FINAL_EVENTS = {EventType.COMPLETED.value, EventType.FAILED.value}


@dataclass
class Stack:
    root: Path
    redis: RedisServer
    emulator: ServerProcess
    settings: Settings
    producer: Producer
    storage_id: str
    workers: list[WorkerProcess] = field(default_factory=list)
    servers: list[ServerProcess] = field(default_factory=list)

    def body(self, content_id: str) -> dict[str, Any]:
        return {
            "job_name": content_id[:30],
            "storage": {
                "input": {"storage_id": self.storage_id, "contents_path": ["in/movie.mp4"]},
                "output": {"storage_id": self.storage_id, "path": "out"},
            },
            "content_id": content_id,
            "streaming_format": ["dash", "hls"],
            "protect_type": ["watermark"],
        }

    def start_workers(self, processes: int) -> None:
        env = child_env(self.settings.environment())
        log = self.root / f"worker-{len(self.workers)}.log"
        command = WorkerProcess.command(concurrency=processes)
        self.workers.append(WorkerProcess(command, env, log).start().wait_ready())

    def api_calls(self) -> int:
        counts = self.emulator.control("stats")["counts"]
        return sum(v for k, v in counts.items() if k.startswith(("GET ", "POST ", "PUT ")))

    def wait_final(self, ids: list[str], timeout: float) -> dict[str, Any]:
        """Wait for every request's final event, then read their records.

        Reads the result stream as it grows, as a consumer would: re-reading every record
        while waiting would take CPU from the very processes being measured.
        """
        deadline = time.monotonic() + timeout
        waiting, cursor = set(ids), "0-0"
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} requests not finished within {timeout} s")
            batch = self.producer.events(after=cursor, count=5000, block_ms=200)
            for _, event in batch:
                if event["type"] in FINAL_EVENTS:
                    waiting.discard(event["request_id"])
            cursor = batch[-1][0] if batch else cursor
        return self.producer.records.get_many(ids)

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each part of the stack (see :func:`cpu_seconds`)."""
        workers = [w.process.pid for w in self.workers if w.process is not None]
        pools = [child for pid in workers for child in children(pid)]
        redis_pid = self.redis.process.pid if self.redis.process else None
        return {
            "worker pool processes": cpu_seconds(pools),
            "worker main process": cpu_seconds(workers),
            "emulator": cpu_seconds([self.emulator.process.pid]),
            "Redis": cpu_seconds([redis_pid] if redis_pid else []),
            "benchmark process (producer, result reader, plain loop)": own_cpu_seconds(),
        }

    def events(self) -> list[dict[str, Any]]:
        return [event for _, event in self.producer.events(count=10_000_000)]


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU seconds of these processes, from /proc (0 where unreadable)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children(pid: int) -> list[int]:
    """The direct child processes of ``pid`` (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def cpu_per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
    """Milliseconds of CPU per job, by part, between two :meth:`Stack.cpu` readings."""
    return {part: round((after[part] - before[part]) * 1000 / jobs, 3) for part in after}


def register_storage(api_url: str) -> str:
    request = StorageRegisterRequest.model_validate(
        {
            "storage_name": "bench",
            "id": "AKIA",
            "password": "s",
            "aws_bucket": "bench-bucket",
            "region": DEMO_REGION,
        }
    )
    with PallyConClient(DEMO_SITE, ClientOptions(base_url=api_url)) as client:
        storage_id = client.register_storage(request).storage_id
    assert storage_id
    return storage_id


@contextlib.contextmanager
def stack(root: Path, *emulator_args: str, **settings: Any) -> Iterator[Stack]:
    """Everything a benchmark needs, stopped afterwards."""
    root.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(root / "redis").start()
    env = child_env({})
    emulator = ServerProcess.start("emulator", "--port", "0", "--max-page-unit", "500",
                                   *emulator_args, env=env, cwd=root)  # fmt: skip
    config = Settings(_env_file=None, **{**BENCH, "api_url": emulator.url, "redis_url": redis.url,
                                         **settings})  # fmt: skip
    built = Stack(root, redis, emulator, config, Producer.from_settings(config),
                  register_storage(emulator.url))  # fmt: skip
    try:
        yield built
    finally:
        for worker in built.workers:
            worker.stop()
        for server in built.servers:
            server.stop()
        for running in {id(emulator): emulator, id(built.emulator): built.emulator}.values():
            if running.process.poll() is None:  # a case may have swapped in another emulator
                running.stop()
        redis.stop()


def median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 3)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["ts"]).timestamp()
