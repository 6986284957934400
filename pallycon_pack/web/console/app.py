"""The operators' read-only web console (``pallycon-pack console``): the page, and the JSON it
reads.

One HTML page (:data:`PAGE`: ``page.html`` with ``page.css`` and ``page.js`` inline, nothing
fetched from elsewhere) and a few JSON
endpoints under ``/api/``, all read from the state indexes (:class:`store.overview.Overview`):

- ``/api/summary?site=``: requests per state, completions and failures per minute over the last
  hour, and the failures of that hour by code with each code's meaning
  (:func:`pallycon_store.failures.explain`); with ``site``, of that site only; ``sites``: each
  site's requests per state;
- ``/api/requests?state=&q=&limit=&site=``: requests newest first, by state, part of their id
  and site;
- ``/api/request?id=``: one request's record (with its error code's meaning) and its timeline
  of result events;
- ``/api/flow``: each site's flow control: requests waiting by priority, dispatched, in flight
  at PallyCon and its cap, its pause (reason and since when); and the latest pauses and
  resumes (:func:`views.flow`);
- ``/api/webhooks``: each webhook endpoint's health and the delivery counters
  (:func:`views.webhooks`).

Nothing is written. It listens on 127.0.0.1 by default; on any other address it refuses to start
without ``PALLYCON_CONSOLE_TOKEN``, and a set token is required on every request (a
``Authorization: Bearer`` header, or the session cookie set by opening ``/?token=...`` once: not
the token but a signed issue time, good for 12 hours, ``HttpOnly``, ``SameSite=Strict``, and
``Secure`` when the request came over HTTPS, directly or through a proxy uvicorn trusts
(``FORWARDED_ALLOW_IPS``, 127.0.0.1 by default, for ``X-Forwarded-Proto``)). Producer
input (ids, messages, metadata) reaches the page as JSON and is shown as text only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from pallycon_config import UnknownSite
from pallycon_pack.present.records import STATES, explained
from pallycon_pack.problems import redis_problem
from pallycon_pack.web.console.auth import (
    COOKIE,
    SESSION_SECONDS,
    session_valid,
    session_value,
)
from pallycon_pack.web.console.views import MAX_LIST, flow, search, site_of, summary, webhooks
from pallycon_pack.web.hosts import is_loopback
from pallycon_store.overview import Overview

log = logging.getLogger("pallycon_pack.console")

#: Seconds a Redis command may take before the page says Redis is unavailable.
REDIS_TIMEOUT = 5.0


def create_app(
    overview: Overview,
    token: str | None,
    loopback_only: bool,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The console's ASGI app over ``overview``; every request must carry ``token`` when set
    (or a session cookie less than ``SESSION_SECONDS`` old by ``clock``), and name this machine
    in its Host header when ``loopback_only`` (no DNS rebinding)."""
    handlers = _Handlers(overview, token, loopback_only, clock)
    return Starlette(
        routes=[
            Route("/", handlers.page),
            Route("/api/summary", handlers.api_summary),
            Route("/api/requests", handlers.api_requests),
            Route("/api/request", handlers.api_request),
            Route("/api/flow", handlers.api_flow),
            Route("/api/webhooks", handlers.api_webhooks),
            Route("/favicon.ico", lambda _: Response(status_code=204)),  # none, and no 404
        ]
    )


HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _json(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status, HEADERS)


class _Handlers:
    """The endpoints: each checks the caller, reads, and answers JSON (503 when Redis fails)."""

    def __init__(
        self,
        overview: Overview,
        token: str | None,
        loopback_only: bool,
        clock: Callable[[], float],
    ) -> None:
        self.overview = overview
        self.token = token
        self.loopback_only = loopback_only
        self.clock = clock

    def refused(self, request: Request) -> Response | None:
        if self.loopback_only and not is_loopback(request.url.hostname or ""):
            return _json({"error": "this console answers to localhost only"}, 403)
        if self.token is None:
            return None
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            if hmac.compare_digest(bearer[7:].strip().encode(), self.token.encode()):
                return None
        elif session_valid(self.token, request.cookies.get(COOKIE, ""), self.clock()):
            return None
        return _json({"error": "a token is required: open /?token=<PALLYCON_CONSOLE_TOKEN>"}, 401)

    def answer(self, request: Request, read: Callable[[], tuple[Any, int]]) -> Response:
        refused = self.refused(request)
        if refused is not None:
            return refused
        try:
            body, status = read()
        except redis.RedisError as exc:
            return _json({"error": redis_problem(exc)}, 503)
        except UnknownSite as exc:
            return _json({"error": "site: one of " + ", ".join(exc.known)}, 400)
        except (ValueError, TypeError, KeyError) as exc:  # a record this version cannot read
            message = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            log.warning("console: a request's record cannot be read: %s", message)
            return _json({"error": f"a request's record in Redis cannot be read: {message}"}, 500)
        return _json(body, status)

    def page(self, request: Request) -> Response:
        given = request.query_params.get("token")
        if self.token is not None and given is not None:
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _json({"error": "wrong token"}, 401)
            back = RedirectResponse("/", 303, HEADERS)
            back.set_cookie(
                COOKIE,
                session_value(self.token, int(self.clock())),
                max_age=SESSION_SECONDS,
                path="/",
                secure=request.url.scheme == "https",
                httponly=True,
                samesite="strict",
            )
            return back
        refused = self.refused(request)
        if refused is not None:
            return refused
        return HTMLResponse(PAGE, headers=HEADERS | {"Content-Security-Policy": CSP})

    def api_summary(self, request: Request) -> Response:
        label = request.query_params.get("site", "")[:100]

        def read() -> tuple[Any, int]:
            return summary(self.overview, time.time(), site_of(self.overview, label)), 200

        return self.answer(request, read)

    def api_requests(self, request: Request) -> Response:
        params = request.query_params
        state = params.get("state") or None
        if state is not None and state not in STATES:
            return _json({"error": "state: one of " + ", ".join(STATES)}, 400)
        try:
            limit = min(max(int(params.get("limit", "100")), 1), MAX_LIST)
        except ValueError:
            return _json({"error": "limit: a whole number"}, 400)
        query = params.get("q", "").strip()[:200]
        label = params.get("site", "")[:100]

        def read() -> tuple[Any, int]:
            site = site_of(self.overview, label)
            return search(self.overview, state, query, limit, site), 200

        return self.answer(request, read)

    def api_request(self, request: Request) -> Response:
        request_id = request.query_params.get("id", "")

        def read() -> tuple[Any, int]:
            record = self.overview.get(request_id) if request_id else None
            if record is None:
                return {"error": "no such request (or its record expired)"}, 404
            return {"record": explained(record), "events": self.overview.timeline(request_id)}, 200

        return self.answer(request, read)

    def api_flow(self, request: Request) -> Response:
        return self.answer(request, lambda: (flow(self.overview, time.time()), 200))

    def api_webhooks(self, request: Request) -> Response:
        return self.answer(request, lambda: (webhooks(self.overview, time.time()), 200))


def _page() -> tuple[str, str]:
    """The page: ``page.html`` with ``page.css`` and ``page.js`` inline (the states of
    :data:`STATES` written into the script); and the script as it stands between its tags,
    which the CSP hashes."""
    here = files(__package__)
    states = json.dumps(list(STATES), separators=(",", ":"))
    page = (
        (here / "page.html")
        .read_text("utf-8")
        .replace("{{css}}", (here / "page.css").read_text("utf-8"))
        .replace("{{js}}", (here / "page.js").read_text("utf-8").replace("{{states}}", states))
    )
    return page, page.split("<script>", 1)[1].split("</script>", 1)[0]


PAGE, SCRIPT = _page()
#: Only the page's own script runs; it may fetch from this server only.
CSP = (
    "default-src 'none'; script-src "
    f"'sha256-{base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()}'; "
    "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
