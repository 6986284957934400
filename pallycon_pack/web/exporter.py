"""The Prometheus exporter: a collector that reads the shared state in Redis at each scrape.

Every worker writes its counts to Redis (the counters hash, the API call statistics, the state
indexes, the schedules, the heartbeats); one exporter process reads them all when scraped, so
any number of workers is covered without prometheus-client's multiprocess mode. Labels are
bounded: API, method and outcome code come from closed sets (``store.api_calls``), event types
from ``store.events.EventType``, states from ``State``, sites from those the workers announce
(one series per site and state).

Flow control (:func:`flow_metrics`) is per site: requests waiting on each priority's lane,
dispatched, in flight at PallyCon against the site's cap, and its pause. A pause of every site
is shown on each site (``paused 1``), not as a site of its own. A due submit entry waits for
its turn (its site's rate, cap or pause): ``schedule_overdue``/``schedule_lag_seconds`` of the
submit schedule measure that wait, not lateness (polls are the ones that can be late).

``pallycon_pack_result_parked{group}`` counts the events each consumer group of the result
stream parked (``pallycon_producers.api.ResultGroup``; the groups from XINFO GROUPS).

``pallycon_pack_transitions_total`` counts the result stream's events by type from the moment
the exporter started (a counter that restarts with it, as Prometheus expects of counters).

The webhook deliveries (``pallycon_pack_webhook_*``): :mod:`pallycon_pack.web.webhook_metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any, cast

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pallycon_config.site_ref import DEFAULT_LABEL
from pallycon_pack.web.flows import SiteFlow, site_flows, stored_sites
from pallycon_pack.web.hosts import host_allowed, is_loopback
from pallycon_pack.web.webhook_metrics import webhook_metrics
from pallycon_producers.api import parked_counts
from pallycon_store import sites
from pallycon_store.api_calls import LATENCY_BUCKETS, ApiCalls, read_api_calls
from pallycon_store.counters import Metric as Counter
from pallycon_store.events import EventType, FailStage, State
from pallycon_store.fleet import Snapshot
from pallycon_store.flow import FlowSnapshot
from pallycon_store.webhooks.deliveries import Deliveries
from pallycon_store.wiring import Store

PREFIX = "pallycon_pack"
#: Result stream entries read per scrape at most (the rest are read at the next scrape).
MAX_EVENTS_PER_SCRAPE = 50_000
#: Seconds a scrape waits on Redis per round trip (keep scrapes under Prometheus's 10 s).
SCRAPE_TIMEOUT = 3.0
#: Seconds a scrape waits for its collection at most; then it answers ``pallycon_pack_up 0``.
SCRAPE_DEADLINE = 3.0
#: Failed requests read per scrape for the dead-letter gauge (the newest, of the last hour).
FAILED_SAMPLE = 1000
#: The counters of the counters hash, by metric (name, help, label values).
COUNTERS: dict[Counter, tuple[str, str, dict[str, str]]] = {
    Counter.RECONCILIATIONS: ("reconciliations", "Registrations whose outcome was looked up.", {}),
    Counter.RECONCILE_LOOKUP_RETRIES: ("retries", "Steps retried.", {"kind": "reconcile_lookup"}),
    Counter.SUBMIT_RESENDS: ("retries", "", {"kind": "submit_resend"}),
    Counter.SUBMIT_RECONCILES: ("retries", "", {"kind": "submit_reconcile"}),
    Counter.POLL_RETRIES: ("retries", "", {"kind": "poll"}),
    Counter.POLL_LOOKUPS: ("poll_reads", "Job reads by polls.", {"kind": "lookup"}),
    Counter.POLL_PAGES: ("poll_reads", "", {"kind": "page"}),
    Counter.POLL_PAGES_TOO_LARGE: ("poll_reads", "", {"kind": "page_too_large"}),
    Counter.CALLBACKS_USED: ("callbacks", "PallyCon callbacks received.", {"outcome": "used"}),
    Counter.CALLBACKS_COALESCED: ("callbacks", "", {"outcome": "coalesced"}),
    Counter.CALLBACKS_UNKNOWN_JOB: ("callbacks", "", {"outcome": "unknown_job"}),
    Counter.CALLBACKS_REFUSED_WRONG_TOKEN: (
        "callbacks_refused",
        "Callbacks refused, by reason (wrong_token: a wrong token or site; too_large, "
        "too_slow, not_a_callback: the body).",
        {"reason": "wrong_token"},
    ),
    Counter.CALLBACKS_REFUSED_TOO_LARGE: ("callbacks_refused", "", {"reason": "too_large"}),
    Counter.CALLBACKS_REFUSED_TOO_SLOW: ("callbacks_refused", "", {"reason": "too_slow"}),
    Counter.CALLBACKS_REFUSED_NOT_A_CALLBACK: (
        "callbacks_refused",
        "",
        {"reason": "not_a_callback"},
    ),
}
_EVENT_TYPES = frozenset(t.value for t in EventType)


class FleetCollector(Collector):
    """Reads Redis for each scrape, one collection at a time; a Redis that fails, or a
    collection that outlasts ``deadline``, gives ``pallycon_pack_up 0`` alone.

    A scrape that comes while a collection is under way waits for that one rather than starting
    another: any number of concurrent scrapes cost one collection, and each answers within
    ``deadline`` seconds. A collection past the deadline goes on in the background (its scrapes
    got ``up 0``); the next scrape after it ended starts a new one.
    """

    def __init__(
        self, store: Store, deadline: float = SCRAPE_DEADLINE, clock: Any = time.time
    ) -> None:
        self.store = store
        self.redis = store.redis
        self.keys = store.keys
        self.deadline = deadline
        self.clock = clock
        self._lock = threading.Lock()  # the tail cursor: start() and a collection
        self._starting = threading.Lock()  # which collection is under way
        self._current: Future[list[Metric]] | None = None
        self._cursor: str | None = None
        self._transitions: dict[str, int] = {}

    @functools.cached_property
    def deliveries(self) -> Deliveries:
        """The webhook outbox, read for its health at each scrape."""
        return Deliveries(self.redis, self.keys)

    def start(self) -> None:
        """Count the result events from now on (else from the first scrape); best effort."""
        with self._lock, contextlib.suppress(redis.RedisError, OSError):
            self._start_tail()

    def _start_tail(self) -> None:
        if self._cursor is None:
            last = cast(list[Any], self.redis.xrevrange(self.keys.results, count=1))
            self._cursor = last[0][0] if last else "0-0"

    def collection(self) -> Future[list[Metric]]:
        """The collection under way, else a new one started in a thread of its own."""
        with self._starting:
            if self._current is None or self._current.done():
                self._current = Future()
                # Running: a scrape that gives up waiting must not cancel it under the others.
                self._current.set_running_or_notify_cancel()
                threading.Thread(
                    target=self._collect_into, args=(self._current,), name="collect", daemon=True
                ).start()
            return self._current

    def _collect_into(self, future: Future[list[Metric]]) -> None:
        try:
            with self._lock:
                metrics = list(self._read())
        except (redis.RedisError, OSError):
            metrics = []
        except BaseException as exc:  # a bug: the scrape's error, not a hung future
            future.set_exception(exc)
            raise
        future.set_result(metrics)

    def collect(self) -> Iterable[Metric]:
        """The figures of the collection under way (or a new one), waited for ``deadline``
        seconds at most (blocking: for a caller outside the event loop)."""
        try:
            metrics = self.collection().result(timeout=self.deadline)
        except FuturesTimeout:
            metrics = []
        return answer(metrics)

    async def scrape(self) -> list[Metric]:
        """As :meth:`collect`, waited for without blocking the event loop."""
        try:
            async with asyncio.timeout(self.deadline):
                metrics = await asyncio.wrap_future(self.collection())
        except TimeoutError:
            metrics = []
        return answer(metrics)

    def _read(self) -> Iterator[Metric]:
        now = self.clock()
        book = sites.book(self.redis, self.keys, default=self.store.settings.site_id)
        snapshot = self.store.fleet().snapshot(now, sites=stored_sites(book))
        yield from self._requests()
        yield self._tail()
        yield from fleet_metrics(snapshot)
        flow = snapshot.flow or FlowSnapshot(now, {}, {}, {})
        yield from flow_metrics(site_flows(flow, book, sites.caps(self.redis, self.keys)), now)
        yield from api_metrics(read_api_calls(self.redis, self.keys))
        yield from counter_metrics(cast(dict[str, str], self.redis.hgetall(self.keys.counters)))
        yield from self._failures(now)
        yield self._parked()
        yield from webhook_metrics(self.deliveries.overview(now), now)

    def _parked(self) -> Metric:
        """The events each consumer group of the result stream parked."""
        gauge = GaugeMetricFamily(
            f"{PREFIX}_result_parked",
            "Result events a consumer group parked (delivered too often without being "
            "acknowledged), by group.",
            labels=["group"],
        )
        for group, count in parked_counts(self.redis, self.keys.results).items():
            gauge.add_metric([group], count)
        return gauge

    def _requests(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            f"{PREFIX}_requests",
            "Requests by PallyCon site and state (finished ones until their records expire; "
            f'the default site by its id, or "{DEFAULT_LABEL}").',
            labels=["site", "state"],
        )
        overview = self.store.overview()
        for site, counts in overview.counts_of_sites().items():
            for state, count in counts.items():
                gauge.add_metric([site, state.value], count)
        yield gauge

    def _tail(self) -> Metric:
        """Events added to the result stream since the exporter started, by type."""
        self._start_tail()
        read = 0
        while read < MAX_EVENTS_PER_SCRAPE:
            page = cast(
                list[tuple[str, dict[str, str]]],
                self.redis.xrange(self.keys.results, f"({self._cursor}", "+", count=5000),
            )
            for entry_id, fields in page:
                kind = event_type(fields.get("event", ""))
                self._transitions[kind] = self._transitions.get(kind, 0) + 1
                self._cursor = entry_id
            read += len(page)
            if len(page) < 5000:
                break
        counter = CounterMetricFamily(
            f"{PREFIX}_transitions",
            "Result events by type (accepted, submitted, progress, completed, failed, "
            "cancelled, stopped, rejected) since the exporter started.",
            labels=["type"],
        )
        for kind in sorted(_EVENT_TYPES | {"other"}):
            counter.add_metric([kind], self._transitions.get(kind, 0))
        return counter

    def _failures(self, now: float) -> Iterator[Metric]:
        failed = self.store.overview().list(State.FAILED, since=now - 3600, limit=FAILED_SAMPLE)
        gauge = GaugeMetricFamily(
            f"{PREFIX}_recent_failures",
            f"Requests that failed in the last hour, by stage (the newest {FAILED_SAMPLE}); "
            'stage="dead_letter": dead letters.',
            labels=["stage"],
        )
        stages: dict[str, int] = {}
        for record in failed:
            stage = record.error_stage if record.error_stage in FAIL_STAGES else "other"
            stages[stage] = stages.get(stage, 0) + 1
        for stage in sorted(FAIL_STAGES | {"other"}):
            gauge.add_metric([stage], stages.get(stage, 0))
        yield gauge
        yield GaugeMetricFamily(
            f"{PREFIX}_dead_letters",
            "Requests dead-lettered in the last hour (delivered too often without moving on).",
            value=stages.get(FailStage.DEAD_LETTER.value, 0),
        )


#: ``error_stage`` values of failed requests; any other counts as "other".
FAIL_STAGES = frozenset(stage.value for stage in FailStage)


#: Open connections the exporter serves at most (Prometheus keeps one per target).
MAX_CONNECTIONS = 100


class _Answered:
    """Figures already read, as prometheus-client's encoders take a registry."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def create_app(collector: FleetCollector, host: str) -> Starlette:
    """The exporter's ASGI app: ``GET /metrics`` (and ``/``), in the format the scraper asks
    for (``Accept``: OpenMetrics or Prometheus text), gzip if accepted. Listening on loopback
    address ``host``, it answers only requests naming this machine in their Host header (421
    else: a foreign page reaching it by DNS rebinding)."""
    loopback_only = is_loopback(host)

    async def metrics(request: Request) -> Response:
        if loopback_only and not host_allowed(request.headers.get("host", ""), host):
            return PlainTextResponse("this exporter answers to localhost only\n", 421)
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = encoder(_Answered(await collector.scrape()))
        headers = {"Content-Type": content_type}
        if "gzip" in request.headers.get("accept-encoding", ""):
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        return Response(body, headers=headers)

    app = Starlette(routes=[Route("/", metrics), Route("/metrics", metrics)])
    app.router.redirect_slashes = False  # a redirect would be built from the client's Host
    return app


def answer(metrics: list[Metric]) -> list[Metric]:
    """A scrape's answer: the figures read, and ``pallycon_pack_up`` (0 when none were read)."""
    up = GaugeMetricFamily(
        f"{PREFIX}_up",
        "1 when the exporter could read Redis at this scrape (0: Redis failed or was too slow; "
        "no other figure then).",
        value=1.0 if metrics else 0.0,
    )
    return [*metrics, up]


def event_type(text: str) -> str:
    """The type of a result event's JSON text; ``other`` when it has none we know."""
    try:
        kind = json.loads(text).get("type")
    except (ValueError, AttributeError):
        return "other"
    return kind if kind in _EVENT_TYPES else "other"


def fleet_metrics(snapshot: Snapshot) -> Iterator[Metric]:
    """Queues, schedules, lags, the intake, the oldest request and the workers (pure)."""
    queue = GaugeMetricFamily(
        f"{PREFIX}_queue_depth", "Celery task messages waiting, by queue.", labels=["queue"]
    )
    for name, depth in snapshot.queues.items():
        queue.add_metric([name], depth)
    yield queue
    depths = GaugeMetricFamily(
        f"{PREFIX}_schedule_depth", "Entries in each schedule.", labels=["schedule"]
    )
    overdue = GaugeMetricFamily(
        f"{PREFIX}_schedule_overdue",
        "Schedule entries past due (submit: due requests waiting for their turn under flow "
        "control, not late; poll: late).",
        labels=["schedule"],
    )
    lag = GaugeMetricFamily(
        f"{PREFIX}_schedule_lag_seconds",
        "How long ago the most overdue entry of each schedule was due (submit: how long the "
        "longest-waiting due request has waited for its turn, not lateness).",
        labels=["schedule"],
    )
    for name, schedule in snapshot.schedules.items():
        depths.add_metric([name], schedule.depth)
        overdue.add_metric([name], schedule.overdue)
        lag.add_metric([name], schedule.lag(snapshot.now))
    yield from (depths, overdue, lag)
    yield GaugeMetricFamily(
        f"{PREFIX}_poll_lag_seconds",
        "How late the most overdue poll is (0: polls are on time).",
        value=snapshot.schedules["poll"].lag(snapshot.now),
    )
    intake = GaugeMetricFamily(
        f"{PREFIX}_intake_lag",
        "Intake stream entries not yet handled: waiting (never delivered) or pending.",
        labels=["kind"],
    )
    intake.add_metric(["waiting"], snapshot.intake.lag)
    intake.add_metric(["pending"], snapshot.intake.pending)
    yield intake
    oldest = snapshot.oldest
    yield GaugeMetricFamily(
        f"{PREFIX}_longest_in_state_seconds",
        "How long the unfinished request longest in its state has been in it (0: none).",
        value=max(0.0, snapshot.now - oldest.since) if oldest else 0.0,
    )
    loops = GaugeMetricFamily(
        f"{PREFIX}_worker_loops",
        "Worker background loops heard of in the last hour, by health.",
        labels=["health"],
    )
    healthy = [h for h in snapshot.heartbeats if h.healthy()]
    loops.add_metric(["healthy"], len(healthy))
    loops.add_metric(["unhealthy"], len(snapshot.heartbeats) - len(healthy))
    yield loops
    yield GaugeMetricFamily(
        f"{PREFIX}_workers",
        "Workers (nodes) with at least one healthy background loop.",
        value=len({h.node for h in healthy}),
    )


def flow_metrics(flows: list[SiteFlow], now: float) -> Iterator[Metric]:
    """Each site's flow control (pure): waiting by priority, dispatched, in flight and its cap,
    and whether (and how long) it is paused. A site is paused by its own pause or every
    site's: both count, each site then says 1."""
    waiting = GaugeMetricFamily(
        f"{PREFIX}_waiting",
        "Due requests waiting for their turn to be registered, by site and priority.",
        labels=["site", "priority"],
    )
    families = {
        name: GaugeMetricFamily(f"{PREFIX}_{name}", help_text, labels=["site"])
        for name, help_text in (
            ("in_flight", "Requests registered or being registered whose job has not finished "
             "(what a site's max_in_flight caps)."),
            ("dispatched", "Requests sent to the submit queue whose task has not started."),
            ("max_in_flight", "Each site's cap of jobs in flight at PallyCon (0: none)."),
            ("paused", "1 when the site's registrations are paused (its own pause or every "
             "site's), else 0."),
            ("paused_seconds", "How long the site has been paused (0: not paused)."),
        )
    }  # fmt: skip
    for flow in flows:
        for priority, count in flow.waiting.items():
            waiting.add_metric([flow.site, priority.value], count)
        for name, value in (
            ("in_flight", flow.in_flight),
            ("dispatched", flow.dispatched),
            ("max_in_flight", flow.cap),
            ("paused", 1 if flow.pause is not None else 0),
            ("paused_seconds", flow.paused_seconds(now)),
        ):
            families[name].add_metric([flow.site], value)
    yield waiting
    yield from families.values()


def api_metrics(calls: ApiCalls) -> Iterator[Metric]:
    """API calls by outcome code, their durations and the rate limit's waits (pure)."""
    counter = CounterMetricFamily(
        f"{PREFIX}_api_calls",
        "API calls by API, method and outcome: the answer's error_code (0000: success), "
        "http_429/http_4xx/http_5xx, connect_error, timeout, io_error, no_token.",
        labels=["api", "method", "code"],
    )
    for api, method, code, value in sorted((a, m, c, n) for (m, a, c), n in calls.calls.items()):
        counter.add_metric([api, method, code], value)
    yield counter
    histogram = HistogramMetricFamily(
        f"{PREFIX}_api_call_duration_seconds",
        "API call durations, from sending to the end of the answer.",
        labels=["api", "method"],
    )
    for api, method, per in sorted(
        ((a, m, per) for (m, a), per in calls.buckets.items()), key=lambda item: item[:2]
    ):
        cumulative, total = [], 0
        for bound in LATENCY_BUCKETS:
            total += per.get(f"{bound:g}", 0)
            cumulative.append((floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
        total += per.get("+Inf", 0)
        cumulative.append(("+Inf", float(total)))
        seconds = calls.sum_ms.get((method, api), 0) / 1000
        histogram.add_metric([api, method], cumulative, sum_value=seconds)
    yield histogram
    yield CounterMetricFamily(
        f"{PREFIX}_rate_limit_waits",
        "API calls that waited for a rate-limit token.",
        value=calls.rate_limit_waits,
    )
    yield CounterMetricFamily(
        f"{PREFIX}_rate_limit_wait_seconds",
        "Time API calls spent waiting for rate-limit tokens.",
        value=calls.rate_limit_wait_ms / 1000,
    )


def counter_metrics(raw: dict[str, str]) -> Iterator[Metric]:
    """The named counters of the counters hash (pure): reconciliations, retries, poll reads,
    callbacks."""
    families: dict[str, CounterMetricFamily] = {}
    for counter, (name, help_text, labels) in COUNTERS.items():
        family = families.get(name)
        if family is None:
            family = families[name] = CounterMetricFamily(
                f"{PREFIX}_{name}", help_text, labels=list(labels)
            )
        try:
            value = int(raw.get(counter.value, 0))
        except ValueError:
            value = 0
        family.add_metric(list(labels.values()), value)
    yield from families.values()
