"""The HTTP API's ASGI app (``pallycon-pack http``): the routes, and what every one of them does
before its operation (:mod:`.service`): the token (401), its rate (429), the body's type (415),
size (413) and JSON (400). Every error is a problem document (:mod:`.problems`), a 404 or 405
of the router and an unexpected error (500, logged here with its traceback, never answered
with it) too.

Routes (docs/HTTP.md; the contract: :data:`.contract.OPENAPI`, served at ``/openapi.json``):
``POST /v1/requests``, ``POST /v1/requests/batch``, ``GET /v1/requests``,
``GET /v1/requests/{id}``, ``POST /v1/requests/{id}/retry``, ``POST /v1/requests/{id}/cancel``;
``/health/live``, ``/health/ready`` and ``/openapi.json`` need no token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pallycon_pack.problems import redis_problem
from pallycon_pack.web import asgi
from pallycon_pack.web.http_api.contract import OPENAPI
from pallycon_pack.web.http_api.limits import MAX_REASON
from pallycon_pack.web.http_api.problems import (
    ANSWER_HEADERS,
    BY_STATUS,
    MEDIA_TYPE,
    FieldProblem,
    Problem,
    invalid,
)
from pallycon_pack.web.http_api.service import Service, read_only
from pallycon_store.events import iso
from pallycon_store.tokens import ApiToken

log = logging.getLogger("pallycon_pack.http")

JSON_TYPES = ("application/json",)
LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")

Handler = Callable[[Request, ApiToken], Awaitable[Response]]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status, {**ANSWER_HEADERS, **(headers or {})})


def create_app(service: Service, max_body_bytes: int, body_timeout: float) -> Starlette:
    """The app over ``service``; bodies larger than ``max_body_bytes`` are refused (413), and
    so are those not received within ``body_timeout`` seconds of the headers (408, closed)."""
    api = _Api(service, max_body_bytes, body_timeout)
    return Starlette(
        routes=[
            Route(  # one route, so that a 405 on it allows both
                "/v1/requests",
                _by_method(GET=api.guarded(api.list), POST=api.guarded(api.submit, write=True)),
                methods=["GET", "POST"],
            ),
            Route("/v1/requests/batch", api.guarded(api.batch, write=True), methods=["POST"]),
            Route("/v1/requests/{request_id}", api.guarded(api.show), methods=["GET"]),
            Route(
                "/v1/requests/{request_id}/retry",
                api.guarded(api.retry, write=True),
                methods=["POST"],
            ),
            Route(
                "/v1/requests/{request_id}/cancel",
                api.guarded(api.cancel, write=True),
                methods=["POST"],
            ),
            Route("/health/live", _answering(api.live), methods=["GET"]),
            Route("/health/ready", _answering(api.ready), methods=["GET"]),
            Route("/openapi.json", _answering(api.openapi), methods=["GET"]),
        ],
        exception_handlers={
            HTTPException: _http_problem,
            Exception: _internal_error,
        },
    )


def busy_answer() -> bytes:
    """What a connection beyond the server's limit gets before it is closed: a 503 problem."""
    problem = Problem(
        "unavailable",
        "too many connections to this server (PALLYCON_HTTP_MAX_CONNECTIONS): try again",
        headers={"Retry-After": "1"},
    )
    body = json.dumps(problem.body(), separators=(",", ":")).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in problem.all_headers().items())
    return asgi.closing_answer("503 Service Unavailable", MEDIA_TYPE, body, extra)


async def _http_problem(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405 (and any HTTPException) as problems."""
    assert isinstance(exc, HTTPException)
    kind = BY_STATUS.get(exc.status_code, "bad-request")
    if kind == "not-found":
        detail = f"no such route: {request.method} {request.url.path[:200]} (see /openapi.json)"
    elif kind == "method-not-allowed":
        detail = f"{request.method} is not allowed on {request.url.path[:200]}"
    else:
        detail = str(exc.detail)
    headers = dict(exc.headers or {})
    if "Allow" in headers:  # a set's order, made stable
        headers["Allow"] = ", ".join(sorted(headers["Allow"].split(", ")))
    return Problem(kind, detail, headers=headers).response()


def _by_method(
    **routes: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """One endpoint for a path that takes several methods: each its own (HEAD as GET)."""

    async def route(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await routes[method](request)

    return route


def has_body(headers: Mapping[str, str]) -> bool:
    """Whether a request (its headers, lower-case names) says it carries a body: a type, a
    length other than 0, or a chunked transfer."""
    if headers.get("content-type") or headers.get("transfer-encoding"):
        return True
    return headers.get("content-length", "").strip() not in ("", "0")


def internal_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected: logged once with its traceback; answered 500, one line, no
    traceback (answered here, in the route: the connection stays usable)."""
    log.error("%s %s failed", request.method, request.url.path[:200], exc_info=exc)
    return Problem("internal-error", "an error of the server (it is logged)").response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    """The last resort, for an error outside every route (Starlette then logs it again, and
    the connection is dropped): the routes answer their own (:func:`internal_error`)."""
    return internal_error(request, exc)


def _answering(
    route: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """``route``, any unexpected error of it answered by :func:`internal_error`."""

    async def answering(request: Request) -> Response:
        try:
            return await route(request)
        except Exception as exc:  # noqa: BLE001 - answered as a 500, logged with its traceback
            return internal_error(request, exc)

    return answering


class _Api:
    """The handlers, over the service, with the body's limits."""

    def __init__(self, service: Service, max_body_bytes: int, body_timeout: float) -> None:
        self.service = service
        self.max_body = max_body_bytes
        self.body_timeout = body_timeout

    def guarded(
        self, handler: Handler, *, write: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` behind the token (a read-only one refused a ``write`` before its body is
        read), its rate and the errors of Redis."""

        async def guarded(request: Request) -> Response:
            try:
                token = await run_in_threadpool(
                    self.service.caller, request.headers.get("authorization")
                )
                await run_in_threadpool(self.service.throttle, token)
                if write and token.read_only:
                    raise read_only()
                return await handler(request, token)
            except Problem as problem:
                return problem.response()
            except redis.RedisError as exc:
                settings = self.service.store.settings
                detail = redis_problem(exc, settings.redis)
                return Problem("unavailable", detail, headers={"Retry-After": "1"}).response()

        return _answering(guarded)

    # --- Bodies ------------------------------------------------------------------------------

    async def body(self, request: Request, types: tuple[str, ...]) -> tuple[bytes, str]:
        """The body, of one of ``types`` (415 otherwise), at most the limit (413), received
        whole within the deadline (408, the connection closed): (its bytes, its media type)."""
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media not in types:
            raise Problem(
                "unsupported-media-type",
                f"Content-Type {media[:100] or '(none)'}: send {' or '.join(types)}",
                [FieldProblem("Content-Type", f"one of {', '.join(types)}")],
            )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise self.too_large()
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(self.body_timeout):
                size = 0
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self.max_body:
                        raise self.too_large()
                    chunks.append(chunk)
        except ClientDisconnect:  # nobody to answer: not an error of the server
            log.debug(
                "%s %s: the client left before its body's end",
                request.method,
                request.url.path[:200],
            )
            raise Problem(
                "bad-request", "the connection was closed before the body's end"
            ) from None
        except TimeoutError:
            raise Problem(
                "request-timeout",
                f"the body did not arrive within {self.body_timeout:g} s of the headers "
                "(PALLYCON_HTTP_BODY_TIMEOUT)",
                headers={"Connection": "close"},
            ) from None
        return b"".join(chunks), media

    def too_large(self) -> Problem:
        return Problem(
            "payload-too-large",
            f"the body is larger than {self.max_body} bytes (PALLYCON_HTTP_MAX_BODY_BYTES)",
        )

    @staticmethod
    def parse(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise Problem(
                "bad-request",
                f"the body is not JSON: {exc}"[:300],
                [FieldProblem(None, "not JSON")],
            ) from None

    @staticmethod
    def items(raw: bytes, media: str) -> list[tuple[int, Any]]:
        """A batch's items, each with its line: JSON Lines (blank lines skipped) or an array."""
        if media in JSON_TYPES:
            data = _Api.parse(raw)
            if not isinstance(data, list):
                raise invalid(
                    [FieldProblem(None, "a JSON array of submissions (or send JSON Lines)")],
                    "the batch",
                )
            return [(n, item) for n, item in enumerate(data, 1)]
        found, bad = [], []
        for number, text in enumerate(raw.split(b"\n"), 1):
            if not text.strip():
                continue
            try:
                found.append((number, json.loads(text)))
            except (ValueError, RecursionError) as exc:
                bad.append(FieldProblem(None, f"not JSON: {exc}"[:300], number))
        if bad:
            raise Problem("bad-request", f"{len(bad)} line(s) of the batch are not JSON", bad)
        return found

    # --- Routes ------------------------------------------------------------------------------

    async def submit(self, request: Request, token: ApiToken) -> Response:
        raw, _ = await self.body(request, JSON_TYPES)
        payload = self.parse(raw)
        key = request.headers.get("idempotency-key")
        answer, created = await run_in_threadpool(self.service.submit, token, payload, key)
        request_id = answer["record"]["request_id"]
        location = f"/v1/requests/{quote(request_id, safe='')}"
        return _json(answer, 201 if created else 200, {"Location": location})

    async def batch(self, request: Request, token: ApiToken) -> Response:
        raw, media = await self.body(request, JSON_TYPES + LINES_TYPES)
        items = self.items(raw, media)
        return _json(await run_in_threadpool(self.service.submit_batch, token, items))

    async def list(self, request: Request, token: ApiToken) -> Response:
        params = request.query_params
        state, site = params.get("state") or None, params.get("site") or None
        found, after, since, limit = await run_in_threadpool(
            lambda: self.service.page(
                token,
                state=state,
                site=site,
                since=params.get("since") or None,
                cursor=params.get("cursor") or None,
                limit=params.get("limit"),
            )
        )
        headers = {}
        if after is not None:
            query = {"state": state, "site": site, "since": iso(since) if since else None}
            kept = {k: v for k, v in query.items() if v is not None}
            link = "/v1/requests?" + urlencode({**kept, "limit": limit, "cursor": after})
            headers["Link"] = f'<{link}>; rel="next"'
        return _json({"requests": found, "next": after}, headers=headers)

    async def show(self, request: Request, token: ApiToken) -> Response:
        request_id = request.path_params["request_id"]
        return _json(await run_in_threadpool(self.service.show, token, request_id))

    async def retry(self, request: Request, token: ApiToken) -> Response:
        request_id = request.path_params["request_id"]
        return _json(await run_in_threadpool(self.service.retry, token, request_id))

    async def cancel(self, request: Request, token: ApiToken) -> Response:
        request_id = request.path_params["request_id"]
        reason = ""
        if has_body(request.headers):  # a body then needs its type (415 without)
            raw, _ = await self.body(request, JSON_TYPES)
            reason = self.reason(self.parse(raw)) if raw.strip() else ""
        return _json(await run_in_threadpool(self.service.cancel, token, request_id, reason))

    @staticmethod
    def reason(data: Any) -> str:
        if not isinstance(data, dict) or set(data) - {"reason"}:
            raise invalid([FieldProblem(None, 'an object {"reason": "..."}')], "the body")
        reason = data.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise invalid([FieldProblem("reason", f"a string of {MAX_REASON} characters at most")])
        return reason

    # --- Without a token ---------------------------------------------------------------------

    async def live(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self.service.ready)
        except redis.RedisError as exc:
            detail = redis_problem(exc, self.service.store.settings.redis)
            return Problem("unavailable", detail, headers={"Retry-After": "1"}).response()
        return _json({"status": "ok"})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(OPENAPI, headers={"Cache-Control": "no-cache"})
