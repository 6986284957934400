"""Sentinels that fail, against real servers: one that never answers and one that refuses
connections, listed before the good ones, cost each process one short deadline (not redis-py's
retries for every sentinel); a wrong sentinel password ends things at once; and under Sentinel
the callback receiver queues a burst of callbacks as it does with one server."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from pallycon_config import Settings
from pallycon_pack.web.callbacks import REDIS_CONNECTIONS
from pallycon_producers.api import Producer
from pallycon_store.connect import _sentinels
from support.env import clean_env
from support.processes import WorkerProcess, cli, start_server
from support.queue import wait_all
from support.redis_server import MASTER_NAME, free_port, server_binary
from support.stack import Stack

pytestmark = pytest.mark.integration

TOKEN = "test-callback-token-0123456789"
WRONG = "wrong-sentinel-password-5c1e"


class SilentSentinel:
    """A listening socket that accepts every connection and never answers: a sentinel whose
    process hangs, or a firewall that swallows the replies."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.held.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.held:
            connection.close()


@dataclass
class Faulty:
    """A stack on a Sentinel group whose settings list a silent sentinel, then a refused
    port, then the group's three sentinels."""

    stack: Stack
    settings: Settings
    silent: SilentSentinel

    @property
    def env(self) -> dict[str, str]:
        return clean_env(self.settings.environment())


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    stack = Stack.start(
        tmp_path_factory.mktemp("sentinel-faults"),
        "--job-seconds",
        "0",
        sentinel=True,
        emulator="thread",
    )
    silent = SilentSentinel()
    try:
        assert stack.group is not None
        nodes = f"127.0.0.1:{silent.port},127.0.0.1:{free_port()},{stack.group.nodes}"
        settings = stack.settings.model_copy(
            update={"redis_sentinels": nodes, "callback_token": TOKEN}
        )
        yield Faulty(stack, settings, silent)
    finally:
        stack.stop()
        silent.close()


def test_health_passes_within_its_timeout(faulty: Faulty) -> None:
    """Before: FAIL "no answer within 5s" (the silent sentinel alone cost ~25 s)."""
    result = cli(
        "health", "--check", "redis", "--timeout", "5", "--json",
        env=faulty.env, cwd=faulty.stack.root,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    (check,) = json.loads(result.stdout)["checks"]
    assert check["ok"], check


def test_each_set_of_sentinel_clients_asks_a_silent_sentinel_once(faulty: Faulty) -> None:
    """Once, not once per retry (redis-py's default: 3 more, with backoff), and not again for
    later connections: the sentinel that answered is asked first from then on."""
    _sentinels.cache_clear()  # no earlier client of this process has reordered them
    producer = Producer.from_settings(faulty.settings)
    before = len(faulty.silent.held)
    for _ in range(3):
        producer.redis.ping()
        producer.redis.connection_pool.disconnect()  # the next ping asks the sentinels again
    assert len(faulty.silent.held) - before == 1


def test_a_producer_and_a_worker_go_through(faulty: Faulty, tmp_path: Path) -> None:
    """The producer (redis-py) and the worker (Celery's broker through kombu's sentinel
    transport, given the same sentinel options) start, submit and complete a request. Each
    new set of sentinel clients pays the silent sentinel once (2 s), then asks the one that
    answered first. Before: about 25 s each; the worker was ready after about 4 minutes."""
    log = tmp_path / "worker.log"
    worker = WorkerProcess(WorkerProcess.command(concurrency=1), faulty.env, log).start()
    try:
        worker.wait_ready(timeout=40)  # before: about 4 minutes
        producer = Producer.from_settings(faulty.settings)
        request_id = producer.submit(faulty.stack.body(f"faults-{time.monotonic_ns()}"))
        record = wait_all(producer, [request_id], timeout=30)[request_id]
    finally:
        worker.stop()
    assert record.state.value == "completed", record


def test_a_starting_worker_asks_a_silent_sentinel_once(faulty: Faulty, tmp_path: Path) -> None:
    """The worker's check of Redis pays the silent sentinel once; Celery's transport, which
    makes a set of sentinel clients for each of its connection pools, is given the sentinel
    that answered first. Before: about 7 asks, one 2 s deadline each (about 16 s to start
    instead of 5 on a busy test machine)."""
    log = tmp_path / "worker.log"
    before = len(faulty.silent.held)
    worker = WorkerProcess(WorkerProcess.command(concurrency=2), faulty.env, log).start()
    try:
        worker.wait_ready(timeout=60)
        asked = len(faulty.silent.held) - before
    finally:
        worker.stop()
    assert asked == 1, log.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def receiver(faulty: Faulty) -> Iterator[str]:
    server = start_server("callbacks", "--port", "0", env=faulty.env, cwd=faulty.stack.root)
    try:
        yield server.url
    finally:
        server.stop()


def test_the_receiver_becomes_ready(receiver: str) -> None:
    """Before: 503 for ever (its 1 s readiness deadline ran out on the silent sentinel)."""
    deadline, answers = time.monotonic() + 5, []
    while time.monotonic() < deadline:
        answers.append(httpx.get(f"{receiver}/health/ready", timeout=5).status_code)
        if answers[-1] == 200:
            break
        time.sleep(0.2)
    assert answers[-1] == 200, answers


def test_a_burst_of_callbacks_queues_for_connections(faulty: Faulty, receiver: str) -> None:
    """Three times the receiver's connections at once, readiness checks among them, while
    Redis holds every command for 0.3 s (CLIENT PAUSE): each waits for a connection and
    is answered 200, none 503 (before: 64 of 96 were 503, "MaxConnectionsError")."""
    assert faulty.stack.group is not None
    count = 3 * REDIS_CONNECTIONS
    limits = httpx.Limits(max_connections=count + 8)
    with (
        redis.Redis.from_url(faulty.stack.group.url) as primary,
        httpx.Client(base_url=receiver, timeout=15, limits=limits) as client,
        ThreadPoolExecutor(count) as pool,
    ):

        def call(n: int) -> int:
            if n % 8 == 0:
                return client.get("/health/ready").status_code
            body = {"job_id": 90000000 + n, "error_code": "0000"}
            return client.post(f"/callback/{TOKEN}", json=body).status_code

        assert set(pool.map(call, range(REDIS_CONNECTIONS))) == {200}  # connections made
        # Every connection held for a while (well within REDIS_TIMEOUT): the rest must queue.
        primary.client_pause(300)
        statuses = list(pool.map(call, range(count)))
    assert statuses.count(200) == count, sorted(set(statuses))


@pytest.fixture(scope="module")
def guarded_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A lone sentinel with a password (``requirepass right-password``); its port."""
    home = tmp_path_factory.mktemp("guarded-sentinel")
    port = free_port()
    config = home / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {home}\n"
        f"logfile {home / 'sentinel.log'}\nrequirepass right-password\n"
        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {free_port()} 2\n"
    )
    # Our binary and our file.
    process = subprocess.Popen(
        [server_binary(), str(config), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port, password="right-password", socket_timeout=1).ping()
                break
            except (redis.RedisError, OSError):
                assert time.monotonic() < deadline, "the sentinel did not start"
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _wrong_password_env(faulty: Faulty, port: int, **extra: str) -> dict[str, str]:
    settings = faulty.settings.model_copy(
        update={"redis_sentinels": f"127.0.0.1:{port}", "redis_sentinel_password": WRONG}
    )
    return clean_env(settings.environment(), **extra)


def test_a_wrong_sentinel_password_is_named_at_once(faulty: Faulty, guarded_sentinel: int):
    """``health`` fails at once with the sentinels' answer (before: "no answer within 5s", the
    refusal retried as an outage)."""
    env = _wrong_password_env(faulty, guarded_sentinel)
    result = cli("health", "--check", "redis", "--timeout", "5", env=env, cwd=faulty.stack.root)
    output = result.stdout.decode()
    assert result.returncode == 4, output + result.stderr.decode()
    assert output.split()[:2] == ["redis", "FAIL"], output
    assert output.rstrip().endswith(
        "MasterNotFoundError: No master found for 'mymaster': the sentinels refused the "
        "password (PALLYCON_REDIS_SENTINEL_PASSWORD)"
    ), output
    assert WRONG not in output


def test_a_worker_with_a_wrong_sentinel_password_stops_at_once(
    faulty: Faulty, guarded_sentinel: int
) -> None:
    """Refused credentials are permanent: the worker exits 3 at once rather than waiting out
    PALLYCON_REDIS_STARTUP_WAIT (60 s) as for Redis that is down; one line, no advice to check
    that Redis is running, no password."""
    env = _wrong_password_env(faulty, guarded_sentinel, PALLYCON_REDIS_STARTUP_WAIT="60")
    result = cli("worker", env=env, cwd=faulty.stack.root, timeout=50)  # the wait: 60 s
    errors = result.stderr.decode()
    assert result.returncode == 3, errors
    last = errors.strip().splitlines()[-1]
    assert last.endswith(
        "No master found for 'mymaster': the sentinels refused the password "
        "(PALLYCON_REDIS_SENTINEL_PASSWORD)"
    ), errors
    assert "reachable" not in errors
    assert "waiting up to" not in errors
    assert WRONG not in errors + result.stdout.decode()
