"""Every HTTP server (callback receiver, console, exporter, emulator): header deadline, a bound
on connections and a clear busy-port error."""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from pallycon_pack.web import asgi
from support.env import clean_env
from support.processes import cli

pytestmark = pytest.mark.integration

HEADER_TIMEOUT = 0.5
REQUEST = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n"


async def _hello(_: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def _app() -> Starlette:
    return Starlette(routes=[Route("/", _hello)])


@pytest.fixture
def address() -> Iterator[tuple[str, int]]:
    """A real server (made as both products make theirs) with a short header deadline."""
    server = asgi.make_server(
        _app(), "127.0.0.1", 0, settings_prefix="PALLYCON_TEST", header_timeout=HEADER_TIMEOUT
    )
    with asgi.running(server) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def _connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.settimeout(10)  # a hang fails the test instead of blocking it
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"hello" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the response: {data!r}"
        data += chunk
    return data


def test_a_client_trickling_headers_is_cut_off(address):
    """Slowloris: part of a request line, then nothing; the server answers 408 and closes."""
    with _connect(address) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /callback/x HTTP/1.1\r\n")
        answer = _read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert HEADER_TIMEOUT * 0.8 <= elapsed < 5


def test_a_connection_that_sends_nothing_is_closed(address):
    """A connection that never starts a request is closed silently after the deadline."""
    with _connect(address) as sock:
        assert _read_until_closed(sock) == b""


def test_headers_sent_in_pieces_within_the_deadline_are_served(address):
    """The deadline is for the whole headers, not a read timeout between pieces."""
    with _connect(address) as sock:
        sock.sendall(REQUEST[:10])
        time.sleep(HEADER_TIMEOUT / 3)
        sock.sendall(REQUEST[10:20])
        time.sleep(HEADER_TIMEOUT / 3)
        sock.sendall(REQUEST[20:])
        assert _read_response(sock).startswith(b"HTTP/1.1 200 ")


def test_a_kept_alive_connection_waits_idle_but_not_for_slow_headers(address):
    """Idle between requests is the keep-alive timeout's business; a started request is not."""
    with _connect(address) as sock:
        sock.sendall(REQUEST)
        assert _read_response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(HEADER_TIMEOUT * 2)  # idle, longer than the header deadline
        sock.sendall(REQUEST)
        assert _read_response(sock).startswith(b"HTTP/1.1 200 ")
        sock.sendall(REQUEST[:10])
        started = time.monotonic()
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 5


def test_a_body_nobody_reads_cannot_hold_the_connection(address):
    """Answered without reading the body (here 405): the rest must come within the deadline,
    however many bytes keep trickling in."""
    with _connect(address) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 100000\r\n\r\nxx")
        sock.settimeout(0.1)
        started, answer, closed = time.monotonic(), b"", False
        while not closed and time.monotonic() - started < 5:
            with contextlib.suppress(TimeoutError):
                chunk = sock.recv(65536)
                answer, closed = answer + chunk, not chunk
            with contextlib.suppress(OSError):
                sock.sendall(b"x")  # a byte at a time, never the whole body
    assert answer.startswith(b"HTTP/1.1 405 ")
    assert closed, "the connection was held open"


def test_the_default_header_deadline():
    """Both products' servers get the deadline; 10 s unless told otherwise."""
    server = asgi.make_server(_app(), "127.0.0.1", 0, settings_prefix="PALLYCON_TEST")
    protocol = server.config.http
    assert isinstance(protocol, type)
    assert issubclass(protocol, asgi.HeaderTimeoutProtocol)
    assert protocol.header_timeout == asgi.HEADER_TIMEOUT == 10.0


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_busy_port_in_process_is_one_clear_oserror(busy_port):
    """The demo's servers (background threads) raise at once, with the whole message."""
    server = asgi.make_server(_app(), "127.0.0.1", busy_port, settings_prefix="PALLYCON_TEST")
    with pytest.raises(OSError, match="cannot listen") as caught, asgi.running(server):
        pass
    assert caught.value.errno == errno.EADDRINUSE
    assert caught.value.strerror == (
        f"cannot listen on 127.0.0.1:{busy_port}: Address already in use; "
        "choose another port with --port (or PALLYCON_TEST_PORT)"
    )


@pytest.mark.parametrize(
    ("command", "setting"),
    [
        ("callbacks", "PALLYCON_CALLBACK_PORT"),
        ("emulator", "PALLYCON_EMULATOR_PORT"),
        ("metrics", "PALLYCON_METRICS_PORT"),
    ],
)
def test_a_busy_port_is_one_clear_line(busy_port, command: str, setting: str, tmp_path: Path):
    """`callbacks` / `emulator` / `metrics` on a port in use: the same one line, naming the
    port, the option and the setting that choose another."""
    env = clean_env(PALLYCON_CALLBACK_TOKEN="test-callback-token-0123456789")
    result = cli(command, "--port", str(busy_port), env=env, cwd=tmp_path, timeout=30)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 3, stderr
    assert "Traceback" not in stderr
    assert stderr.count("Error:") == 1, stderr
    assert f"cannot listen on 127.0.0.1:{busy_port}: Address already in use; " in stderr
    assert f"choose another port with --port (or {setting})" in stderr
    assert "Task exception" not in stderr
    assert "never retrieved" not in stderr


def test_connections_beyond_the_bound_are_refused_at_once():
    """With max_connections, one connection more is answered 503 and closed at once (not held
    until its header deadline); those within the bound are served."""
    server = asgi.make_server(
        _app(), "127.0.0.1", 0, settings_prefix="PALLYCON_TEST", max_connections=2
    )
    with asgi.running(server) as url:
        host, port = url.removeprefix("http://").split(":")
        first, second = _connect((host, int(port))), _connect((host, int(port)))
        with _connect((host, int(port))) as third:
            assert _read_until_closed(third).startswith(b"HTTP/1.1 503 ")
        for sock in (first, second):
            sock.sendall(REQUEST)
            assert _read_response(sock).startswith(b"HTTP/1.1 200 ")
            sock.close()
