"""Shared fixtures: site credentials, the emulator (a real process, or a thread of the test's),
a callback sink, a Redis server and worker processes. Their helpers live in the ``support`` package."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from pallycon.client import ClientOptions, PallyConClient
from pallycon.signing import SiteCredentials
from pallycon_config import Settings
from support.emulator import RunningEmulator, start_thread_emulator
from support.env import clean_env, site_env
from support.processes import EmulatorProcess, WorkerProcess, start_emulator
from support.redis_server import RedisServer
from support.samples import SAMPLE_SITE
from support.sink import CallbackSink, running_sink


@pytest.fixture
def site() -> SiteCredentials:
    return SAMPLE_SITE


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[Callable[..., RunningEmulator]]:
    """Start emulators with given flags (and settings in ``env``): in a thread of the test's
    process, or with ``process=True`` as a real process (for a figure that measures it while
    the test's process is busy); all are stopped at the end of the test."""
    started: list[RunningEmulator] = []

    def start(
        *args: str, site: SiteCredentials = SAMPLE_SITE, process: bool = False, **env: str
    ) -> RunningEmulator:
        launch = start_emulator if process else start_thread_emulator
        emulator = launch(*args, env=site_env(site, **env), cwd=tmp_path)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture(scope="session")
def callback_sink() -> Iterator[CallbackSink]:
    with running_sink() as sink:
        yield sink


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


@pytest.fixture
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read as on a clean machine: no PALLYCON_* from the developer's shell, and no
    .env from the checkout (the current directory is the test's own)."""
    for name in list(os.environ):
        if name.startswith("PALLYCON_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# --- The queue: a Redis-compatible server, worker processes -----------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real valkey/redis server process (AOF on), shared by the session."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes for given settings; all are stopped at the end."""
    started: list[WorkerProcess] = []

    def start(
        settings: Settings, *, celery_cli: bool = False, concurrency: int = 2
    ) -> WorkerProcess:
        name = f"w{len(started)}"
        args = WorkerProcess.command(concurrency=concurrency, celery_cli=celery_cli, name=name)
        env = clean_env(settings.environment())
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


@pytest.hookimpl(tryfirst=True)  # before xdist's, which turns the group into a node id suffix
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("heavy"):
            # Run in parallel with the rest (pytest-xdist, -n 2), but a figure at a time per
            # xdist worker (--dist loadgroup): most in one group; the flow and recovery figures,
            # which mostly wait on leases and faults, in a second one, beside the first (the
            # other worker takes the rest once it is done).
            path = item.nodeid.split("::")[0]
            second = path.endswith(("reliability/test_recovery.py", "reliability/test_flow.py"))
            item.add_marker(pytest.mark.xdist_group("heavy-b" if second else "heavy"))
            if not item.get_closest_marker("timeout"):
                item.add_marker(pytest.mark.timeout(HEAVY_TIMEOUT))


# --- Measured figures (reliability, performance): printed at the end of every run -------------

FIGURES: list[dict[str, Any]] = []
REPORT = Path(__file__).resolve().parents[1] / "build" / "reliability-figures.json"


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record a measured figure (printed at the end of the run, kept in build/). It travels
    with the test's report, so that it reaches the summary from pytest-xdist's workers too."""

    def record(name: str, **values: Any) -> None:
        entry = json.loads(json.dumps({"figure": name, **values}))  # plain data, to travel
        request.node.user_properties.append(("figure", entry))

    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the figures of each test as its report comes in (here or from a worker)."""
    if report.when != "call":
        return
    for key, value in report.user_properties:
        if key == "figure":
            FIGURES.append(cast(dict[str, Any], value))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES or hasattr(terminalreporter.config, "workerinput"):  # an xdist worker
        return
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(FIGURES, indent=2))
    terminalreporter.section("reliability figures")
    for entry in FIGURES:
        values = ", ".join(f"{k}={v}" for k, v in entry.items() if k != "figure")
        terminalreporter.write_line(f"{entry['figure']}: {values}")
