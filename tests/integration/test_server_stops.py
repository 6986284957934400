"""SIGTERM at any moment of a server's start-up: the callback receiver and the metrics exporter
stop at once with exit code 0 and at most one line, never a traceback, also before uvicorn (or
the exporter) has a handler of its own, and also as PID 1 of a container, which the kernel
sends no signal it has no handler for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from support.env import clean_env
from support.processes import PALLYCON_PACK, PID1, catches, pid1_unavailable
from support.redis_server import RedisServer

pytestmark = pytest.mark.integration

COMMANDS = {
    "callbacks": ("callbacks", "--port", "0"),
    "metrics": ("metrics", "--port", "0"),
}
READY = {"callbacks": "listening on", "metrics": "listening on"}
STARTING = "stopped by SIGTERM while starting"


@pytest.fixture
def env(redis_server: RedisServer) -> dict[str, str]:
    return clean_env(
        PALLYCON_REDIS_URL=redis_server.url,
        PALLYCON_CALLBACK_TOKEN="test-callback-token-0123456789",
    )


class Started:
    """A server's process, its output in a file (nothing to drain)."""

    def __init__(self, name: str, env: dict[str, str], out: Path, *, as_pid1: bool) -> None:
        self.name, self.out = name, out
        prefix = PID1 if as_pid1 else ()
        with out.open("wb") as sink:
            self.process = subprocess.Popen(
                [*prefix, *PALLYCON_PACK, *COMMANDS[name]],
                stdout=sink, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        self.pid = self._server_pid() if as_pid1 else self.process.pid

    def _server_pid(self) -> int:
        """The server under ``unshare``: PID 1 of its namespace."""
        deadline = time.monotonic() + 20
        while not (found := psutil.Process(self.process.pid).children()):
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, "no server process under unshare"
            time.sleep(0.01)
        return found[0].pid

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, done: object, what: str) -> None:
        deadline = time.monotonic() + 60
        while not done():  # type: ignore[operator]
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, f"{self.name}: never {what}:\n{self.text()}"
            time.sleep(0.005)

    def stop(self) -> tuple[int, str]:
        """SIGTERM to the server, as a container engine sends it; its exit code and output."""
        os.kill(self.pid, signal.SIGTERM)
        try:
            code = self.process.wait(20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
        return code, self.text()


@pytest.fixture
def started(env: dict[str, str], tmp_path: Path) -> Iterator[list[Started]]:
    servers: list[Started] = []
    yield servers
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(10)


def _not_json(text: str) -> list[str]:
    """The output's lines that are not JSON log lines (nor the server's ready line)."""
    lines = []
    for line in text.splitlines():
        try:
            json.loads(line)
        except ValueError:
            if "listening on" not in line:
                lines.append(line)
    return lines


@pytest.mark.parametrize("name", sorted(COMMANDS))
@pytest.mark.parametrize("when", ["at once", "after 0.2 s", "handler installed", "ready"])
def test_sigterm_while_a_server_starts_stops_it_cleanly(env, tmp_path, started, name, when):
    """At once (maybe before Python could install anything: then the signal's default, death
    without a word), 0.2 s in, once the start-up handler is there, or once serving: the server
    exits promptly, 0, with at most the one line saying it stopped while starting."""
    server = Started(name, env, tmp_path / f"{name}.out", as_pid1=False)
    started.append(server)
    if when == "after 0.2 s":
        time.sleep(0.2)
    elif when == "handler installed":
        server.wait_for(lambda: catches(server.pid, signal.SIGTERM), "caught SIGTERM")
    elif when == "ready":
        server.wait_for(lambda: READY[name] in server.text(), "ready")
    code, text = server.stop()
    assert "Traceback" not in text, text
    extra = _not_json(text)
    if when == "at once":
        assert code in (0, -signal.SIGTERM), text
    else:
        assert code == 0, text
    assert extra in ([], [f"{name}: {STARTING}"]), text
    if when == "handler installed":
        assert extra == [f"{name}: {STARTING}"], text
    if when == "ready":
        assert extra == [], text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_starting_server_as_pid_1_stops_on_sigterm(env, tmp_path, started, name):
    """As PID 1 (a container), a SIGTERM the server has no handler for is dropped by the kernel:
    it would go on starting and serve. It has one from its first moments (before its imports),
    and stops with exit code 0 and one line."""
    unavailable = pid1_unavailable()
    if unavailable:
        pytest.skip(f"cannot run a server as PID 1 of a PID namespace: {unavailable}")
    server = Started(name, env, tmp_path / f"{name}.out", as_pid1=True)
    started.append(server)
    server.wait_for(lambda: catches(server.pid, signal.SIGTERM), "caught SIGTERM")
    assert READY[name] not in server.text()  # still starting: no handler of its own yet
    code, text = server.stop()
    assert code == 0, text
    assert _not_json(text) == [f"{name}: {STARTING}"], text


def test_a_sigterm_landing_in_a_bare_except_still_stops_a_starting_server(tmp_path):
    """The start-up handler runs wherever the main thread is: here inside a library's bare
    ``except:`` (as in an import or uvicorn's lifespan), which would swallow an exception
    raised from it and let the server go on to serve. It stops anyway: exit 0, one line."""
    script = tmp_path / "starting.py"
    script.write_text(
        "import os, signal, time\n"
        "from pallycon_pack.cli.servers.stopping import stop_while_starting\n"
        "stop_while_starting('callbacks')\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(5)\n"
        "except:  # noqa: E722\n"
        "    pass\n"
        "print('went on starting')\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "went on starting" not in done.stdout
    assert done.stderr == f"callbacks: {STARTING}\n"
