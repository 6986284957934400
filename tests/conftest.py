"""Shared fixtures: site credentials, the emulator as a real process, a callback sink."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pallycon.client import ClientOptions, PallyConClient
from pallycon.signing import SiteCredentials
from pallycon_pack.processes import ServerProcess, WorkerProcess

# PallyCon's own tutorial credentials, from their published request samples.
SAMPLE_SITE = SiteCredentials.of(
    "TUTO", "LT2FVJDp2Xr018zf4Di6lzvNOv3DKP20", "lU5D8s3PWoLls3PWFWkClULlFWk5D8oC"
)
REGION = "RG011"


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


EmulatorProcess = ServerProcess


def start_emulator(*args: str, env: dict[str, str], cwd: Path) -> EmulatorProcess:
    """``pallycon-pack emulator --port 0 ARGS`` in a subprocess; waits until it listens."""
    return ServerProcess.start("emulator", "--port", "0", *args, env=env, cwd=cwd)


def start_server(*args: str, env: dict[str, str], cwd: Path) -> EmulatorProcess:
    """``pallycon-pack ARGS`` (a server that prints 'listening on URL')."""
    return ServerProcess.start(*args, env=env, cwd=cwd)


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


# --- The queue: a Redis-compatible server, settings, worker processes ------------------------

from config import Settings  # noqa: E402
from pallycon_pack.redis_server import RedisServer  # noqa: E402


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real valkey/redis server process (AOF on), shared by the session."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


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


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes for given settings; all are stopped at the end."""
    started: list[WorkerProcess] = []

    def start(
        settings: Settings, *, celery_cli: bool = False, concurrency: int = 2
    ) -> WorkerProcess:
        name = f"w{len(started)}"
        args = WorkerProcess.command(concurrency=concurrency, celery_cli=celery_cli, name=name)
        env = clean_env(**settings.environment())
        log = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(args, env, log).start().wait_ready()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


# --- Time limits ------------------------------------------------------------------------------

#: A heavy figure waits up to 240 s for its requests after minutes of faults; its time limit
#: must be longer, so that a slow run fails with the wait's own message (what is still open),
#: not pytest-timeout's stack dump. Other tests keep the 120 s of pyproject.toml, and their
#: waits stay under it.
HEAVY_TIMEOUT = 480


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("heavy") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(HEAVY_TIMEOUT))


# --- Measured figures (reliability, performance): printed at the end of every run -------------

FIGURES: list[dict[str, Any]] = []
REPORT = Path(__file__).resolve().parents[1] / "build" / "reliability-figures.json"


@pytest.fixture
def figure() -> Callable[..., None]:
    """Record a measured figure (printed at the end of the run, kept in build/)."""

    def record(name: str, **values: Any) -> None:
        FIGURES.append({"figure": name, **values})

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(FIGURES, indent=2))
    terminalreporter.section("reliability figures")
    for entry in FIGURES:
        values = ", ".join(f"{k}={v}" for k, v in entry.items() if k != "figure")
        terminalreporter.write_line(f"{entry['figure']}: {values}")
