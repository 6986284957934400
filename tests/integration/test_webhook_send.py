"""One webhook attempt against raw sockets answering badly: a huge body is not read whole, an
answer trickled byte by byte ends at the attempt's deadline, a client with no connection free
does not attempt."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from pallycon_store.webhooks.endpoints import Endpoint
from pallycon_store.webhooks.rules import AttemptKind
from pallycon_store.webhooks.signing import Secret
from pallycon_worker.webhook_send import (
    MAX_BODY,
    attempt_deadline,
    new_client,
    send,
)

pytestmark = pytest.mark.integration

NOW = 1_800_000_000.0
#: The most a raw server sends before it stops on its own (the test fails, never hangs).
ENOUGH = 64 * 1024 * 1024


class RawServer:
    """Accepts connections on 127.0.0.1, reads a request's head, then runs ``behave`` with the
    connection; ``sent`` counts the bytes it managed to send, ``done`` is set when it stops."""

    def __init__(self, behave: Callable[[socket.socket, RawServer], None]) -> None:
        self.behave = behave
        self.sent = 0
        self.done = threading.Event()
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(conn,), daemon=True).start()

    def one(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                got = conn.recv(65536)
                if not got:
                    return
                data += got
            try:
                self.behave(conn, self)
            except OSError:
                pass
            finally:
                self.done.set()

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket, RawServer], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(behave: Callable[[socket.socket, RawServer], None]) -> RawServer:
        servers.append(RawServer(behave))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def endpoint(port: int) -> Endpoint:
    return Endpoint(
        id="ep_raw",
        url=f"http://127.0.0.1:{port}/hook",
        events=frozenset({"completed"}),
        site="",
        allow_private=True,
        created_at=NOW,
        secrets=(),
    )


def huge(conn: socket.socket, server: RawServer) -> None:
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (4 * ENOUGH))
    chunk = b"x" * (1 << 20)
    while server.sent < ENOUGH and not server.stop.is_set():
        server.send(conn, chunk)


def trickle(conn: socket.socket, server: RawServer) -> None:
    """The status line one byte at a time, each well within the per-read timeout."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
        if server.stop.wait(0.2):
            return
        server.send(conn, bytes([byte]))


def test_a_huge_body_is_not_read_whole(serve):
    server = serve(huge)
    with new_client(5.0) as client, attempt_deadline(60.0):
        sent = send(client, endpoint(server.port), "req-1:2", b"{}", [Secret.generate()], NOW)
    assert sent.kind is AttemptKind.HTTP_2XX
    assert server.done.wait(30)
    # The connection was closed after MAX_BODY: the server could send little more than what
    # the sockets' buffers hold, far less than it had to send.
    assert MAX_BODY < server.sent < ENOUGH


def test_an_answer_trickled_byte_by_byte_ends_at_the_deadline(serve):
    server = serve(trickle)
    with new_client(1.0) as client, attempt_deadline(1.0):
        sent = send(client, endpoint(server.port), "req-1:2", b"{}", [Secret.generate()], NOW)
    assert sent.kind is AttemptKind.TIMEOUT
    assert sent.outcome.reason.startswith("no complete response in")
    assert sent.attempted


def test_a_client_with_no_connection_free_does_not_attempt(serve):
    """Its only connection held by a trickled answer, a second attempt sends nothing."""
    server = serve(trickle)
    with new_client(0.5, connections=1) as client:
        first = threading.Thread(
            target=lambda: send(
                client, endpoint(server.port), "a:1", b"{}", [Secret.generate()], NOW
            )
        )
        with attempt_deadline(30.0):
            first.start()
            while server.sent == 0:  # the first holds the connection
                server.done.wait(0.05)
            sent = send(client, endpoint(server.port), "b:1", b"{}", [Secret.generate()], NOW)
        server.close()
        first.join()
    assert not sent.attempted
    assert sent.outcome.reason == "no connection free"
