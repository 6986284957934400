"""The receiver of PallyCon's result callback (``POST /callback/<token>``).

PallyCon signs nothing: anyone who learns the URL can post. So the URL carries a secret token
(compared in constant time; a wrong token, like any unknown path or method, gets the same 404),
bodies are capped, and a valid callback is only a hint: it pulls the job's next poll to now and
sends a poll task at once. The job list, never the callback, decides the outcome.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable

from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pallycon.models import CallbackBody
from worker.store import RequestStore

log = logging.getLogger("pallycon_pack.callbacks")

MAX_BODY_BYTES = 64 * 1024


def create_callback_app(
    store: RequestStore,
    token: SecretStr,
    poll_now: Callable[[str], None],
    *,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The ASGI app; ``poll_now(request_id)`` sends an immediate poll task."""
    expected = token.get_secret_value().encode("utf-8")

    async def receive(request: Request) -> Response:
        given = request.path_params["token"].encode("utf-8")
        if not hmac.compare_digest(given, expected):
            return _not_found_response()
        raw = await _read_limited(request)
        if raw is None:
            return JSONResponse({"error": f"body larger than {MAX_BODY_BYTES} bytes"}, 413)
        try:
            body = CallbackBody.model_validate(json.loads(raw))
        except (ValueError, RecursionError, ValidationError):  # RecursionError: nested too deeply
            return JSONResponse({"error": "not a PallyCon callback body"}, status_code=400)
        request_id = store.request_for_job(body.job_id)
        if request_id is not None:
            store.count("callbacks used")
            store.reschedule("poll", request_id, clock())
            poll_now(request_id)
        else:
            store.count("callbacks unknown job")
        log.info("callback", extra={"fields": {"job_id": body.job_id, "known": bool(request_id)}})
        return JSONResponse({"status": "received"})

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/callback/{token}", receive, methods=["POST"]),
            Route("/health", health),
        ],
        exception_handlers={404: _not_found, 405: _not_found},
    )
    app.router.redirect_slashes = False  # a redirect would be built from the client's Host
    return app


def _not_found_response() -> Response:
    return JSONResponse({"error": "not found"}, status_code=404)


async def _not_found(_: Request, __: Exception) -> Response:
    """Every unknown path and every wrong method: one and the same 404."""
    return _not_found_response()


async def _read_limited(request: Request) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
