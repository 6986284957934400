"""Webhook receivers for the tests: each verifies every request with the specification's own
library (``standardwebhooks``) and answers as its script says (a status, headers, a delay),
and can go down and come back on its port; and one that takes connections and never answers.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import standardwebhooks

from pallycon_store.webhooks.signing import Secret


@dataclass(frozen=True)
class Reply:
    """What a receiver answers: a status, headers, after ``delay`` seconds."""

    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Hit:
    """One request a receiver got: its webhook-id, which attempt of it (1 first), when
    (monotonic), what was answered, whether it verified, its body (parsed), and whether the
    answer was delayed."""

    webhook_id: str
    attempt: int
    at: float
    status: int
    verified: bool
    body: dict[str, Any]
    late: bool = False  # answered after a delay (the sender may have given up)


#: A script: the reply to attempt number ``n`` (1 first) of ``webhook_id``.
Script = Callable[[int, str], Reply]


class Receiver:
    """A receiver on 127.0.0.1 verifying with ``secret``, answering by ``script``."""

    def __init__(self, secret: Secret, script: Script = lambda n, w: Reply()) -> None:
        self.secret = secret
        self.script = script
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        """Listen (on the same port as before, after :meth:`stop`)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    standardwebhooks.Webhook(receiver.secret.text()).verify(body, headers)
                    verified = True
                except standardwebhooks.WebhookVerificationError:
                    verified = False
                webhook_id = headers.get("webhook-id", "")
                with receiver.lock:
                    attempt = 1 + sum(h.webhook_id == webhook_id for h in receiver.hits)
                    reply = receiver.script(attempt, webhook_id)
                    receiver.hits.append(
                        Hit(webhook_id, attempt, time.monotonic(), reply.status, verified,
                            json.loads(body), late=reply.delay > 0)
                    )  # fmt: skip
                if reply.delay:
                    time.sleep(reply.delay)
                with contextlib.suppress(OSError):  # the sender may have given up
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "0")
                    self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until :meth:`start`."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def delivered(self) -> Counter[str]:
        """Each webhook-id answered with a 2xx in time (and verified), with how many times."""
        with self.lock:
            return Counter(
                h.webhook_id
                for h in self.hits
                if 200 <= h.status < 300 and h.verified and not h.late
            )

    def of(self, webhook_id: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.webhook_id == webhook_id]


class Silent:
    """An address that takes connections (the kernel's backlog) and never answers."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(512)
        self.port = self.socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        self.socket.close()
