"""The work of health, stats, pause and resume: run the checks; gather and print what the fleet
holds; pause and resume the registrations of a site or of every site."""

from __future__ import annotations

import socket
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import click

from pallycon.codes import STATUS_CODES
from pallycon_config import SiteBook, UnknownSite, load_settings
from pallycon_pack.errors import EXIT_INVALID, EXIT_UNHEALTHY, Failure
from pallycon_pack.health import Thresholds, run_checks, waiting
from pallycon_pack.present import render
from pallycon_pack.present.flow import (
    flow_lines,
    flow_report,
    pause_lines,
    pause_rows,
    paused_line,
    resumed_line,
)
from pallycon_pack.present.records import parse_since
from pallycon_pack.present.webhook_health import health_lines, health_report
from pallycon_producers.api import parked_counts
from pallycon_store import sites
from pallycon_store.api_calls import read_api_calls
from pallycon_store.events import State
from pallycon_store.failures import NO_CODE
from pallycon_store.flow import EVERY_SITE
from pallycon_store.webhooks.deliveries import Deliveries
from pallycon_store.wiring import Store

#: Seconds between two rounds of ``health --wait``.
WAIT_PAUSE = 0.5


def health(
    chosen: list[str],
    limits: Thresholds,
    this_host: bool,
    timeout: float,
    as_json: bool,
    wait: float = 0.0,
) -> None:
    """``health``: run the chosen checks (with ``wait``, until all pass or ``wait`` seconds
    have passed), print one line (or JSON) each; exit 4 if one fails."""
    if this_host:
        limits = replace(limits, worker_host=socket.gethostname())
    settings = load_settings()
    deadline = time.monotonic() + wait
    shown: tuple[str, ...] = ()
    while True:
        results = run_checks(chosen, settings, limits, timeout)
        if all(check.ok for check in results) or time.monotonic() >= deadline:
            break
        failing, line = waiting(results)
        if failing != shown:
            click.echo(line, err=True)
            shown = failing
        time.sleep(WAIT_PAUSE)
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
    book = overview.book()
    snapshot = store.fleet().snapshot(now, sites=served(book))
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
        **(
            {"flow": flow_report(snapshot.flow, sites.caps(store.redis, store.keys), book)}
            if snapshot.flow is not None
            else {}
        ),
        "api_calls": calls,
        "counters": store.counters.read(),
        **result_consumers(store),
        "webhooks": health_report(Deliveries(store.redis, store.keys).overview(now), now),
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
        f"submitted stage {pairs(report['submitted_by_stage'])}"
        + sampled(report["submitted_by_stage"], report["requests"].get("submitted", 0)),
        f"failed by stage {pairs(report['failed_by_stage'])}  (last {_span(window)})",
        f"failed by code  {pairs(report['failed_by_code'])}  (last {_span(window)})",
        f"queues          {pairs(report['queues'])}",
        "schedules       " + "  ".join(_schedule(name, s) for name, s in sched.items()),
        f"intake          {pairs(report['intake'])}",
        *(flow_lines(report["flow"]) if "flow" in report else []),
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
        *health_lines(report["webhooks"]),
    ]


def sampled(by_stage: dict[str, int], submitted: int) -> str:
    """What the stage breakdown counts when it read fewer than all the submitted requests
    (the newest :data:`STAGE_SAMPLE`): ``  (the newest 1000 of 4315 submitted)``; "" when it
    read them all."""
    read = sum(by_stage.values())
    return f"  (the newest {read} of {submitted} submitted)" if read < submitted else ""


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


def served(book: SiteBook) -> tuple[str, ...]:
    """The stored forms of the sites ``book`` knows ("" for the default site; just "" when it
    knows none), whose lanes ``stats`` reads even when empty."""
    return tuple(sorted({book.stored(site) for site in book.ids} or {""}))


def pause_target(book: SiteBook, site: str | None) -> str:
    """``--site`` of pause and resume as the paused hash keys it: :data:`EVERY_SITE` without
    one, "" for the default site, else a site the workers serve (Failure naming the sites
    otherwise, exit 2)."""
    if site is None:
        return EVERY_SITE
    if not site:
        raise Failure("--site: give a site (without --site: every site)", EXIT_INVALID)
    try:
        chosen = book.filter(site)
    except UnknownSite as exc:  # worded as every command words it
        raise Failure(f"--site: {exc.reason}", EXIT_INVALID) from None
    assert chosen is not None  # a site was given
    return chosen


def pause(site: str | None, reason: str | None) -> None:
    """``pause``: pause registrations of a site, or of every site; one line saying what changed
    and what it means."""
    store = Store.of(load_settings())
    book = store.overview().book()
    target = pause_target(book, site)
    before = store.flow.pauses().get(target)
    if reason is None:  # pausing again without a reason keeps the one given before
        reason = before.reason if before is not None else ""
    reason = " ".join(reason.split())
    created = store.flow.pause(target, reason, time.time())
    click.echo(paused_line(target, created, reason, before, store.flow.pauses(), book))


def resume(site: str | None, reason: str) -> None:
    """``resume``: lift the pause of a site, or of every site; one line saying what changed and
    what is still paused."""
    store = Store.of(load_settings())
    book = store.overview().book()
    target = pause_target(book, site)
    before = store.flow.resume(target, time.time(), " ".join(reason.split()))
    click.echo(resumed_line(target, before, store.flow.pauses(), book))


def pauses(as_json: bool) -> None:
    """``pause --list``: the pauses in force, with their reasons and since when."""
    store = Store.of(load_settings())
    book = store.overview().book()
    found = store.flow.pauses()
    if as_json:
        render.emit_json(pause_rows(found, book))
        return
    for line in pause_lines(found, book):
        click.echo(line)


def _schedule(name: str, s: dict[str, Any]) -> str:
    """One schedule in ``stats``: polls overdue are late; a submission due waits its turn (its
    site's rate, cap or pause), which is not lateness."""
    if name == "submit":
        return f"submit={s['depth']} ({s['overdue']} waiting their turn)"
    return f"{name}={s['depth']} ({s['overdue']} overdue, {s['lag_seconds']:.0f}s late)"


def _span(seconds: float) -> str:
    """``86400`` -> ``24h``: a window as an operator writes it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0 and not (unit == "d" and seconds < 7 * 86400):
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"
