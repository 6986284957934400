"""A callback sink: a real HTTP server that records every JSON body POSTed to it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class CallbackSink:
    """What a sink received: every JSON body, in order; ``url`` is where to POST them."""

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


@contextmanager
def running_sink() -> Iterator[CallbackSink]:
    """A sink on a free loopback port, in a background thread, for the block."""
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
    try:
        yield CallbackSink(f"http://{host!s}:{port}/callback", bodies)
    finally:
        server.shutdown()
        server.server_close()
