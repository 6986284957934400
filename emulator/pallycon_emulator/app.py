"""The PallyCon-compatible HTTP server (Starlette).

Routes, as the guide describes them::

    POST|PUT|GET  /api/v2/storage/{site_id}     storage register, update, list
    POST|GET      /api/v2/pack/{site_id}        job register, job list

Every request is verified as the real service would: unknown site (A1003), envelope not base64
JSON (A7008), timestamp format or skew (A1002), hash (A1007), decryption or padding (A1006),
fields (A1000), API version other than v2 (A7009). ``pallycon-apidata`` is taken from the query
string (percent-encoded or not) or from a form body.

Beside the API, for tests and benchmarks only (not part of PallyCon's API)::

    GET  /_emulator/health     liveness
    GET  /_emulator/stats      requests counted per API, faults injected, jobs per site; the
                               same counts per site too; each site's slots in use
    POST /_emulator/jobs/{job_id}/stop?site=SITE_ID
                               stop a job, as PallyCon Console does (WM100, then WM200)

    GET|PUT /_emulator/faults  read or replace the fault configuration at run time
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from pallycon.codes import (
    API_DATA_PARSING_ERROR,
    INVALID_API_VERSION,
    STATUS_CODES,
    SUCCESS,
    UNKNOWN_SITE,
)
from pallycon.errors import EnvelopeError
from pallycon.signing import SiteCredentials, decode_envelope, open_envelope, parse_api_json
from pallycon_emulator import handlers
from pallycon_emulator.config import EmulatorConfig, FaultConfig, masked_callback_url
from pallycon_emulator.files import write_outputs
from pallycon_emulator.handlers import ApiFailure, Context
from pallycon_emulator.state import STOPPED, Job, Store, slot_use, stop, stop_refused

log = logging.getLogger("emulator")

APIDATA = "pallycon-apidata"
DROPPED = "dropped"  # returned by the ASGI app: uvicorn closes the connection, sends nothing

Clock = Callable[[], datetime]
Handler = Callable[[Context, dict[str, Any]], dict[str, Any]]

_ROUTES: dict[tuple[str, str], Handler] = {
    ("storage", "POST"): handlers.register_storage,
    ("storage", "PUT"): handlers.update_storage,
    ("storage", "GET"): handlers.list_storages,
    ("pack", "GET"): handlers.list_jobs,
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Emulator:
    """The emulated service: its sites' state, counters, faults and the job finisher."""

    def __init__(
        self, config: EmulatorConfig, clock: Clock = _utc_now, seed: int | None = None
    ) -> None:
        self.config = config
        self.faults = config.faults
        self.clock = clock
        self.random = random.Random(seed)  # noqa: S311 - fault draws, not cryptography
        self.sites = {site.site_id: site for site in config.sites}
        self.stores = {site.site_id: Store() for site in config.sites}
        #: Every count, all sites together (``counts`` in the stats)...
        self.stats: Counter[str] = Counter()
        #: ... and the same counts per site served (an unknown site in a path is not counted).
        self.site_stats: dict[str, Counter[str]] = {
            site.site_id: Counter() for site in config.sites
        }
        self._due: list[tuple[datetime, int, str]] = []
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None  # the finisher's, while it runs

    def count(self, name: str, site_id: str | None = None) -> None:
        """Count ``name`` once in the totals, and for ``site_id`` if it is a site served."""
        self.stats[name] += 1
        per_site = self.site_stats.get(site_id) if site_id is not None else None
        if per_site is not None:
            per_site[name] += 1

    # --- The API ------------------------------------------------------------------------------

    def endpoint(self, api: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            return await self.api(api, request)

        return handle

    async def api(self, api: str, request: Request) -> Response:
        version = request.path_params["version"]
        site_id = request.path_params["site_id"]
        self.count(f"{request.method} {api}", site_id)
        try:
            if version != "v2":
                raise ApiFailure(INVALID_API_VERSION, f"Invalid API version: {version}")
            site = self.sites.get(site_id)
            if site is None:
                raise ApiFailure(UNKNOWN_SITE, f"Cannot find the site ID: {site_id}")
            body = self._open(await _apidata(request), site)
            return JSONResponse(self._dispatch(api, request.method, site_id, body))
        except ApiFailure as failure:
            self.count(f"error {failure.code}", site_id)
            return JSONResponse({"error_code": failure.code, "error_message": failure.message})

    def _open(self, apidata: str | None, site: SiteCredentials) -> dict[str, Any]:
        if not apidata:
            raise ApiFailure(API_DATA_PARSING_ERROR, f"API data parsing error: no {APIDATA}")
        try:
            envelope = decode_envelope(apidata)
            api_json = open_envelope(
                envelope,
                site,
                now=self.clock(),
                max_skew_seconds=self.config.max_skew_seconds,
            )
            return parse_api_json(api_json)
        except EnvelopeError as exc:
            raise ApiFailure(exc.code, exc.message) from None

    def _dispatch(self, api: str, method: str, site_id: str, body: dict[str, Any]) -> Any:
        self._catch_up()
        context = Context(self.stores[site_id], self.config, self.clock())
        if (api, method) == ("pack", "POST"):
            answer, job = handlers.register_job(context, body)
            self._schedule(job, site_id)
            return answer
        return _ROUTES[(api, method)](context, body)

    # --- Finishing jobs: outputs and callbacks ------------------------------------------------

    def _schedule(self, job: Job, site_id: str) -> None:
        heapq.heappush(self._due, (job.end_date, job.job_id, site_id))
        if self._wake is not None:
            self._wake.set()

    async def run_finisher(self) -> None:
        """Finish each job when it ends: write outputs, POST the callback. Runs until cancelled."""
        self._wake = asyncio.Event()
        async with httpx.AsyncClient(timeout=10.0) as http:
            self._http = http
            while True:
                delay = self._until_next_due()
                if delay is None or delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    self._wake.clear()
                    continue
                self._finish_next(http)

    def _catch_up(self) -> None:
        """Finish every job that has ended by now before answering: a read that sees a job's
        last status must find its outputs written, however far the finisher (an asyncio task)
        lags behind the clock on a busy machine."""
        now = self.clock()
        while self._http is not None and self._due and self._due[0][0] <= now:
            self._finish_next(self._http)

    def _finish_next(self, http: httpx.AsyncClient) -> None:
        """Take the earliest due entry and finish its job; skip an entry a stop made stale (the
        job finished at an earlier end, or ends later: its newer entry stands for it)."""
        _, job_id, site_id = heapq.heappop(self._due)
        job = self.stores[site_id].jobs[job_id]
        if not job.finished and job.ended(self.clock()):
            self._finish(job, site_id, http)

    def _until_next_due(self) -> float | None:
        if not self._due:
            return None
        return (self._due[0][0] - self.clock()).total_seconds()

    def _finish(self, job: Job, site_id: str, http: httpx.AsyncClient) -> None:
        job.finished = True
        request = job.request
        data_dir = self.config.data_dir
        if job.failure is None and job.stopped_at is None and data_dir is not None:
            storage = self.stores[site_id].storages.get(request.storage.output.storage_id)
            if storage is not None:
                write_outputs(job, storage, data_dir)
        self.count("jobs finished", site_id)
        url = self.config.callback_url_of(site_id)
        if url:
            task = asyncio.create_task(self._callback(http, url, site_id, callback_body(job)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _callback(
        self, http: httpx.AsyncClient, url: str, site_id: str, body: dict[str, Any]
    ) -> None:
        """POST ``body`` to ``url``, the callback URL of ``site_id`` (never logged unmasked)."""
        fields: dict[str, Any] = {
            "site_id": site_id,
            "job_id": body["job_id"],
            "error_code": body["error_code"],
        }
        try:
            response = await http.post(url, json=body)
        except httpx.HTTPError as exc:
            self.count("callbacks failed", site_id)
            reason = _without(str(exc), url) or type(exc).__name__
            log.warning("callback not delivered: %s", reason, extra={"fields": fields})
            return
        self.count(f"callbacks {response.status_code}", site_id)
        fields["status"] = response.status_code
        if response.is_success:
            log.info("callback sent", extra={"fields": fields})
        else:
            log.warning("callback refused by the receiver", extra={"fields": fields})

    # --- Control endpoints (emulator only) ----------------------------------------------------

    async def health(self, _: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats_view(self, _: Request) -> Response:
        jobs = {site: len(store.jobs) for site, store in self.stores.items()}
        sites = {site: dict(counts) for site, counts in self.site_stats.items()}
        now = self.clock()
        slots = {site: self._slots(store, now) for site, store in self.stores.items()}
        return JSONResponse(
            {"counts": dict(self.stats), "jobs": jobs, "sites": sites, "slots": slots}
        )

    def _slots(self, store: Store, now: datetime) -> dict[str, int | None]:
        """A site's slots for the stats: how many (``None``: unlimited), and their use."""
        use = slot_use(store.jobs.values(), now)
        return {
            "slots": self.config.slots or None,
            "working": use.working,
            "waiting": use.waiting,
            "working_peak": use.working_peak,
        }

    async def stop_view(self, request: Request) -> Response:
        """Stop a job of ``?site=`` (default: the first site served), as PallyCon Console does:
        ``WM100`` now, ``WM200`` ``stop_seconds`` later. 404 for an unknown site or job, 409
        for a job that has ended or is stopping already."""
        site_id = request.query_params.get("site") or self.config.sites[0].site_id
        store = self.stores.get(site_id)
        if store is None:
            served = ", ".join(self.stores)
            return _error(404, f"unknown site {site_id} (sites served: {served})")
        self._catch_up()
        now = self.clock()
        number = request.path_params["job_id"]
        job = store.jobs.get(int(number)) if number.isascii() and number.isdigit() else None
        if job is None:
            return _error(404, f"site {site_id} has no job {number}")
        refused = stop_refused(job, now)
        if refused:
            return _error(409, refused)
        ends = {each.job_id: each.end_date for each in store.jobs.values() if not each.finished}
        stop(store, job, now, self.config.stop_seconds, self.config.slots)
        for job_id, end in ends.items():
            if store.jobs[job_id].end_date != end:
                self._schedule(store.jobs[job_id], site_id)
        self.count("jobs stopped", site_id)
        return JSONResponse({"site_id": site_id, "job_id": job.job_id, "status": job.status(now)})

    async def faults_view(self, request: Request) -> Response:
        if request.method == "PUT":
            try:
                self.faults = FaultConfig.from_dict(json.loads(await request.body()))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(self.faults.to_dict())


def _error(status: int, message: str) -> Response:
    """A control endpoint's refusal: one line of JSON."""
    return JSONResponse({"error": message}, status_code=status)


_CALLBACK_PATHS = re.compile(r"(/callback/)[^\s'\"<>]*")


def _without(text: str, url: str) -> str:
    """An error's text with ``url``, its path and any path after ``/callback/`` masked."""
    text = text.replace(url, masked_callback_url(url))
    path = urlsplit(url).path
    if len(path) > 1:
        text = text.replace(path, "/***")
    return _CALLBACK_PATHS.sub(r"\g<1>***", text)


def callback_body(job: Job) -> dict[str, Any]:
    """The guide's callback JSON for a finished job (a stopped one's code is ``WM200``)."""
    request = job.request
    code, message = _outcome(job)
    return {
        "job_id": job.job_id,
        "error_code": code,
        "error_message": message,
        "input_contents_path": list(request.storage.input.contents_path),
        "output_path": request.storage.output.path,
    }


def _outcome(job: Job) -> tuple[str, str]:
    """The code and message a finished job's callback carries."""
    if job.stopped_at is not None:
        return STOPPED, STATUS_CODES[STOPPED].meaning
    if job.failure is not None:
        return job.failure.code, job.failure.meaning
    return SUCCESS, "Success"


async def _apidata(request: Request) -> str | None:
    """The value from the query string, else from a form body."""
    value = request.query_params.get(APIDATA)
    if value:
        return value
    if "form-urlencoded" in request.headers.get("content-type", ""):
        form = parse_qs((await request.body()).decode("latin-1"))
        values = form.get(APIDATA)
        return values[0] if values else None
    return None


class FaultInjector:
    """The outermost ASGI layer: latency, 5xx, 429, and accept-then-drop, drawn per request."""

    def __init__(self, app: Starlette, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> object:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return None
        faults, count = self.emulator.faults, self.emulator.count
        site_id = _site_of(scope["path"])
        if faults.latency:
            await asyncio.sleep(faults.latency)
        roll = self.emulator.random.random()
        if roll < faults.error_rate:
            status = self.emulator.random.choice(faults.error_statuses)
            count(f"fault {status}", site_id)
            await _plain(send, status, b"injected server error")
            return None
        if roll < faults.error_rate + faults.rate_limit_rate:
            count("fault 429", site_id)
            retry = f"{faults.retry_after:g}".encode()
            await _plain(send, 429, b"injected rate limit", [(b"retry-after", retry)])
            return None
        if faults.hostile_rate and self.emulator.random.random() < faults.hostile_rate:
            mode = self.emulator.random.choice(faults.hostile_modes)
            count(f"fault hostile {mode}", site_id)
            if mode != "unknown_code":
                await self.app(scope, receive, _discard)  # processed, then the answer is spoilt
            return await _hostile(send, mode)
        if _is_job_registration(scope) and self.emulator.random.random() < faults.drop_rate:
            count("fault drop", site_id)
            await self.app(scope, receive, _discard)
            return DROPPED  # uvicorn closes the connection without writing a response
        await self.app(scope, receive, send)
        return None


def _site_of(path: str) -> str | None:
    """The site id of an API path (``/api/{version}/{api}/{site_id}``), if it has one."""
    parts = path.split("/")
    return parts[4] if len(parts) == 5 else None


def _is_job_registration(scope: Scope) -> bool:
    return bool(scope["method"] == "POST" and "/pack/" in scope["path"])


async def _discard(_: Message) -> None:
    return None


_SPOILT: dict[str, bytes] = {
    "non_json": b"<html><body>502 Bad Gateway</body></html>",
    "missing_fields": b'{"error_message": "no code here"}',
    "wrong_types": b'{"error_code": "0000", "job_id": {"x": []}, "total_count": "many", "data": 7}',
    "unknown_code": b'{"error_code": "Z9999", "error_message": "hostile: unknown code"}',
}


async def _hostile(send: Send, mode: str) -> object:
    """Answer with a hostile response (see FaultConfig); DROPPED when cut short."""
    if mode in _SPOILT:
        await _plain(send, 200, _SPOILT[mode], [(b"content-type", b"application/json")])
        return None
    if mode == "truncated":
        body = b'{"error_code": "0000", "job_id": 1'
        headers = [(b"content-type", b"application/json"), (b"content-length", b"400")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": True})
        return DROPPED  # uvicorn closes the connection mid-body
    chunk = b" " * 65536  # huge: 10 MB of JSON
    size = 160 * len(chunk) + 20
    headers = [(b"content-type", b"application/json"), (b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"error_code": "0000"', "more_body": True})
    for _ in range(160):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"}"})
    return None


async def _plain(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    extra = headers or []
    given = {name for name, _ in extra}
    base = [(b"content-length", str(len(body)).encode())]
    if b"content-type" not in given:
        base.append((b"content-type", b"text/plain"))
    await send({"type": "http.response.start", "status": status, "headers": base + extra})
    await send({"type": "http.response.body", "body": body})


def create_app(emulator: Emulator) -> FaultInjector:
    """The ASGI application for ``emulator``."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        finisher = asyncio.create_task(emulator.run_finisher())
        try:
            yield
        finally:
            finisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await finisher

    routes = [
        Route(
            "/api/{version}/storage/{site_id}",
            emulator.endpoint("storage"),
            methods=["GET", "POST", "PUT"],
        ),
        Route("/api/{version}/pack/{site_id}", emulator.endpoint("pack"), methods=["GET", "POST"]),
        Route("/_emulator/health", emulator.health),
        Route("/_emulator/stats", emulator.stats_view),
        Route("/_emulator/faults", emulator.faults_view, methods=["GET", "PUT"]),
        Route("/_emulator/jobs/{job_id}/stop", emulator.stop_view, methods=["POST"]),
    ]
    return FaultInjector(Starlette(routes=routes, lifespan=lifespan), emulator)
