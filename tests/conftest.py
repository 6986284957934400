"""Shared fixtures: site credentials, the emulator as a real process, a callback sink."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from pallycon.client import ClientOptions, PallyConClient
from pallycon.signing import SiteCredentials

# PallyCon's own tutorial credentials, from their published request samples.
SAMPLE_SITE = SiteCredentials.of(
    "TUTO", "LT2FVJDp2Xr018zf4Di6lzvNOv3DKP20", "lU5D8s3PWoLls3PWFWkClULlFWk5D8oC"
)
REGION = "RG011"
_LISTENING = re.compile(r"listening on (http://\S+)")


@pytest.fixture
def site() -> SiteCredentials:
    return SAMPLE_SITE


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any PALLYCON_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALLYCON_")}
    env.update(extra)
    return env


def site_env(site: SiteCredentials = SAMPLE_SITE, **extra: str) -> dict[str, str]:
    settings = {
        "PALLYCON_SITE_ID": site.site_id,
        "PALLYCON_ACCESS_KEY": site.access_key.get_secret_value(),
        "PALLYCON_SITE_KEY": site.site_key.get_secret_value(),
        "PALLYCON_REGION": REGION,
    }
    return clean_env(**{**settings, **extra})


def cli(
    *args: str, env: dict[str, str], cwd: Path, stdin: bytes | None = None, timeout: float = 60
):
    """Run ``pallycon-pack`` as a user would, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "pallycon_pack", *args],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


@dataclass
class EmulatorProcess:
    url: str
    process: subprocess.Popen[str]
    drain: threading.Thread | None = None

    def control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        """Call a /_emulator endpoint (GET, or PUT with ``payload``)."""
        method = "PUT" if payload is not None else "GET"
        response = httpx.request(method, f"{self.url}/_emulator/{path}", json=payload, timeout=5)
        response.raise_for_status()
        return response.json()

    def set_faults(self, **faults: Any) -> None:
        self.control("faults", faults)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.drain is not None:
            self.drain.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_emulator(*args: str, env: dict[str, str], cwd: Path) -> EmulatorProcess:
    """``pallycon-pack emulator --port 0 ARGS`` in a subprocess; waits until it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pallycon_pack", "emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        match = _LISTENING.search(line)
        if match:
            drain = threading.Thread(target=_drain, args=(process,), daemon=True)
            drain.start()
            return EmulatorProcess(match.group(1), process, drain)
    process.wait(10)
    process.stdout.close()
    raise RuntimeError("emulator did not start:\n" + "".join(seen))


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for _ in process.stdout:
        pass


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[Callable[..., EmulatorProcess]]:
    """Start emulators with given flags; all are stopped at the end of the test."""
    started: list[EmulatorProcess] = []

    def start(*args: str, site: SiteCredentials = SAMPLE_SITE, **env: str) -> EmulatorProcess:
        emulator = start_emulator(*args, env=site_env(site, **env), cwd=tmp_path)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@dataclass
class CallbackSink:
    """A real HTTP server that records every JSON body POSTed to it."""

    url: str
    bodies: list[Any] = field(default_factory=list)

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in list(self.bodies):
                if predicate(body):
                    return body
            time.sleep(0.05)
        raise AssertionError(f"no matching callback within {timeout} s; got {self.bodies}")


@pytest.fixture(scope="session")
def callback_sink() -> Iterator[CallbackSink]:
    bodies: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield CallbackSink(f"http://{host!s}:{port}/callback", bodies)
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def shared_emulator(
    tmp_path_factory: pytest.TempPathFactory, callback_sink: CallbackSink
) -> Iterator[EmulatorProcess]:
    """One emulator for the integration tests that need no special flags (2 s jobs)."""
    root = tmp_path_factory.mktemp("emulator")
    emulator = start_emulator(
        "--job-seconds", "2", "--callback-url", callback_sink.url,
        env=site_env(), cwd=root,
    )  # fmt: skip
    yield emulator
    emulator.stop()


@pytest.fixture
def emulator(shared_emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    """The shared emulator, its faults reset around each test."""
    shared_emulator.set_faults()
    yield shared_emulator
    shared_emulator.set_faults()


@pytest.fixture
def client(emulator: EmulatorProcess) -> Iterator[PallyConClient]:
    with PallyConClient(SAMPLE_SITE, ClientOptions(base_url=emulator.url)) as api:
        yield api
