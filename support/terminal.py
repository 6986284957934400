"""A command in a real terminal (a pseudo-terminal) and interrupted as Ctrl-C interrupts it: for
the tests of what a user sees when they press Ctrl-C.

The command's standard input, output and error are the terminal (so it draws its progress bars,
as for a user). It runs in a process group of its own, and :meth:`Terminal.interrupt` sends
SIGINT to the whole group, as a terminal does to its foreground group on Ctrl-C (a worker's
pool children get it too). Its output is read as it comes (a full terminal would block it) and
kept, escape sequences and carriage returns removed (:meth:`Terminal.text`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

#: Terminal escape sequences (colours, cursor moves) and the carriage returns of progress bars.
_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


class Terminal:
    """``args`` running in a terminal of their own; see the module's docstring."""

    def __init__(self, args: Sequence[str], *, env: dict[str, str], cwd: Path) -> None:
        self.master, slave = os.openpty()
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our own CLI
                list(args),
                stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(slave)
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every holder of the terminal's other end has gone
                return
            if not data:
                return
            with self._lock:
                self._output += data

    def text(self) -> str:
        """What the terminal showed so far, without escape sequences; lines end with "\\n"."""
        with self._lock:
            raw = bytes(self._output)
        return _ESCAPES.sub(b"", raw.replace(b"\r\n", b"\n")).decode(errors="replace")

    def lines(self) -> list[str]:
        """:meth:`text`'s non-blank lines."""
        return [line for line in self.text().splitlines() if line.strip()]

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        """Until the terminal shows ``text``; fails with what it shows if it does not in time
        or the command ends first."""
        deadline = time.monotonic() + timeout
        while text not in self.text():
            if self.process.poll() is not None:
                time.sleep(0.2)  # the last output
                if text in self.text():
                    return
                raise AssertionError(f"ended ({self.process.returncode}) before {text!r}:\n"
                                     + self.text()[-3000:])  # fmt: skip
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout:g} s:\n" + self.text()[-3000:])
            time.sleep(0.02)

    def type(self, keys: bytes) -> None:
        """Type ``keys`` at the terminal (``b"\\x04"``: Ctrl-D, the end of input)."""
        os.write(self.master, keys)

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the command's process group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def wait(self, timeout: float = 60.0) -> int:
        """The command's exit code, once it has ended and its output is read."""
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code

    def close(self) -> None:
        """Kill the command's group if it still runs; close the terminal."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # pool children left behind
        self._reader.join(10)
        with contextlib.suppress(OSError):
            os.close(self.master)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
