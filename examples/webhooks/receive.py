"""A webhook receiver for pallycon-pack, verifying each delivery with the Standard Webhooks
reference library (``pip install standardwebhooks``). Standard library server; a sketch of what
your own endpoint does, in any framework:

    WEBHOOK_SECRET=whsec_... PORT=8000 python receive.py

1. verify the raw body and the three ``webhook-*`` headers before parsing anything (the library
   compares in constant time and refuses a timestamp more than 5 minutes off);
2. drop a ``webhook-id`` already handled: a delivery can come more than once (at least once);
3. answer 2xx quickly (do slow work after answering): anything else is retried.

Each verified event is printed as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

webhook = Webhook(os.environ["WEBHOOK_SECRET"])  # whsec_...; from your secret store
seen: set[str] = set()  # in production: a table with a unique key on webhook-id


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            event = webhook.verify(body, headers)
        except WebhookVerificationError as exc:
            print(f"refused: {exc}", file=sys.stderr, flush=True)
            self.answer(400)
            return
        webhook_id = headers["webhook-id"]
        if webhook_id not in seen:  # a repeat is acknowledged, not handled twice
            seen.add(webhook_id)
            data = event.get("data", {})
            line = {
                "webhook_id": webhook_id,
                "type": event["type"],
                "request_id": data.get("request_id"),
            }
            print(json.dumps(line), flush=True)
        self.answer(204)

    def answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}/", file=sys.stderr, flush=True)
    server.serve_forever()
