"""The work of health and stats: run the checks; gather and print what the fleet holds."""

from __future__ import annotations

import socket
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import click

from pallycon.codes import STATUS_CODES
from pallycon_config import load_settings
from pallycon_pack.errors import EXIT_UNHEALTHY
from pallycon_pack.health import Thresholds, run_checks
from pallycon_pack.present import render
from pallycon_pack.present.records import parse_since
from pallycon_producers.api import parked_counts
from pallycon_store.api_calls import read_api_calls
from pallycon_store.events import State
from pallycon_store.failures import NO_CODE
from pallycon_store.wiring import Store


def health(
    chosen: list[str], limits: Thresholds, this_host: bool, timeout: float, as_json: bool
) -> None:
    """``health``: run the chosen checks, print one line (or JSON) each; exit 4 if one fails."""
    if this_host:
        limits = replace(limits, worker_host=socket.gethostname())
    results = run_checks(chosen, load_settings(), limits, timeout)
    healthy = all(check.ok for check in results)
    if as_json:
        render.emit_json({"healthy": healthy, "checks": [c.as_dict() for c in results]})
    else:
        for check in results:
            click.echo(check.line())
    if not healthy:
        raise click.exceptions.Exit(EXIT_UNHEALTHY)


def stats(as_json: bool, since: str) -> None:
    """``stats``: gather the fleet's report over the ``since`` window; print it."""
    now = time.time()
    after = parse_since(since, now)
    report = gather(Store.of(load_settings()), now, after)
    if as_json:
        render.emit_json(report)
        return
    for line in render_stats(report):
        click.echo(line)


#: Submitted requests whose stage is read (the newest), for ``stats``'s stage breakdown.
STAGE_SAMPLE = 1000


def gather(store: Store, now: float, since: float) -> dict[str, Any]:
    """Everything ``stats`` shows, JSON-ready (``requests_by_site`` only with several sites)."""
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
        **result_consumers(store),
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
        *result_consumer_lines(report),
    ]


def result_consumers(store: Store) -> dict[str, Any]:
    """The result stream's consumer groups, for ``stats``: the events each parked."""
    return {"result_parked": parked_counts(store.redis, store.keys.results)}


def result_consumer_lines(report: dict[str, Any]) -> list[str]:
    """The text form of :func:`result_consumers` (pure)."""
    parked = report["result_parked"]
    return [
        "result parked   "
        + ("  ".join(f"{group}={n}" for group, n in parked.items()) or "no groups")
    ]


def _span(seconds: float) -> str:
    """``86400`` -> ``24h``: a window as an operator writes it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0 and not (unit == "d" and seconds < 7 * 86400):
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"
