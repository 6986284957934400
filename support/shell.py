"""Running a document's shell examples as written (the README's, docs/HTTP.md's): its ``sh``
blocks, a stand-in for ``uv`` running this checkout's ``pallycon-pack``, and stopping what the
script started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

#: A fenced ``sh`` block of a Markdown document: its text.
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)

#: ``uv``, as a document's examples call it, for a test: this checkout's ``pallycon-pack``.
UV_STAND_IN = f"""#!/bin/sh
# `uv run pallycon-pack ARGS`, as this checkout's environment runs it.
[ "$1" = run ] && [ "$2" = pallycon-pack ] || {{ echo "uv stand-in: $*" >&2; exit 99; }}
shift 2
exec {sys.executable} -m pallycon_pack "$@"
"""


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
