"""The emulator in a thread of the test's own process (:func:`pallycon_pack.web.launch.
running_emulator`, as the demo runs it), for tests that neither measure it nor kill it.

:func:`start_thread_emulator` takes the flags and the environment of ``pallycon-pack
emulator`` and reads them with the command itself: what it would serve in the foreground is
served in a background thread instead, on a free loopback port, over the same HTTP routes (the
API and the ``/_emulator/`` control routes). It starts in milliseconds where a process takes
about a second. A figure that measures the emulator, or a test that stops and restarts it as a
process, keeps :func:`support.processes.start_emulator`.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

import httpx

from pallycon_emulator.config import EmulatorConfig
from pallycon_pack.cli.servers import run as servers_run
from pallycon_pack.web import launch
from support.cli import run_cli
from support.processes import ServerProcess, emulator_flags, stop_job


class ThreadEmulator:
    """An emulator served by a thread of this process: its URL, the emulator object itself,
    and the control routes as :class:`support.processes.ServerProcess` calls them."""

    def __init__(self, config: EmulatorConfig, seed: int | None) -> None:
        self._running = ExitStack()
        self.url, self.emulator = self._running.enter_context(launch.running_emulator(config))
        self.emulator.random.seed(seed)  # as ``Emulator(config, seed=seed)``

    def control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        """Call an emulator control endpoint (GET, or PUT with ``payload``)."""
        method = "PUT" if payload is not None else "GET"
        response = httpx.request(method, f"{self.url}/_emulator/{path}", json=payload, timeout=10)
        response.raise_for_status()
        return response.json()

    def set_faults(self, **faults: Any) -> None:
        self.control("faults", faults)

    def stop_job(self, job_id: int | str, site: str | None = None) -> Any:
        """Stop a job as PallyCon Console does (see :func:`support.processes.stop_job`)."""
        return stop_job(self.url, job_id, site)

    def stop(self) -> None:
        """Stop serving (once; later calls do nothing)."""
        self._running.close()


#: An emulator a test talks to over HTTP: a process, or a thread of the test's process.
RunningEmulator = ServerProcess | ThreadEmulator


def emulator_config(
    *args: str, env: dict[str, str], cwd: Path
) -> tuple[EmulatorConfig, int | None]:
    """What ``pallycon-pack emulator ARGS`` would serve, run with ``env`` from ``cwd``: its
    configuration and fault seed, read by the command itself (flags, environment, ``.env``,
    sites files), which stops short of serving. A flag or setting it refuses raises a
    RuntimeError with its message."""
    seen: list[tuple[EmulatorConfig, int | None]] = []

    def keep(config: EmulatorConfig, *_: Any, seed: int | None = None, **__: Any) -> None:
        seen.append((config, seed))

    with mock.patch.object(servers_run, "serve_emulator", keep):  # where the command calls it
        done = run_cli("emulator", *args, env=env, cwd=cwd)
    if done.returncode or not seen:
        raise RuntimeError(f"emulator {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return seen[0]


def start_thread_emulator(
    *args: str, env: dict[str, str], cwd: Path, slots: int | None = None
) -> ThreadEmulator:
    """``pallycon-pack emulator ARGS`` (with ``slots``: ``--slots SLOTS``; ``env``, ``cwd``)
    served by a thread of this process on a free loopback port; ready when returned."""
    config, seed = emulator_config(*args, *emulator_flags(slots), env=env, cwd=cwd)
    return ThreadEmulator(config, seed)
