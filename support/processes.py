"""pallycon-pack's own processes, started and stopped from Python: for tests, benchmarks and
the demo.

``cli`` runs one ``pallycon-pack`` command as a user would. ``ServerProcess`` runs
``pallycon-pack <server> --port 0 ...`` (the emulator or the callback receiver) and waits for its
"listening on URL" line. ``WorkerProcess`` runs a Celery worker (``pallycon-pack worker`` or
``celery -A pallycon_worker worker``) and can kill it the ways machines die, or stop it as a
container engine does: SIGTERM to its main process, which can run as PID 1 of its own PID namespace
(:func:`pid1_unavailable` says whether this machine allows it).

Each runs this checkout's ``pallycon-pack`` (:data:`PALLYCON_PACK`) unless given another
``program``: e.g. the script of an environment built as the Dockerfile builds the image's.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

_LISTENING = re.compile(r"listening on (http://[\w.:-]+)")

#: Runs a command as PID 1 of a new PID namespace, as Docker and Kubernetes run a container's
#: command: the kernel then drops every signal PID 1 has no handler for (SIGKILL aside), and
#: kills every other process of the namespace when PID 1 exits. ``unshare`` itself stays
#: outside (it ignores SIGTERM and exits with its child's code); ``--kill-child`` takes the
#: namespace down should it die.
PID1 = ("unshare", "--pid", "--fork", "--kill-child")

#: How the helpers run ``pallycon-pack`` unless given another ``program``: this checkout's, by
#: the running interpreter. Another environment's is its own script, ``<venv>/bin/pallycon-pack``.
PALLYCON_PACK: tuple[str, ...] = (sys.executable, "-m", "pallycon_pack")


def cli(
    *args: str,
    env: dict[str, str],
    cwd: Path,
    stdin: bytes | None = None,
    timeout: float = 60,
    program: Sequence[str] = PALLYCON_PACK,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``pallycon-pack ARGS`` (``program``) as a user would, in its own process."""
    return subprocess.run(  # noqa: S603 - our own CLI
        [*program, *args],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[str]
    drain: threading.Thread | None = None

    @classmethod
    def start(
        cls, *args: str, env: dict[str, str], cwd: Path, program: Sequence[str] = PALLYCON_PACK
    ) -> ServerProcess:
        """``pallycon-pack ARGS`` (``program``; a server that prints 'listening on URL'); waits
        for that line."""
        process = subprocess.Popen(  # noqa: S603 - our own CLI
            [*program, *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
        )  # fmt: skip
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            match = _LISTENING.search(line)
            if match:
                drain = threading.Thread(target=_drain, args=(process,), daemon=True)
                drain.start()
                return cls(match.group(1), process, drain)
        process.wait(10)
        process.stdout.close()
        raise RuntimeError(f"{args[0]} did not start:\n" + "".join(seen))

    def control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        """Call an emulator control endpoint (GET, or PUT with ``payload``)."""
        method = "PUT" if payload is not None else "GET"
        response = httpx.request(method, f"{self.url}/_emulator/{path}", json=payload, timeout=10)
        response.raise_for_status()
        return response.json()

    def set_faults(self, **faults: Any) -> None:
        self.control("faults", faults)

    def stop_job(self, job_id: int | str, site: str | None = None) -> Any:
        """Stop an emulator job as PallyCon Console does (see :func:`stop_job`)."""
        return stop_job(self.url, job_id, site)

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


def stop_job(url: str, job_id: int | str, site: str | None = None) -> Any:
    """Stop job ``job_id`` of ``site`` (else the first site served) of the emulator at ``url``
    (``POST /_emulator/jobs/ID/stop``): its answer, ``{"site_id", "job_id", "status": "WM100"}``
    (``WM200`` with no stop delay); an httpx.HTTPStatusError for a 404 or a 409."""
    params = {"site": site} if site is not None else None
    response = httpx.post(f"{url}/_emulator/jobs/{job_id}/stop", params=params, timeout=10)
    response.raise_for_status()
    return response.json()


def emulator_flags(slots: int | None) -> tuple[str, ...]:
    """The ``pallycon-pack emulator`` flags for the helpers' keyword options."""
    return () if slots is None else ("--slots", str(slots))


#: An emulator started by :func:`start_emulator`.
EmulatorProcess = ServerProcess


def start_emulator(
    *args: str,
    env: dict[str, str],
    cwd: Path,
    program: Sequence[str] = PALLYCON_PACK,
    slots: int | None = None,
) -> EmulatorProcess:
    """``pallycon-pack emulator --port 0 ARGS`` (with ``slots``: ``--slots SLOTS``) in a
    subprocess; waits until it listens."""
    flags = (*args, *emulator_flags(slots))
    return ServerProcess.start("emulator", "--port", "0", *flags, env=env, cwd=cwd, program=program)


def start_server(
    *args: str, env: dict[str, str], cwd: Path, program: Sequence[str] = PALLYCON_PACK
) -> ServerProcess:
    """``pallycon-pack ARGS`` (``program``; a server that prints 'listening on URL')."""
    return ServerProcess.start(*args, env=env, cwd=cwd, program=program)


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for _ in process.stdout:
        pass


@dataclass
class WorkerProcess:
    """A real worker in its own process, its output in ``log``."""

    args: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 1
    orphans: list[int] = field(default_factory=list)
    #: Run as PID 1 of its own PID namespace (:data:`PID1`), as in a container.
    as_pid1: bool = False

    @classmethod
    def command(
        cls,
        *,
        concurrency: int,
        celery_cli: bool = False,
        name: str = "w",
        program: Sequence[str] = PALLYCON_PACK,
    ) -> list[str]:
        """``pallycon-pack worker`` (``program``), or with ``celery_cli`` Celery's own command
        by the running interpreter."""
        if celery_cli:
            hostname = f"--hostname={name}-{os.getpid()}@%h"
            concurrent = f"--concurrency={concurrency}"
            return [sys.executable, "-m", "celery", "-A", "pallycon_worker", "worker", concurrent,
                    "--loglevel=INFO", hostname]  # fmt: skip
        return [*program, "worker", "--concurrency", str(concurrency)]

    def start(self) -> WorkerProcess:
        args = [*PID1, *self.args] if self.as_pid1 else self.args
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own worker
                args, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        return self

    def wait_ready(self, timeout: float = 30.0) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            if text.count(" ready.") >= self.starts:
                return self
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError("worker exited:\n" + text[-3000:])
            time.sleep(0.1)
        raise RuntimeError("worker not ready:\n" + self.log.read_text(errors="replace")[-3000:])

    def main_pid(self) -> int:
        """The worker's main process (Celery's MainProcess): with :attr:`as_pid1`, the child
        of ``unshare``, which is PID 1 in its namespace."""
        assert self.process is not None
        if not self.as_pid1:
            return self.process.pid
        deadline = time.monotonic() + 10
        while not (found := psutil.Process(self.process.pid).children()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker's main process not found under unshare")
            time.sleep(0.05)
        return found[0].pid

    def children(self) -> list[int]:
        """The main process's children (the pool), by their pids."""
        main = psutil.Process(self.main_pid())
        return [child.pid for child in main.children(recursive=True)]

    def terminate(self) -> int:
        """SIGTERM to the main process only, as ``docker stop`` and Kubernetes do; its pid."""
        pid = self.main_pid()
        os.kill(pid, signal.SIGTERM)
        return pid

    def kill_child(self) -> int:
        """SIGKILL one pool child (the main process replaces it); its pid."""
        pid = self.children()[0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill_main(self) -> None:
        """SIGKILL the main process only; its pool children are left to themselves (with
        :attr:`as_pid1`, the kernel kills them with it)."""
        assert self.process is not None
        main = self.main_pid()
        self.orphans.extend(self.children())
        os.kill(main, signal.SIGKILL)
        self.process.wait(10)

    def kill_all(self) -> None:
        """SIGKILL the main process, then every pool child: a machine dying."""
        assert self.process is not None
        main = self.main_pid()
        children = self.children()
        for pid in [main, *children]:  # the main first: nobody left to requeue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)

    def restart(self) -> WorkerProcess:
        self.starts += 1
        return self.start().wait_ready()

    def stop(self) -> None:
        for pid in self.orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process is None or self.process.poll() is not None:
            return
        children = self.children()
        if self.as_pid1:
            self.terminate()  # unshare ignores SIGTERM: the worker itself gets it
        else:
            self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill_all()
        for pid in children:  # pool children orphaned by a hard stop
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler of its own for ``signum`` (Linux: the ``SigCgt``
    mask of /proc/PID/status). PID 1 of a namespace receives no other signal than SIGKILL and
    SIGSTOP without one. False once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def pid1_unavailable() -> str | None:
    """Why a worker cannot run as PID 1 of its own PID namespace here (no ``unshare``, or no
    right to make a PID namespace: root is needed); None if it can."""
    if shutil.which(PID1[0]) is None:
        return f"{PID1[0]} (util-linux) is not installed"
    try:
        tried = subprocess.run(  # noqa: S603 - a fixed command
            [*PID1, "true"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{' '.join(PID1)} failed: {exc}"
    if tried.returncode:
        return f"{' '.join(PID1)} failed: {tried.stderr.strip() or tried.returncode}"
    return None
