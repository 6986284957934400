"""A private stack for one benchmark: Redis, the emulator, workers, the callback receiver."""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pallycon_config import Settings
from pallycon_emulator.config import DEMO_REGION, DEMO_SITE
from support import queue
from support.processes import ServerProcess
from support.samples import storage_request
from support.stack import Stack

BENCH = {
    "site_id": DEMO_SITE.site_id,
    "access_key": DEMO_SITE.access_key,
    "site_key": DEMO_SITE.site_key,
    "region": DEMO_REGION,
    "api_rate": 5000.0,
    "api_burst": 500,
    "callback_token": "benchmark-callback-token-0123",
}
BENCH_STORAGE = storage_request("bench", "bench-bucket", DEMO_REGION)


class BenchStack(Stack):
    """The shared stack, with the benchmarks' job and the CPU each part of it used."""

    def body(self, content_id: str, **changes: Any) -> dict[str, Any]:
        return {
            "job_name": content_id[:30],
            "storage": {
                "input": {"storage_id": self.storage_id, "contents_path": ["in/movie.mp4"]},
                "output": {"storage_id": self.storage_id, "path": "out"},
            },
            "content_id": content_id,
            "streaming_format": ["dash", "hls"],
            "protect_type": ["watermark"],
            **changes,
        }

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each part of the stack (see :func:`cpu_seconds`)."""
        assert isinstance(self.emulator, ServerProcess), "a measured emulator is a process"
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
    """The benchmarks' storage, registered on the emulator at ``api_url``; its id."""
    return queue.register_storage(api_url, DEMO_SITE, BENCH_STORAGE)


@contextlib.contextmanager
def stack(
    root: Path, *emulator_args: str, two_sites: bool = False, **settings: Any
) -> Iterator[BenchStack]:
    """Everything a benchmark needs, stopped afterwards (with ``two_sites``: a second site,
    :data:`support.samples.OTHER_SITE`, with its own storage: see :meth:`Stack.start`)."""

    def bench_settings(redis_url: str, api_url: str) -> Settings:
        return Settings(_env_file=None, **{**BENCH, "api_url": api_url, "redis_url": redis_url,
                                           **settings})  # fmt: skip

    with BenchStack.start(
        root, "--max-page-unit", "500", *emulator_args, site=DEMO_SITE, region=DEMO_REGION,
        settings=bench_settings, storage=BENCH_STORAGE, two_sites=two_sites,
    ) as built:  # fmt: skip
        yield built


def median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 3)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["ts"]).timestamp()
