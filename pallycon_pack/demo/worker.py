"""The demo's worker: ``pallycon-pack worker`` in a process of its own, by this interpreter,
with the demo's settings and none of the caller's ``PALLYCON_*`` variables."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

#: The prefix of every setting: the caller's are left out of the worker's environment.
SETTINGS_PREFIX = "PALLYCON_"
#: How long a stopping worker may take to finish what it holds before it is killed.
STOP_WAIT = 20.0


def worker_env(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any ``PALLYCON_*`` variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIX)}
    env.update(settings)
    return env


@contextlib.contextmanager
def running_worker(
    settings: Mapping[str, str], log: Path, concurrency: int = 2
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker writing to ``log``; stopped as a container engine stops one (SIGTERM, then
    SIGKILL to its process group after :data:`STOP_WAIT`)."""
    args = [sys.executable, "-m", "pallycon_pack", "worker", "--concurrency", str(concurrency)]
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own worker, by this interpreter
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=worker_env(settings),
            start_new_session=True,
        )
    try:
        yield process
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_WAIT)
    # The pool's children too, should the main process have left any behind.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
