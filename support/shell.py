"""Running a document's shell examples as written (the README's, docs/HTTP.md's): its ``sh``
blocks, a stand-in for ``uv`` running this checkout's ``pallycon-pack``, and stopping what the
script started."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

#: A fenced ``sh`` block of a Markdown document: its text.
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)

#: ``uv``, as a document's examples call it, for a test: ``uv run pallycon-pack ARGS`` and
#: ``uv run python ARGS`` as this checkout's environment runs them.
UV_STAND_IN = f"""#!/bin/sh
[ "$1" = run ] || {{ echo "uv stand-in: $*" >&2; exit 99; }}
case "$2" in
  pallycon-pack) shift 2; exec {sys.executable} -m pallycon_pack "$@" ;;
  python) shift 2; exec {sys.executable} "$@" ;;
  *) echo "uv stand-in: $*" >&2; exit 99 ;;
esac
"""


def uv_stand_in(root: Path) -> Path:
    """A directory under ``root`` holding :data:`UV_STAND_IN` as ``uv``: put it first on PATH."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    uv = bin_dir / "uv"
    uv.write_text(UV_STAND_IN)
    uv.chmod(uv.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def run_script(
    source: str, cwd: Path, env: dict[str, str], log: Path, timeout: float
) -> tuple[int, str]:
    """Run the bash script ``source`` in ``cwd`` with exactly ``env``, its output to the file
    ``log`` (the servers it starts in the background keep it open), in a process group of its
    own that is stopped when it ends (:func:`stop_group`): its exit code and its output."""
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - a document's own examples
            ["bash", "-c", source],  # noqa: S607 - bash from PATH, as a reader runs it
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # what it starts in the background dies with its group
        )
        try:
            returncode = process.wait(timeout=timeout)
        finally:
            stop_group(process)
    return returncode, log.read_text(errors="replace")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the script's process group (the servers it started), then KILL
    what is left after 10 s."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            continue
        break
    process.wait(timeout=5)
