"""``pallycon-pack metrics`` under stress, as a real process over a private Redis: a stalled
Redis answered at once to every concurrent scrape, idle and surplus connections let go, and a
Host check on loopback (DNS rebinding)."""

from __future__ import annotations

import os
import re
import signal
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pallycon_pack.web.asgi import HEADER_TIMEOUT
from pallycon_pack.web.exporter import MAX_CONNECTIONS
from support.env import clean_env
from support.processes import ServerProcess, start_server
from support.redis_server import RedisServer

pytestmark = pytest.mark.integration

UP = re.compile(r"^pallycon_pack_up (\S+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def redis_alone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this module's own: a test freezes it."""
    with RedisServer(tmp_path_factory.mktemp("exporter") / "redis") as server:
        yield server


@pytest.fixture(scope="module")
def exporter(redis_alone: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The exporter on 127.0.0.1 (any free port); yields its URL."""
    env = clean_env(PALLYCON_REDIS_URL=redis_alone.url)
    cwd = tmp_path_factory.mktemp("metrics")
    server: ServerProcess = start_server("metrics", "--port", "0", env=env, cwd=cwd)
    yield server.url
    server.stop()


def _up(response: httpx.Response) -> str:
    found = UP.search(response.text)
    return found.group(1) if found else f"no up in {response.status_code} {response.text[:200]!r}"


def test_every_concurrent_scrape_of_a_stalled_redis_answers_up_0(
    exporter: str, redis_alone: RedisServer
):
    """Redis frozen (SIGSTOP): 50 scrapes at once share one collection, and each is answered
    pallycon_pack_up 0 (none waits behind the others' collections, none times out at 10 s)."""
    assert _up(httpx.get(f"{exporter}/metrics", timeout=10)) == "1.0"
    assert redis_alone.process is not None
    os.kill(redis_alone.process.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(50) as pool:
            answers = list(
                pool.map(lambda _: httpx.get(f"{exporter}/metrics", timeout=10), range(50))
            )
    finally:
        os.kill(redis_alone.process.pid, signal.SIGCONT)
    assert [(a.status_code, _up(a)) for a in answers] == [(200, "0.0")] * 50
    assert all(a.text.count("\n# HELP") == 0 for a in answers)  # up 0 alone: no stale figures
    assert _up(httpx.get(f"{exporter}/metrics", timeout=10)) == "1.0"


@pytest.mark.parametrize(
    ("host", "status"),
    [("127.0.0.1", 200), ("localhost", 200), ("[::1]", 200), ("attacker.example", 421),
     ("127.0.0.1.attacker.example", 421), ("", 421)],
)  # fmt: skip
def test_on_loopback_it_answers_only_to_this_machines_names(exporter: str, host: str, status: int):
    """DNS rebinding: a request whose Host names another machine is refused (421), with or
    without a port; loopback names and addresses are served."""
    port = exporter.rsplit(":", 1)[1]
    for header in (host, f"{host}:{port}") if host else ("",):
        answer = httpx.get(f"{exporter}/metrics", headers={"Host": header}, timeout=10)
        assert answer.status_code == status, (header, answer.text)


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_idle_half_sent_and_surplus_connections_are_let_go(exporter: str, tmp_path: Path):
    """Connections beyond MAX_CONNECTIONS are answered 503 at once and closed; idle ones and
    ones with half a request are closed after the header deadline (not held for ever); a
    scrape is served meanwhile."""
    address = exporter.removeprefix("http://").split(":")
    held = []
    try:
        for n in range(MAX_CONNECTIONS):
            sock = socket.create_connection((address[0], int(address[1])), timeout=30)
            if n % 2:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: local")  # half a request
            held.append(sock)
        with socket.create_connection((address[0], int(address[1])), timeout=10) as surplus:
            assert _read_until_closed(surplus).startswith(b"HTTP/1.1 503 ")
        for sock in held:  # each closed by the server (a hang fails the test: timeout 30 s)
            sock.settimeout(HEADER_TIMEOUT + 20)
            answer = _read_until_closed(sock)
            assert answer in (b"",) or answer.startswith(b"HTTP/1.1 408 "), answer
        assert httpx.get(f"{exporter}/metrics", timeout=10).status_code == 200
    finally:
        for sock in held:
            sock.close()
