"""A private stack: its own Redis server and emulator (a process; for a test that neither
measures nor kills it, a thread of the test's process), settings for them, a producer and a
registered storage; workers and servers started on it are stopped with it. The reliability
tests and the benchmarks run on one each, with the emulator as a process."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import redis

from pallycon.client import ClientOptions, PallyConClient
from pallycon.models import JobListRequest, StorageRegisterRequest
from pallycon.signing import SiteCredentials
from pallycon_config import Settings
from pallycon_producers.api import Producer
from pallycon_store.events import EventType
from pallycon_store.keys import Keys
from support.emulator import RunningEmulator, start_thread_emulator
from support.env import clean_env, site_env
from support.processes import ServerProcess, WorkerProcess, start_emulator
from support.queue import make_settings, register_storage
from support.redis_server import MASTER_NAME, RedisServer, SentinelGroup
from support.samples import OTHER_SITE, REGION, SAMPLE_SITE, body_for

#: The events that end a request: it has reached a final state.
FINAL_EVENTS = {
    EventType.COMPLETED.value,
    EventType.FAILED.value,
    EventType.CANCELLED.value,
    EventType.STOPPED.value,
}


def write_sites_file(path: Path, site: SiteCredentials, region: str = REGION) -> Path:
    """A sites file (``PALLYCON_SITES``) naming ``site``, its site key in a file beside it."""
    key_file = path.with_name(f"{site.site_id.lower()}-site-key")
    key_file.write_text(site.site_key.get_secret_value() + "\n")
    path.write_text(
        f"[{site.site_id}]\n"
        f'access_key = "{site.access_key.get_secret_value()}"\n'
        f'site_key_file = "{key_file.name}"\n'
        f'region = "{region}"\n'
    )
    return path


@dataclass
class Stack:
    """One Redis server, one emulator, the settings that join them, a producer and a storage."""

    root: Path
    redis: RedisServer
    emulator: RunningEmulator
    settings: Settings
    producer: Producer
    storage_id: str
    workers: list[WorkerProcess] = field(default_factory=list)
    #: With a Sentinel group, ``redis`` is its first primary; the group is stopped with the stack.
    group: SentinelGroup | None = None
    servers: list[ServerProcess] = field(default_factory=list)
    #: With two sites: the second site (in the sites file) and its storage.
    other_site: SiteCredentials | None = None
    other_storage_id: str = ""
    #: The emulator the stack started (a caller may swap in another one: both are stopped).
    first_emulator: RunningEmulator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.first_emulator = self.emulator

    @classmethod
    def start(
        cls,
        root: Path,
        *emulator_args: str,
        site: SiteCredentials = SAMPLE_SITE,
        region: str = REGION,
        settings: Callable[[str, str], Settings] = make_settings,
        storage: StorageRegisterRequest | None = None,
        sentinel: bool = False,
        two_sites: bool = False,
        emulator: Literal["process", "thread"] = "process",
    ) -> Self:
        """A Redis server in ``root/redis`` (with ``sentinel``: a primary, two replicas and
        three sentinels, which the settings name), ``pallycon-pack emulator --port 0
        EMULATOR_ARGS`` serving ``site``, ``settings(redis_url, api_url)`` and ``storage``
        registered there. With ``two_sites``, the emulator and the settings (a sites file)
        serve :data:`OTHER_SITE` too, with a storage of its own: :meth:`submit` alternates.
        ``emulator="thread"`` serves the emulator from a thread of this process
        (:mod:`support.emulator`): for a test that neither measures nor kills it."""
        root.mkdir(parents=True, exist_ok=True)
        group = SentinelGroup(root / "sentinel").start() if sentinel else None
        server = group.primary if group else RedisServer(root / "redis").start()
        served_by: RunningEmulator | None = None
        other = OTHER_SITE if two_sites else None
        try:
            args = list(emulator_args)
            if other is not None:  # in a file, not on the command line (ps shows that)
                served = root / "emulator-sites"
                keys = (other.access_key.get_secret_value(), other.site_key.get_secret_value())
                served.write_text(":".join((other.site_id, *keys)) + "\n")
                args += ["--sites-file", str(served)]
            launch = start_thread_emulator if emulator == "thread" else start_emulator
            served_by = launch(*args, env=site_env(site, region), cwd=root)
            config = settings(server.url, served_by.url)
            if group:
                config = config.model_copy(
                    update={"redis_sentinels": group.nodes, "redis_master_name": MASTER_NAME}
                )
            other_storage = ""
            if other is not None:
                sites = write_sites_file(root / "sites.toml", other, region)
                config = config.model_copy(update={"sites_path": sites})
                other_storage = register_storage(served_by.url, other, storage)
            storage_id = register_storage(served_by.url, site, storage)
            producer = Producer.from_settings(config)
            return cls(
                root,
                server,
                served_by,
                config,
                producer,
                storage_id,
                group=group,
                other_site=other,
                other_storage_id=other_storage,
            )
        except BaseException:
            if served_by is not None:
                served_by.stop()
            (group or server).stop()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every process started on the stack: workers, servers, emulators, Redis."""
        for worker in self.workers:
            worker.stop()
        for server in self.servers:
            server.stop()
        for running in {id(e): e for e in (self.first_emulator, self.emulator)}.values():
            if not isinstance(running, ServerProcess) or running.process.poll() is None:
                running.stop()
        (self.group or self.redis).stop()

    def body(self, content_id: str, **changes: Any) -> dict[str, Any]:
        """A job body reading from and writing to the stack's storage."""
        return body_for(self.storage_id, content_id, **changes)

    def submit(self, content_id: str, number: int) -> str:
        """Submit request ``number`` for ``content_id``: with two sites, the odd ones for the
        second site (its own storage); its request id."""
        if self.other_site is not None and number % 2:
            body = body_for(self.other_storage_id, content_id)
            return self.producer.submit(body, site_id=self.other_site.site_id)
        return self.producer.submit(self.body(content_id))

    def sites(self) -> list[SiteCredentials]:
        """The sites the stack serves: the default one, then the other, if any."""
        return [self.settings.credentials(), *([self.other_site] if self.other_site else [])]

    def start_workers(self, processes: int) -> WorkerProcess:
        """One ``pallycon-pack worker`` of ``processes`` processes, ready; its log in ``root``."""
        env = clean_env(self.settings.environment())
        log = self.root / f"worker-{len(self.workers)}.log"
        command = WorkerProcess.command(concurrency=processes)
        worker = WorkerProcess(command, env, log).start().wait_ready()
        self.workers.append(worker)
        return worker

    def api_calls(self) -> int:
        """API requests the emulator has received so far."""
        counts = self.emulator.control("stats")["counts"]
        return sum(v for k, v in counts.items() if k.startswith(("GET ", "POST ", "PUT ")))

    def events(self) -> list[dict[str, Any]]:
        """Every event on the result stream, oldest first."""
        return [event for _, event in self.producer.events(count=10_000_000)]

    def remote_jobs(self, marker: str) -> list[str]:
        """Jobs the emulator holds whose content id contains ``marker``, of every site the
        stack serves: ``<job id>``, or ``<site>/<job id>`` for the second site's (job ids are
        per site), as the job index names them."""
        query = JobListRequest(
            region=self.settings.require_region(),
            search_keyword=marker,
            search_keyword_type="cid",
            page_unit=500,
        )
        options = ClientOptions(base_url=self.emulator.url)
        found = []
        for number, site in enumerate(self.sites()):
            with PallyConClient(site, options) as client:
                named = site.site_id if number else ""
                found += [Keys.job_field(named, job.job_id) for job in client.iter_jobs(query)]
        return found

    def remote_content_ids(self, marker: str) -> Counter[str]:
        """The content ids of the jobs the emulator holds whose content id contains
        ``marker``, of every site the stack serves, each with its number of jobs."""
        query = JobListRequest(
            region=self.settings.require_region(),
            search_keyword=marker,
            search_keyword_type="cid",
            page_unit=500,
        )
        options = ClientOptions(base_url=self.emulator.url)
        found: Counter[str] = Counter()
        for site in self.sites():
            with PallyConClient(site, options) as client:
                found.update(str(job.content_id) for job in client.iter_jobs(query))
        return found

    def exactly_once(self, ids: list[str], records: dict[str, Any], marker: str) -> dict[str, int]:
        """Assert every request completed with its own remote job, one per request, and no
        other job for ``marker`` exists (with two sites: at each request's own site); the
        counts, for a figure."""
        jobs = self.remote_jobs(marker)
        per_job = Counter(Keys.job_field(r.site_id, r.job_id) for r in records.values())
        completed = sum(r.state.value == "completed" for r in records.values())
        duplicates = len(jobs) - len(set(jobs)) + (len(jobs) - len(ids))
        counts = {
            "requests": len(ids),
            "completed": completed,
            "lost": len(ids) - len(records),
            "remote_jobs": len(jobs),
            "duplicate_remote_jobs": max(duplicates, 0),
        }
        assert completed == len(ids), counts
        assert len(jobs) == len(ids), counts
        assert sorted(jobs) == sorted(per_job), counts
        assert max(per_job.values()) == 1, counts
        return counts

    def wait_final(self, ids: list[str], timeout: float) -> dict[str, Any]:
        """Final records, re-read until all are final; survives a Redis restart while waiting.
        Past ``timeout``, an AssertionError counts them by state, and those with no record."""
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
        found = self.producer.records.get_many(ids)
        for record in found.values():
            counts[record.state.value] = counts.get(record.state.value, 0) + 1
        counts["lost (no record)"] = len(ids) - len(found)
        raise AssertionError(f"not all final after {timeout} s: {counts}")

    def follow_final(self, ids: list[str], timeout: float) -> dict[str, Any]:
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
