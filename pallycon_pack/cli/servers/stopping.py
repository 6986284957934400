"""SIGTERM while a server starts: stop at once, exit 0.

Light on purpose (the standard library only): the command group installs the handler before it
loads the command's module, whose imports take a second or more on a busy machine.
"""

from __future__ import annotations

import os
import signal
from types import FrameType


class StopWhileStarting:
    """The SIGTERM handler of a starting server, until its own takes over: stop at once, exit
    0, with one line on stderr saying so.

    Without a handler, a container's PID 1 never sees SIGTERM (the kernel drops it): a server
    stopped in its first seconds would go on starting and be SIGKILLed when the grace period
    ends (a worker mid-batch, having taken tasks meanwhile). Nothing has been served or taken
    from the queues yet, so there is nothing to finish.

    uvicorn puts back the handler it found once it has shut down, and raises the SIGTERM it
    caught again: after :meth:`serving`, this handler then exits 0 without a line.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = False

    def serving(self) -> None:
        """The server's own handler is installed: a SIGTERM reaching this one now comes after
        that server's shutdown."""
        self.started = True

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.started:  # after the server's own shutdown: leave as a program does
            raise SystemExit(0)
        # While starting, exit at once: an exception raised here lands wherever the main
        # thread is, and a library's bare ``except:`` (an import's, a lifespan's) would swallow
        # it; the server would then go on starting and serve. Nothing is open that needs
        # closing. os.write and os._exit: safe in a signal handler.
        os.write(2, f"{self.name}: stopped by SIGTERM while starting\n".encode())
        os._exit(0)


def stop_while_starting(name: str) -> StopWhileStarting:
    """Server ``name``'s SIGTERM handler while it starts: the one installed already (the command
    group installs it before it loads the command), else a new one, installed now."""
    current = signal.getsignal(signal.SIGTERM)
    if isinstance(current, StopWhileStarting) and current.name == name:
        return current
    handler = StopWhileStarting(name)
    signal.signal(signal.SIGTERM, handler)
    return handler
