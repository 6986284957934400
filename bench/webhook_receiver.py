"""The benchmark's fast webhook receiver: HTTP/1.1 with keep-alive (a connection per sending
thread, as a production receiver behind a proxy would keep), verifying every delivery with
``standardwebhooks`` and answering 204 at once. It keeps, per delivery, what the figures need:
its event's type, request id and ``ts``, and when it arrived (wall clock)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import standardwebhooks


@dataclass(frozen=True)
class Arrival:
    """One delivery received: its event's type, request id and time, when it came, and
    whether it verified."""

    type: str
    request_id: str
    event_at: float
    at: float
    verified: bool


class FastReceiver:
    """A receiver on 127.0.0.1 verifying with ``secret`` (``whsec_...``)."""

    def __init__(self, secret: str) -> None:
        self.webhook = standardwebhooks.Webhook(secret)
        self.arrivals: list[Arrival] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                at = time.time()
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    receiver.webhook.verify(body, headers)
                    verified = True
                except standardwebhooks.WebhookVerificationError:
                    verified = False
                data: dict[str, Any] = json.loads(body)["data"]
                event_at = datetime.fromisoformat(data["ts"]).timestamp()
                arrival = Arrival(data["type"], data["request_id"], event_at, at, verified)
                with receiver.lock:
                    receiver.arrivals.append(arrival)
                self.send_response(204 if verified else 400)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def since(self, n: int) -> list[Arrival]:
        """The arrivals after the first ``n``."""
        with self.lock:
            return self.arrivals[n:]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
