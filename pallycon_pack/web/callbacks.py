"""The receiver of PallyCon's result callback: ``POST /callback/<token>`` for the default site,
``POST /callback/<site id>/<token>`` for each other site, with that site's own token.

PallyCon signs nothing: anyone who learns the URL can post. So the URL carries a secret token
(compared in constant time; a wrong token, like any unknown path or method, gets the same 404;
refusals are counted, and a wrong token logged once a minute at most: :mod:`.refusals`),
bodies are capped and must arrive in time, and a valid callback is only a hint: it claims an
immediate poll of the job, and the job list, never the callback, decides the outcome.

Repeated callbacks for one job are coalesced: within ``COALESCE_SECONDS`` of the poll a callback
sent, further callbacks for that job send nothing (one Lua script decides, atomically, for any
number of receivers). The polls claimed by callbacks for different jobs within
``BATCH_SECONDS`` go out as one poll task (:mod:`pallycon_pack.web.poll_batches`): one
job-list pass for many jobs. The handlers never block the event loop: Redis is reached through
the asyncio client with a deadline (a stalled Redis answers 503, never a hang), and the poll
tasks are sent from a publisher thread.

Health: ``/health/live`` answers as long as the process and its event loop do;
``/health/ready`` (and its alias ``/health``) only when Redis answers PING within
``READY_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Literal, cast

import redis.asyncio
from pydantic import SecretStr, ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pallycon.models import CallbackBody
from pallycon_config import SiteBook, UnknownSite
from pallycon_pack.web.poll_batches import PollBatches
from pallycon_pack.web.refusals import WRONG_TOKEN, Reason, Refusals
from pallycon_store.connect import Target, connect_async
from pallycon_store.counters import Metric
from pallycon_store.keys import Keys
from pallycon_store.scripts import source

log = logging.getLogger("pallycon_pack.callbacks")

MAX_BODY_BYTES = 64 * 1024
#: Callbacks for one job within this many seconds of the poll one of them sent send no other.
COALESCE_SECONDS = 2.0
#: The longest any callback's Redis work may take; past it the callback is answered 503.
REDIS_TIMEOUT = 3.0
#: Readiness: Redis must answer PING within this many seconds.
READY_TIMEOUT = 1.0
#: The longest a callback waits for its poll task to be sent, when the broker falls behind
#: (:data:`pallycon_pack.web.poll_batches.MAX_UNSENT`; the claim's lease covers a loss).
PUBLISH_TIMEOUT = 5.0
#: A callback's body must have arrived this many seconds after its headers.
BODY_TIMEOUT = 10.0
#: Connections to Redis per receiver process; more callbacks at once wait for one.
REDIS_CONNECTIONS = 32

#: Decides what one callback does, atomically (see the script's comments).
_CLAIM = source("callback_claim", beside=__file__)
#: The counters the claim adds to: unknown job, coalesced, used.
_COUNTED = (Metric.CALLBACKS_UNKNOWN_JOB, Metric.CALLBACKS_COALESCED, Metric.CALLBACKS_USED)

Outcome = Literal["poll", "coalesced", "unknown"]


def connect(target: Target) -> redis.asyncio.Redis:
    """The receiver's Redis client: bounded connections, no retries, every call with a deadline.

    A command is never retried: a claim whose reply was lost must not be applied twice (its
    lease brings the poll back anyway), and a stalled Redis must be answered 503 at once.
    More callbacks at once than connections wait up to ``REDIS_TIMEOUT`` for one, with one
    server or with sentinels. With sentinels, asking all of them for the primary fits in
    ``REDIS_TIMEOUT`` too.
    """
    return connect_async(
        target,
        lookup_deadline=REDIS_TIMEOUT,
        max_connections=REDIS_CONNECTIONS,
        timeout=REDIS_TIMEOUT,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


def create_callback_app(
    client: redis.asyncio.Redis,
    keys: Keys,
    token: SecretStr | None,
    poll_now: Callable[[list[str]], None],
    *,
    lease_seconds: float,
    clock: Callable[[], float] = time.time,
    body_timeout: float = BODY_TIMEOUT,
    site_tokens: Mapping[str, SecretStr] | None = None,
    book: SiteBook | None = None,
) -> Starlette:
    """The ASGI app.

    ``token``: the default site's callback token (None: no callbacks at ``/callback/<token>``);
    ``site_tokens``: the token of each other site by id, served at ``/callback/<site>/<token>``
    (the default site's is ``token``, also served under its id); ``book``: the sites of
    ``site_tokens`` and the default one (None: the default site alone).

    ``poll_now(request_ids)`` sends an immediate poll task for a batch of claimed polls (those
    of ``BATCH_SECONDS``); it is called from a publisher thread and may block. ``lease_seconds``
    is the sweepers' lease: a claimed poll whose task is lost comes back after it. The app sends
    the open batch, then closes ``client`` (and its publisher thread) when it shuts down.
    """
    sites = book or SiteBook(None, tuple(sorted(site_tokens or {})))
    tokens = {sites.stored(site): secret for site, secret in (site_tokens or {}).items()}
    tokens.pop("", None)  # the default site's token is ``token``
    if token is not None:
        tokens[""] = token
    batches = PollBatches(poll_now, lease_seconds=lease_seconds)
    receiver = _Receiver(client, keys, tokens, sites, batches, lease_seconds, clock, body_timeout)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await receiver.refusals.close()
        await batches.close(PUBLISH_TIMEOUT)
        await client.aclose()

    app = Starlette(
        routes=[
            Route("/callback/{token}", receiver.receive, methods=["POST"]),
            Route("/callback/{site}/{token}", receiver.receive, methods=["POST"]),
            Route("/health/live", live),
            Route("/health/ready", receiver.ready),
            Route("/health", receiver.ready),
        ],
        exception_handlers={404: _not_found, 405: _not_found},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # a redirect would be built from the client's Host
    return app


class _Receiver:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        keys: Keys,
        tokens: Mapping[str, SecretStr],
        book: SiteBook,
        batches: PollBatches,
        lease_seconds: float,
        clock: Callable[[], float],
        body_timeout: float,
    ) -> None:
        self.client = client
        self.keys = keys
        #: site, as records keep it ("" = the default site) -> its token, as bytes
        self.expected = {site: t.get_secret_value().encode("utf-8") for site, t in tokens.items()}
        self.book = book
        self.batches = batches
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.body_timeout = body_timeout
        self.claim_script = client.register_script(_CLAIM)
        self.pinging: asyncio.Future[object] | None = None  # readiness's PING under way
        self.refusals = Refusals(client, keys.counters, REDIS_TIMEOUT)

    async def receive(self, request: Request) -> Response:
        site = request.path_params.get("site", "")
        given = request.path_params["token"].encode("utf-8")
        stored = self.stored(site)
        # An unknown site is compared too (with a token nobody has), then refused: the same
        # work and the same 404 as a wrong token.
        expected = None if stored is None else self.expected.get(stored)
        matches = hmac.compare_digest(given, expected or b"\0" * 32)
        if stored is None or expected is None or not matches:
            self.refusals.refused(Reason.WRONG_TOKEN, WRONG_TOKEN)  # never the token (or site)
            return _not_found_response()
        try:
            async with asyncio.timeout(self.body_timeout):
                raw = await _read_limited(request)
        except TimeoutError:
            reason = f"body not received within {self.body_timeout:g} s"
            self.refusals.refused(Reason.TOO_SLOW, reason)
            return _error(reason, 408, close=True)
        if raw is None:
            reason = f"body larger than {MAX_BODY_BYTES} bytes"
            self.refusals.refused(Reason.TOO_LARGE, reason)
            return _error(reason, 413, close=True)
        body = _parse(raw)
        if body is None:
            self.refusals.refused(
                Reason.NOT_A_CALLBACK, "not a PallyCon callback body", size=len(raw)
            )
            return _error("not a PallyCon callback body", 400)
        try:
            outcome, request_id = await self.claim(stored, body.job_id)
        except (RedisError, OSError) as exc:  # OSError: TimeoutError, connection refused
            log.warning(
                "callback not recorded: Redis unavailable (%s)",
                _describe(exc),
                extra={"fields": {"job_id": body.job_id}},
            )
            return _error("temporarily unavailable, try again later", 503)
        if outcome == "poll":
            await self.send_poll(request_id)
        logged = {"job_id": body.job_id, "error_code": body.error_code, "outcome": outcome}
        if site:
            logged["site_id"] = site
        extra = {"request_id": request_id, "fields": logged} if request_id else {"fields": logged}
        log.info("callback", extra=extra)
        return JSONResponse({"status": "received"})

    def stored(self, site: str) -> str | None:
        """The site a callback's path names, as records keep it ("" for the default site, by
        ``/callback/<token>`` or by its id); None for a site the receiver does not know."""
        if not site:
            return ""
        try:
            return self.book.stored(site)
        except UnknownSite:
            return None

    def job_fields(self, site: str, job_id: str) -> list[str]:
        """Where the job of a callback for the stored ``site`` may be indexed (see
        ``_CLAIM``): under each form a record of that site may carry."""
        return [self.keys.job_field(form, job_id) for form in self.book.stored_forms(site)]

    async def claim(self, site: str, job_id: str) -> tuple[Outcome, str]:
        """What this callback does (see ``_CLAIM``) for the stored ``site``: the outcome and
        the job's request id."""
        fields = self.job_fields(site, job_id)
        keys = [
            self.keys.job_index,
            self.keys.poll_schedule,
            self.keys.counters,
            *(self.keys.callback_poll(field) for field in fields),
        ]
        lease_end = repr(self.clock() + self.lease_seconds)
        args: list[str | int] = [lease_end, int(COALESCE_SECONDS * 1000), *_COUNTED, *fields]
        async with asyncio.timeout(REDIS_TIMEOUT):
            outcome, request_id = await self.claim_script(keys=keys, args=args)
        return cast(Outcome, str(outcome)), str(request_id)

    async def send_poll(self, request_id: str) -> None:
        """Add the claimed poll to the open batch (sent within ``BATCH_SECONDS``); wait for it
        to be sent only when the broker falls behind, up to ``PUBLISH_TIMEOUT`` (a poll whose
        task is lost, or late, comes back after the lease)."""
        sent = self.batches.add(request_id)
        if not self.batches.behind:
            return
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await asyncio.shield(sent)
        except TimeoutError:
            log.warning(
                "poll task not sent within %g s; the poll comes back after the lease (%g s)",
                PUBLISH_TIMEOUT,
                self.lease_seconds,
                extra={"request_id": request_id},
            )

    async def ready(self, _: Request) -> Response:
        """Readiness: 200 when Redis answers PING within ``READY_TIMEOUT``, else 503.

        A PING that takes longer is not cancelled: it goes on (within its own deadlines) and the
        next check waits for it rather than starting another. So a new connection's search for
        the primary, a dead sentinel first, ends, and the sentinel that answered is asked first
        from then on: cut off at every check, it would keep the receiver unready for ever."""
        if self.pinging is None or self.pinging.done():
            started: asyncio.Future[object] = asyncio.ensure_future(_ping_of(self.client))
            started.add_done_callback(_retrieved)
            self.pinging = started
        pinging = self.pinging
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await asyncio.shield(pinging)
        except TimeoutError:
            reason = f"Redis did not answer PING within {READY_TIMEOUT:g} s"
        except (RedisError, OSError) as exc:
            reason = f"Redis unavailable ({type(exc).__name__})"
        else:
            return JSONResponse({"status": "ok"})
        log.warning("not ready: %s", reason)
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)


async def _ping_of(client: redis.asyncio.Redis) -> object:
    return await client.ping()


def _retrieved(done: asyncio.Future[object]) -> None:
    """Mark a background PING's error as seen: the check that waited for it reported it, or
    gave up on it before (no "exception was never retrieved" at exit)."""
    if not done.cancelled():
        done.exception()


async def live(_: Request) -> Response:
    """Liveness: the process and its event loop answer (nothing else is checked)."""
    return JSONResponse({"status": "ok"})


def _parse(raw: bytes) -> CallbackBody | None:
    try:
        return CallbackBody.model_validate(json.loads(raw))
    except (ValueError, RecursionError, ValidationError):  # RecursionError: nested too deeply
        return None


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _error(message: str, status: int, *, close: bool = False) -> Response:
    """``close``: the rest of the body is not read, so the connection cannot be used again."""
    headers = {"connection": "close"} if close else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _not_found_response() -> Response:
    return _error("not found", 404)


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
