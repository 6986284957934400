"""Who may read the console: the session cookie ``/?token=`` opens (not the token; a lifetime;
``Secure`` behind TLS) on a real server over a real Redis, and the weak tokens ``console``
refuses at start."""

from __future__ import annotations

import uuid
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest
import redis

from pallycon_pack.web import asgi
from pallycon_pack.web.console.app import create_app
from pallycon_pack.web.console.auth import COOKIE, SESSION_SECONDS
from pallycon_store.keys import Keys
from pallycon_store.overview import Overview
from support.env import clean_env
from support.processes import cli
from support.redis_server import RedisServer

pytestmark = pytest.mark.integration

TOKEN = "3f9c1a7e5b2d8046c0ffee11"


class Clock:
    """The console's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _cookie(response: httpx.Response) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(response.headers["set-cookie"])
    return cookie


def test_the_cookie_is_a_session_with_a_lifetime_not_the_token(redis_server: RedisServer):
    """/?token= sets an HttpOnly, SameSite=Strict cookie for 12 h that is not the token; it
    opens the API until it expires; the raw token as a cookie opens nothing."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    clock = Clock()
    app = create_app(Overview(client, Keys(f"t-{uuid.uuid4().hex[:8]}"), default_site=None),
                     TOKEN, loopback_only=False, clock=clock)  # fmt: skip
    server = asgi.make_server(app, "127.0.0.1", 0, settings_prefix="PALLYCON_CONSOLE")
    with asgi.running(server) as url, httpx.Client(base_url=url, timeout=10) as http:
        opened = http.get(f"/?token={TOKEN}")
        assert opened.status_code == 303
        morsel = _cookie(opened)[COOKIE]
        assert TOKEN not in opened.headers["set-cookie"]
        assert morsel["max-age"] == str(SESSION_SECONDS)
        assert (morsel["httponly"], morsel["samesite"].lower(), morsel["path"]) == (
            True, "strict", "/",
        )  # fmt: skip
        assert not morsel["secure"]  # plain HTTP: a Secure cookie would never come back
        assert http.get("/api/summary").status_code == 200  # the cookie the client kept
        clock.now += SESSION_SECONDS + 1
        assert http.get("/api/summary").status_code == 401  # expired
        http.cookies = httpx.Cookies({COOKIE: TOKEN})
        assert http.get("/api/summary").status_code == 401  # the token is no session
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert http.get("/api/summary", headers=bearer).status_code == 200


def test_behind_a_tls_proxy_the_cookie_is_secure(redis_server: RedisServer):
    """A request that came over HTTPS through a proxy uvicorn trusts (X-Forwarded-Proto from
    127.0.0.1) gets a Secure cookie."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    app = create_app(Overview(client, Keys("t-tls"), default_site=None), TOKEN, False)
    server = asgi.make_server(app, "127.0.0.1", 0, settings_prefix="PALLYCON_CONSOLE")
    with asgi.running(server) as url:
        opened = httpx.get(
            f"{url}/?token={TOKEN}", headers={"X-Forwarded-Proto": "https"}, timeout=10
        )
    assert opened.status_code == 303
    assert _cookie(opened)[COOKIE]["secure"]


@pytest.mark.parametrize("token", [" " * 20, "a" * 16])
def test_a_weak_token_off_loopback_is_one_line(token: str, tmp_path: Path):
    """`console --host 0.0.0.0` with a token of spaces or one character: refused at start in
    one line naming PALLYCON_CONSOLE_TOKEN, exit 2."""
    env = clean_env(PALLYCON_CONSOLE_TOKEN=token)
    anywhere = "0.0.0.0"  # noqa: S104 - refused: what is tested
    done = cli("console", "--host", anywhere, "--port", "0", env=env, cwd=tmp_path, timeout=30)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.count("\n") == 1, err
    assert err.startswith("Error: PALLYCON_CONSOLE_TOKEN "), err
