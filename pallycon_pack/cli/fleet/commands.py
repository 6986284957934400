"""The operator's views of the whole fleet: ``pallycon-pack health`` and ``pallycon-pack stats``.

``health`` runs a few bounded checks (Redis, the API, the workers' heartbeats, how late the
schedules and the intake are) and exits 0 only when all pass: a container probe (with
``--this-host``, the workers check judges this pod's own workers only). ``stats`` prints
what the fleet holds and has done. Both read Redis through :mod:`store.fleet`, the same model the
Prometheus exporter reads; the judging of each check is pure (:func:`judge`), tested as a table.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click
from pallycon_store import heartbeats

from pallycon_pack.errors import EXIT_UNHEALTHY

if TYPE_CHECKING:
    import redis
    from pallycon_config import Settings, Site
    from pallycon_store.fleet import Snapshot
    from pallycon_store.wiring import Store

CHECKS = ("redis", "api", "workers", "schedules", "intake")
#: The checks that read Redis (skipped when Redis itself fails).
NEEDS_REDIS = ("workers", "schedules", "intake")


@dataclass(frozen=True)
class Thresholds:
    """When ``health`` calls the fleet unhealthy (each an option of the command)."""

    worker_stale: float = heartbeats.STALE_AFTER  # seconds since a loop's last good round
    max_schedule_lag: float = 300.0  # seconds the most overdue submit or poll is late
    max_intake_backlog: int = 10_000  # intake entries not yet handled
    #: Judge only the workers on this host (their node name ends in ``@<host>``): a per-pod
    #: probe, which must not pass or fail on other replicas. None: the whole fleet.
    worker_host: str | None = None


def node_host(node: str) -> str:
    """The host part of a Celery node name (``pallycon-7@web-1`` -> ``web-1``)."""
    return node.partition("@")[2]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0

    def line(self) -> str:
        return f"{self.name:<9} {'ok' if self.ok else 'FAIL':<4}  {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


def judge(check: str, snapshot: Snapshot, limits: Thresholds) -> Check:
    """A Redis-reading check's verdict on a snapshot of the fleet (pure)."""
    if check == "workers":
        beats = snapshot.heartbeats
        where = ""
        if limits.worker_host is not None:
            beats = [h for h in beats if node_host(h.node) == limits.worker_host]
            where = f" on {limits.worker_host}"
        healthy = [h for h in beats if h.healthy(limits.worker_stale)]
        nodes = sorted({h.node for h in healthy})
        sick = sorted({f"{h.node}/{h.loop}" for h in beats if not h.healthy(limits.worker_stale)})
        if not healthy:
            newest = min((h.age for h in beats), default=None)
            heard = f"; newest heartbeat {newest:.0f}s old" if newest is not None else ""
            return Check(
                check, False, f"no worker{where} answering (0 of {len(beats)} loops){heard}"
            )
        detail = f"{len(nodes)} worker(s){where} answering"
        if sick:
            detail += f"; unhealthy: {', '.join(sick[:5])}" + (" ..." if len(sick) > 5 else "")
        return Check(check, True, detail)
    if check == "schedules":
        lags = {name: s.lag(snapshot.now) for name, s in snapshot.schedules.items()}
        worst = max(lags, key=lambda name: lags[name])
        overdue = sum(s.overdue for s in snapshot.schedules.values())
        detail = (
            f"{overdue} overdue; {worst} {lags[worst]:.0f}s late "
            f"(limit {limits.max_schedule_lag:g}s)"
        )
        return Check(check, lags[worst] <= limits.max_schedule_lag, detail)
    if check == "intake":
        intake = snapshot.intake
        detail = (
            f"{intake.unhandled} not handled ({intake.lag} waiting, {intake.pending} pending; "
            f"limit {limits.max_intake_backlog})"
        )
        return Check(check, intake.unhandled <= limits.max_intake_backlog, detail)
    raise ValueError(f"not a Redis-reading check: {check}")


def parse_checks(text: str) -> list[str]:
    """``--check redis,api``: known names, in the order given, without repeats."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CHECKS]
    if unknown or not names:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'nothing'}: choose among {', '.join(CHECKS)}",
            param_hint="--check",
        )
    return list(dict.fromkeys(names))


def bounded(name: str, timeout: float, run: Callable[[], Check]) -> Check:
    """``run()`` in a daemon thread, given up after ``timeout`` seconds; any error is a FAIL."""
    result: list[Check] = []
    start = time.monotonic()

    def target() -> None:
        try:
            result.append(run())
        except Exception as exc:  # noqa: BLE001  # a check reports any error; it never raises
            from pallycon_store.connect import (
                describe,
            )  # "no master found" without the clients' reprs

            reason = describe(exc)[:200]
            result.append(Check(name, False, f"{type(exc).__name__}: {reason}"))

    thread = threading.Thread(target=target, name=f"health-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    elapsed = time.monotonic() - start
    if not result:
        return Check(name, False, f"no answer within {timeout:g}s", elapsed)
    found = result[0]
    return Check(found.name, found.ok, found.detail, elapsed)


#: How the detail of a Redis that answers and takes writes starts, failed or not: the checks
#: that read Redis still run.
REACHABLE = "reachable"
#: The detail of a Redis that answers and takes writes, with AOF off.
AOF_OFF = (
    f"{REACHABLE} and writable, but AOF is off (appendonly no): a restart loses writes "
    "(a Redis that cannot have AOF: set PALLYCON_REDIS_FSYNC_WAIT_MS=0)"
)


def redis_verdict(
    aof: bool, replicas: int, wait_replicas: int, fsync_wait_ms: int, primary: str = ""
) -> Check:
    """A Redis that answered and took a write: AOF on (unless the fsync wait is off, as for a
    managed Redis that replicates instead), and at least the online replicas that
    ``PALLYCON_REDIS_WAIT_REPLICAS`` waits for (without them no request is acknowledged).
    ``primary``: the server the sentinels named, when they are used."""
    if not aof and fsync_wait_ms:
        return Check("redis", False, AOF_OFF)
    reached = f"{REACHABLE} ({primary})" if primary else REACHABLE
    persisted = "AOF on" if aof else "AOF off (PALLYCON_REDIS_FSYNC_WAIT_MS=0)"
    if replicas < wait_replicas:
        return Check(
            "redis",
            False,
            f"{reached}, writable, {persisted}, but {replicas} replica(s) online and "
            f"PALLYCON_REDIS_WAIT_REPLICAS={wait_replicas}: acknowledgements time out",
        )
    return Check("redis", True, f"{reached}, writable, {persisted}, {replicas} replica(s)")


def _primary(client: redis.Redis) -> str:
    """Which server the sentinels name as the primary ("" without sentinels)."""
    from redis.sentinel import SentinelConnectionPool

    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return ""
    host, port = pool.get_master_address()  # type: ignore[no-untyped-call]
    return f"primary {host}:{port} of {pool.service_name}, by the sentinels"


def online_replicas(replication: dict[str, Any]) -> int:
    """Replicas ``INFO replication`` lists as online (one still syncing cannot acknowledge)."""
    return sum(
        1
        for name, value in replication.items()
        if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )


def _redis_check(client: redis.Redis, probe_key: str, settings: Settings) -> Check:
    client.ping()
    client.set(probe_key, str(time.time()), px=10_000)
    persistence = client.info("persistence")
    replication = client.info("replication")
    return redis_verdict(
        str(persistence.get("aof_enabled", "0")) == "1",
        online_replicas(replication),
        settings.redis_wait_replicas,
        settings.redis_fsync_wait_ms,
        _primary(client),
    )


def _api_check(settings: Settings, timeout: float) -> Check:
    from pallycon_worker.clients import site_client

    from pallycon.models import JobListRequest

    query = JobListRequest(region=settings.require_region(), page_unit=1)
    with site_client(settings, timeout=timeout) as client:
        listed = client.list_jobs(query)
    return Check("api", True, f"answered a signed job list ({listed.total_count} jobs)")


def _site_api_check(settings: Settings, site: Site, timeout: float) -> Check:
    from pallycon_worker.clients import site_client

    from pallycon.models import JobListRequest

    with site_client(settings, site, timeout=timeout) as client:
        listed = client.list_jobs(JobListRequest(region=site.region, page_unit=1))
    return Check("api", True, f"{site.site_id}: {listed.total_count} jobs")


def api_checks(settings: Settings, timeout: float) -> list[Check]:
    """The ``api`` check: a signed job list at each site the settings serve, all at once. One
    line when all answer; else one line per site that did not, naming it."""
    from concurrent.futures import ThreadPoolExecutor

    from pallycon_config import ConfigError

    if settings.sites_path is None:  # the one site of the settings, as before sites
        return [bounded("api", timeout, lambda: _api_check(settings, timeout))]
    try:
        sites = [settings.sites().get(site_id) for site_id in settings.sites().ids()]
    except ConfigError as exc:
        return [Check("api", False, str(exc))]
    if not sites:
        return [Check("api", False, "no site to check: PALLYCON_SITES names none")]
    with ThreadPoolExecutor(min(len(sites), 8), thread_name_prefix="health-api") as pool:
        done = list(
            pool.map(
                lambda site: bounded(
                    "api", timeout, functools.partial(_site_api_check, settings, site, timeout)
                ),
                sites,
            )
        )
    failed = [
        Check("api", False, f"site {site.site_id}: {check.detail}", check.seconds)
        for site, check in zip(sites, done, strict=True)
        if not check.ok
    ]
    if failed:
        return failed
    answered = ", ".join(check.detail for check in done)
    return [
        Check(
            "api",
            True,
            f"answered a signed job list at each of {len(sites)} sites ({answered})",
            max(check.seconds for check in done),
        )
    ]


def run_checks(
    chosen: list[str], settings: Settings, limits: Thresholds, timeout: float
) -> list[Check]:
    """The chosen checks' results, in order; those that read Redis are left out when Redis
    itself fails (its line says why)."""
    from pallycon_store.wiring import Store

    store = Store.of(settings, deadline=timeout)
    results: list[Check] = []
    redis_ok = True
    if "redis" in chosen or any(name in NEEDS_REDIS for name in chosen):
        probe = store.keys.health_probe
        first = bounded("redis", timeout, lambda: _redis_check(store.redis, probe, settings))
        redis_ok = first.ok or first.detail.startswith(REACHABLE)  # then the others can run
        if "redis" in chosen or not redis_ok:
            results.append(first)
    snapshot: list[Snapshot] = []

    def read(name: str) -> Check:
        if not snapshot:
            snapshot.append(store.fleet().snapshot(time.time()))
        return judge(name, snapshot[0], limits)

    for name in chosen:
        if name == "api":
            results += api_checks(settings, timeout)
        elif name in NEEDS_REDIS and redis_ok:
            results.append(bounded(name, timeout, functools.partial(read, name)))
    return results


@click.command()
@click.option(
    "--check",
    "checks",
    default=",".join(CHECKS),
    show_default=True,
    help="The checks to run, comma-separated (a worker pod's liveness probe: workers, with "
    "--this-host).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 60),
    default=3.0,
    show_default=True,
    help="Seconds each check may take.",
)
@click.option(
    "--worker-stale",
    type=click.FloatRange(1),
    default=Thresholds.worker_stale,
    show_default=True,
    help="A worker loop silent this long (s) is not answering.",
)
@click.option(
    "--max-schedule-lag",
    type=click.FloatRange(0),
    default=Thresholds.max_schedule_lag,
    show_default=True,
    help="Most seconds the oldest overdue submit or poll may be late.",
)
@click.option(
    "--max-intake-backlog",
    type=click.IntRange(0),
    default=Thresholds.max_intake_backlog,
    show_default=True,
    help="Most intake stream entries not yet handled.",
)
@click.option(
    "--this-host",
    is_flag=True,
    help="Judge only the workers on this host (node name ending in @<this host name>; in "
    "Kubernetes, the pod's name): a per-pod probe.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def health(
    checks: str,
    timeout: float,
    worker_stale: float,
    max_schedule_lag: float,
    max_intake_backlog: int,
    this_host: bool,
    as_json: bool,
) -> None:
    """Check Redis, the API, the workers and the backlogs; exit 0 only when all pass.

    One line per check. Exit codes: 0 healthy, 4 a check failed (the lines say which and why),
    2 bad usage or settings. Every check is bounded by --timeout.
    """
    from pallycon_config import load_settings

    chosen = parse_checks(checks)
    host = socket.gethostname() if this_host else None
    limits = Thresholds(worker_stale, max_schedule_lag, max_intake_backlog, host)
    results = run_checks(chosen, load_settings(), limits, timeout)
    healthy = all(check.ok for check in results)
    if as_json:
        from pallycon_pack.present import render

        render.emit_json({"healthy": healthy, "checks": [c.as_dict() for c in results]})
    else:
        for check in results:
            click.echo(check.line())
    if not healthy:
        raise click.exceptions.Exit(EXIT_UNHEALTHY)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--since",
    default="24h",
    show_default=True,
    help="The window of the failures shown by stage and code (30m, 2h, 7d or ISO 8601).",
)
def stats(as_json: bool, since: str) -> None:
    """Print requests by state and stage, queues, lags, API calls by code and failures.

    Everything is read from Redis (the counters since Redis last lost them).
    """
    from pallycon_config import load_settings
    from pallycon_store.wiring import Store

    from pallycon_pack.present.records import parse_since

    now = time.time()
    after = parse_since(since, now)
    report = gather(Store.of(load_settings()), now, after)
    if as_json:
        from pallycon_pack.present import render

        render.emit_json(report)
        return
    for line in render_stats(report):
        click.echo(line)


#: Submitted requests whose stage is read (the newest), for ``stats``'s stage breakdown.
STAGE_SAMPLE = 1000


def gather(store: Store, now: float, since: float) -> dict[str, Any]:
    """Everything ``stats`` shows, JSON-ready (``requests_by_site`` only with several sites)."""
    from collections import Counter

    from pallycon_store.api_calls import read_api_calls
    from pallycon_store.events import State
    from pallycon_store.failures import NO_CODE

    from pallycon.codes import STATUS_CODES

    overview = store.overview()
    snapshot = store.fleet().snapshot(now)
    by_site = overview.counts_of_sites()
    stages = Counter(
        (STATUS_CODES[r.status].stage.value if r.status in STATUS_CODES else "registered")
        for r in overview.list(State.SUBMITTED, limit=STAGE_SAMPLE)
    )
    failed = overview.list(State.FAILED, since=since, limit=1000)
    calls = read_api_calls(store.redis, store.keys).as_dict()
    return {
        "requests": {state.value: n for state, n in overview.counts().items()},
        **(
            {
                "requests_by_site": {
                    site: {state.value: n for state, n in counts.items()}
                    for site, counts in by_site.items()
                }
            }
            if len(by_site) > 1
            else {}
        ),
        "submitted_by_stage": dict(stages.most_common()),
        "failed_by_stage": dict(Counter(r.error_stage or "unknown" for r in failed).most_common()),
        "failed_by_code": dict(Counter(r.error_code or NO_CODE for r in failed).most_common()),
        "failed_window_seconds": round(now - since),
        **snapshot.as_dict(),
        "api_calls": calls,
        "counters": store.counters.read(),
    }


def render_stats(report: dict[str, Any]) -> list[str]:
    """The text form of ``stats`` (pure)."""

    def pairs(values: dict[str, Any]) -> str:
        return "  ".join(f"{k}={v}" for k, v in values.items()) or "-"

    sched = report["schedules"]
    oldest = report["longest_in_state"]
    window = report["failed_window_seconds"]
    calls = report["api_calls"]
    sites = report.get("requests_by_site", {})
    return [
        f"requests        {pairs(report['requests'])}",
        *(f"  site {site:<9} {pairs(counts)}" for site, counts in sites.items()),
        f"submitted stage {pairs(report['submitted_by_stage'])}",
        f"failed by stage {pairs(report['failed_by_stage'])}  (last {_span(window)})",
        f"failed by code  {pairs(report['failed_by_code'])}  (last {_span(window)})",
        f"queues          {pairs(report['queues'])}",
        "schedules       "
        + "  ".join(
            f"{name}={s['depth']} ({s['overdue']} overdue, {s['lag_seconds']:.0f}s late)"
            for name, s in sched.items()
        ),
        f"intake          {pairs(report['intake'])}",
        "longest in state "
        + (
            f"{oldest['request_id']} ({oldest['state']} for {oldest['seconds']:.0f}s)"
            if oldest
            else "-"
        ),
        f"api calls       {pairs(calls['by_code'])}",
        f"rate limit      waits={calls['rate_limit_waits']}  "
        f"waited={calls['rate_limit_wait_ms'] / 1000:.1f}s",
        f"counters        {pairs(report['counters'])}",
        "workers         "
        + (
            "  ".join(
                f"{h['node']}/{h['loop']}=" + ("failing" if h["failing"] else f"{h['age']:.0f}s")
                for h in report["heartbeats"]
            )
            or "none"
        ),
    ]


def _span(seconds: float) -> str:
    """``86400`` -> ``24h``: a window as an operator writes it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0 and not (unit == "d" and seconds < 7 * 86400):
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"
