"""Both HTTP servers (callback receiver, emulator): a clear error for a busy port."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from pallycon_pack import asgi
from tests.conftest import clean_env, cli

pytestmark = pytest.mark.integration


async def _hello(_: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def _app() -> Starlette:
    return Starlette(routes=[Route("/", _hello)])


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
    [("callbacks", "PALLYCON_CALLBACK_PORT"), ("emulator", "PALLYCON_EMULATOR_PORT")],
)
def test_a_busy_port_is_one_clear_line(busy_port, command: str, setting: str, tmp_path: Path):
    """`callbacks` / `emulator` on a port in use: one message naming it and what to do."""
    env = clean_env(PALLYCON_CALLBACK_TOKEN="test-callback-token-0123456789")
    result = cli(command, "--port", str(busy_port), env=env, cwd=tmp_path, timeout=30)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0, stderr
    assert f"cannot listen on 127.0.0.1:{busy_port}: Address already in use; " in stderr
    assert f"choose another port with --port (or {setting})" in stderr
    assert "Task exception" not in stderr
    assert "never retrieved" not in stderr
