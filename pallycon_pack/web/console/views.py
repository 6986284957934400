"""What the console's page shows, read from the state indexes (functions of an
:class:`~pallycon_store.overview.Overview`), from flow control's lanes, counts and pauses
(:func:`flow`) and from the webhook outbox (:func:`webhooks`)."""

from __future__ import annotations

from typing import Any

from pallycon_config.site_ref import SiteBook
from pallycon_pack.present.records import detail
from pallycon_pack.present.webhook_health import health_report
from pallycon_pack.web.flows import SiteFlow, site_flows, stored_sites
from pallycon_store.events import State
from pallycon_store.flow import EVERY_SITE, PRIORITIES, Flow
from pallycon_store.overview import Overview
from pallycon_store.record import Record
from pallycon_store.sites import caps
from pallycon_store.webhooks.deliveries import Deliveries

#: The window of the chart and of the failures by code (seconds), and its buckets.
WINDOW = 3600.0
BUCKET = 60.0
#: Most requests one list returns; records read to search ids by a part of them.
MAX_LIST = 500
SEARCH_SCAN = 2000
#: Pauses and resumes the flow panel lists, newest first.
FLOW_EVENTS = 10
#: How the page names every site's pause.
EVERY_SITE_LABEL = "every site"


def record_row(record: Record, sites: SiteBook) -> dict[str, Any]:
    """A request as the list shows it (its site by the name readers give it)."""
    return {
        "request_id": record.request_id,
        "state": record.state.value,
        "updated_at": record.updated_at or record.created_at,
        "job_id": record.job_id,
        "site": sites.label(record.site_id),
        "detail": detail(record)[:300],
    }


def site_of(overview: Overview, label: str) -> str | None:
    """A ``site`` parameter (a site's name as the page shows it; "" for every site) as
    :class:`Overview` takes it; :class:`pallycon_config.UnknownSite` (a 400 naming the sites)
    for one it does not know."""
    return overview.site_filter(label)


def search(
    overview: Overview, state: str | None, query: str, limit: int, site: str | None = None
) -> list[dict[str, Any]]:
    """Up to ``limit`` requests newest first, in ``state`` (any when None) and of ``site`` (as
    :meth:`Overview.list`) whose id contains ``query`` (any case): among the newest
    :data:`SEARCH_SCAN`, plus the request whose id it is exactly."""
    wanted = State(state) if state else None
    book = overview.book()
    if not query:
        return [record_row(r, book) for r in overview.list(wanted, limit=limit, site=site)]
    needle = query.lower()
    found = []
    exact = overview.get(query)
    mine = () if site is None else book.stored_forms(site)
    if (
        exact is not None
        and (wanted is None or exact.state == wanted)
        and (site is None or exact.site_id in mine)
    ):
        found.append(exact)
    for record in overview.list(wanted, limit=SEARCH_SCAN, site=site):
        if len(found) >= limit:
            break
        if needle in record.request_id.lower() and record.request_id != query:
            found.append(record)
    return [record_row(r, book) for r in found[:limit]]


def summary(overview: Overview, now: float, site: str | None = None) -> dict[str, Any]:
    """Counts by state, the last hour per minute, and its failures by code (or why they cannot
    be read: a failed record this version cannot decode): of ``site`` (as
    :meth:`Overview.counts`; None: every site); and each site's counts by state."""
    since = now - WINDOW
    skipped = overview.unreadable
    try:
        failures, unreadable = overview.failures_by_code(since, site=site), ""
    except (ValueError, TypeError, KeyError) as exc:  # a failed record this version cannot read
        failures, unreadable = [], " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    if overview.unreadable > skipped:  # left out of the list (store.overview skips them)
        unreadable = (
            f"{overview.unreadable - skipped} failed record(s) this version cannot read left out"
        )
    return {
        "now": now,
        "counts": {state.value: n for state, n in overview.counts(site).items()},
        "sites": {
            name: {state.value: n for state, n in counts.items()}
            for name, counts in overview.counts_of_sites().items()
        },
        "chart": {
            "since": since,
            "bucket": BUCKET,
            "completed": overview.per_bucket(State.COMPLETED, since, now, BUCKET, site),
            "failed": overview.per_bucket(State.FAILED, since, now, BUCKET, site),
        },
        "failures": [
            {"code": code, "count": n, "meaning": meaning} for code, meaning, n in failures
        ],
        "failures_error": unreadable,
    }


def flow(overview: Overview, now: float) -> dict[str, Any]:
    """Each site's flow (:func:`pallycon_pack.web.flows.site_flows`: waiting by priority,
    dispatched, in flight and its cap, the pause holding it) and the latest pauses and resumes
    with their reasons. One round trip for the counts, whatever is waiting."""
    book = overview.book()
    reader = Flow(overview.redis, overview.keys)
    snapshot = reader.snapshot(now, reader.lanes(stored_sites(book)))
    rows = site_flows(snapshot, book, caps(overview.redis, overview.keys))
    return {
        "now": now,
        "priorities": [priority.value for priority in PRIORITIES],
        "sites": [flow_row(row, now) for row in rows],
        "events": [
            {
                "type": event.get("type", ""),
                "site": _site_named(event.get("site", ""), book),
                "reason": event.get("reason", ""),
                "at": _number(event.get("at", "")),
            }
            for event in reader.events(FLOW_EVENTS)
        ],
    }


def flow_row(row: SiteFlow, now: float) -> dict[str, Any]:
    """One site's flow as the page shows it; ``paused`` None when it is not."""
    pause = row.pause
    return {
        "site": row.site,
        "waiting": {priority.value: n for priority, n in row.waiting.items()},
        "dispatched": row.dispatched,
        "in_flight": row.in_flight,
        "cap": row.cap,
        "paused": None
        if pause is None
        else {
            "reason": pause.reason,
            "since": row.paused_since,
            "seconds": round(row.paused_seconds(now), 1),
            "every_site": pause.site_id == EVERY_SITE,
        },
    }


def webhooks(overview: Overview, now: float) -> dict[str, Any]:
    """Each webhook endpoint's health (:func:`pallycon_pack.present.webhook_health.
    health_report`: pending, in flight, the oldest's age, dead letters, last 2xx, failing since,
    disabled why) and the delivery counters; ``endpoints`` empty when there is none. Two round
    trips, whatever is pending."""
    read = Deliveries(overview.redis, overview.keys).overview(now)
    return {"now": now, **health_report(read, now)}


def _site_named(stored: str, book: SiteBook) -> str:
    return EVERY_SITE_LABEL if stored == EVERY_SITE else book.label(stored)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
