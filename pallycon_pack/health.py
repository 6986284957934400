"""The fleet's health checks, as ``pallycon-pack health`` runs them (and anything else may):
Redis, the API at each site, the workers' heartbeats, how late the schedules and the intake
are. Each check is bounded in time; the judging of each is pure (:func:`judge`,
:func:`redis_verdict`), tested as a table.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import redis
from redis.sentinel import SentinelConnectionPool

from pallycon.errors import RequestNotBuilt, RequestNotSent
from pallycon.models import JobListRequest
from pallycon_config import ConfigError, Settings, Site
from pallycon_config.site_ref import DEFAULT_LABEL
from pallycon_pack.receiver import local_base
from pallycon_store import heartbeats
from pallycon_store.connect import describe
from pallycon_store.fleet import Snapshot
from pallycon_store.wiring import Store
from pallycon_worker.clients import site_client

CHECKS = ("redis", "api", "workers", "schedules", "intake")
#: Checks run only when ``--check`` names them: not the fleet's but this machine's (the callback
#: receiver where PALLYCON_CALLBACK_HOST and _PORT place it).
OPTIONAL_CHECKS = ("callbacks",)
#: The checks that read Redis (skipped when Redis itself fails).
NEEDS_REDIS = ("workers", "schedules", "intake")


@dataclass(frozen=True)
class Thresholds:
    """When ``health`` calls the fleet unhealthy (each an option of the command)."""

    worker_stale: float = heartbeats.STALE_AFTER  # seconds since a loop's last good round
    max_schedule_lag: float = 300.0  # seconds the most overdue poll is late
    max_intake_backlog: int = 10_000  # intake entries not yet handled
    #: Judge only the workers on this host (their node name ends in ``@<host>``): a per-pod
    #: probe, which must not pass or fail on other replicas. None: the whole fleet.
    worker_host: str | None = None
    #: How the default site (stored "") is named in a line: its id (PALLYCON_SITE_ID).
    default_site: str | None = None


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an "s" unless ``count`` is 1: ``1 job``, ``2 jobs``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def node_host(node: str) -> str:
    """The host part of a Celery node name (``pallycon-7@web-1`` -> ``web-1``)."""
    return node.partition("@")[2]


#: The longest reason shown for one unhealthy loop.
MAX_REASON = 200


def sick_loop(beat: heartbeats.Heartbeat) -> str:
    """An unhealthy loop and why, in one line: ``w1@host/webhooks (ConfigError: ...)``, or
    ``w1@host/sweeper (no good round for 45s)``."""
    why = " ".join(beat.error.split()) if beat.failing and beat.error else ""
    if len(why) > MAX_REASON:
        why = why[: MAX_REASON - 3] + "..."
    return f"{beat.node}/{beat.loop} ({why or f'no good round for {beat.age:.0f}s'})"


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
        sick = sorted({sick_loop(h) for h in beats if not h.healthy(limits.worker_stale)})
        if not healthy:
            newest = min((h.age for h in beats), default=None)
            heard = f"; newest heartbeat {newest:.0f}s old" if newest is not None else ""
            return Check(
                check, False, f"no worker{where} answering (0 of {len(beats)} loops){heard}"
            )
        detail = f"{plural(len(nodes), 'worker')}{where} answering"
        if sick:
            detail += f"; unhealthy: {', '.join(sick[:5])}" + (" ..." if len(sick) > 5 else "")
        return Check(check, True, detail)
    if check == "schedules":
        # Polls are late when overdue; a due submission waits for its turn (its site's rate,
        # cap or pause: the flow), which is not a fault.
        polls = snapshot.schedules["poll"]
        lag = polls.lag(snapshot.now)
        waiting = snapshot.schedules["submit"].overdue
        detail = (
            f"{polls.overdue} overdue; poll {lag:.0f}s late (limit "
            f"{limits.max_schedule_lag:g}s); {waiting} waiting to be registered"
        )
        paused = sorted(snapshot.flow.pauses) if snapshot.flow else []
        if paused:
            shown = ", ".join(
                "every site" if s == "*" else (s or limits.default_site or DEFAULT_LABEL)
                for s in paused
            )
            detail += f"; paused: {shown}"
        return Check(check, lag <= limits.max_schedule_lag, detail)
    if check == "intake":
        intake = snapshot.intake
        detail = (
            f"{intake.unhandled} not handled ({intake.lag} waiting, {intake.pending} pending; "
            f"limit {limits.max_intake_backlog})"
        )
        return Check(check, intake.unhandled <= limits.max_intake_backlog, detail)
    raise ValueError(f"not a Redis-reading check: {check}")


def bounded(name: str, timeout: float, run: Callable[[], Check]) -> Check:
    """``run()`` in a daemon thread, given up after ``timeout`` seconds; any error is a FAIL."""
    result: list[Check] = []
    start = time.monotonic()

    def target() -> None:
        try:
            result.append(run())
        except Exception as exc:  # noqa: BLE001  # a check reports any error; it never raises
            reason = describe(exc)[:200]  # "no master found" without the clients' reprs
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
            f"{reached}, writable, {persisted}, but {plural(replicas, 'replica')} online and "
            f"PALLYCON_REDIS_WAIT_REPLICAS={wait_replicas}: acknowledgements time out",
        )
    return Check("redis", True, f"{reached}, writable, {persisted}, {plural(replicas, 'replica')}")


def _primary(client: redis.Redis) -> str:
    """Which server the sentinels name as the primary ("" without sentinels)."""
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


def _api_check(settings: Settings, site: Site | None, timeout: float) -> Check:
    """A signed job list at ``site`` (None: the one site of the settings)."""
    region = settings.require_region() if site is None else site.region
    try:
        with site_client(settings, site, timeout=timeout) as client:
            listed = client.list_jobs(JobListRequest(region=region, page_unit=1))
    except RequestNotSent as exc:
        if isinstance(exc, RequestNotBuilt):
            raise
        from pallycon_pack.problems import api_problem  # it loads kombu: not for --help

        return Check("api", False, api_problem(exc))
    jobs = plural(listed.total_count, "job")
    if site is None:
        return Check("api", True, f"answered a signed job list ({jobs})")
    return Check("api", True, f"{site.site_id}: {jobs}")


def _callbacks_check(settings: Settings, timeout: float) -> Check:
    """The callback receiver of this machine answers ``/health/ready`` (it reaches Redis)."""
    url = local_base(settings.callback_host, settings.callback_port)
    try:
        response = httpx.get(f"{url}/health/ready", timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        return Check("callbacks", False, f"no receiver at {url} ({type(exc).__name__}: {exc})")
    if response.status_code != 200:
        return Check(
            "callbacks",
            False,
            f"the receiver at {url} is not ready (HTTP "
            f"{response.status_code}: {response.text[:100]})",
        )
    return Check("callbacks", True, f"the receiver at {url} is ready")


def waiting(results: list[Check]) -> tuple[tuple[str, ...], str]:
    """While ``health --wait`` waits: the names of the failing checks (a new line is shown
    when they change) and that line, with the first failing check's detail."""
    failing = [check for check in results if not check.ok]
    names = tuple(dict.fromkeys(check.name for check in failing))
    first = failing[0] if failing else None
    detail = f" ({first.name}: {first.detail})" if first is not None else ""
    return names, f"waiting for {', '.join(names) or 'nothing'}{detail}"


def api_checks(settings: Settings, timeout: float) -> list[Check]:
    """The ``api`` check: a signed job list at each site the settings serve, all at once. One
    line when all answer; else one line per site that did not, naming it."""
    if settings.sites_path is None:  # the one site of the settings, as before sites
        return [bounded("api", timeout, lambda: _api_check(settings, None, timeout))]
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
                    "api", timeout, functools.partial(_api_check, settings, site, timeout)
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
            f"answered a signed job list at each of {plural(len(sites), 'site')} ({answered})",
            max(check.seconds for check in done),
        )
    ]


def run_checks(
    chosen: list[str], settings: Settings, limits: Thresholds, timeout: float
) -> list[Check]:
    """The chosen checks' results, in order; those that read Redis are left out when Redis
    itself fails (its line says why)."""
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
    limits = dataclasses.replace(limits, default_site=settings.site_id)

    def read(name: str) -> Check:
        if not snapshot:
            snapshot.append(store.fleet().snapshot(time.time()))
        return judge(name, snapshot[0], limits)

    for name in chosen:
        if name == "api":
            results += api_checks(settings, timeout)
        elif name == "callbacks":
            results.append(
                bounded(name, timeout, functools.partial(_callbacks_check, settings, timeout))
            )
        elif name in NEEDS_REDIS and redis_ok:
            results.append(bounded(name, timeout, functools.partial(read, name)))
    return results
