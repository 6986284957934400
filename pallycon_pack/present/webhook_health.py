"""The webhook endpoints' health as ``stats`` and the console show it (pure): from
:meth:`pallycon_store.webhooks.deliveries.Deliveries.overview`, a JSON-ready report
(:func:`health_report`: ``stats --json``'s ``webhooks``, the console's ``/api/webhooks``) and
its text lines (:func:`health_lines`: none when there is no endpoint)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pallycon_store.events import iso
from pallycon_store.webhooks.deliveries import EndpointHealth, WebhookOverview


def endpoint_health(e: EndpointHealth, now: float) -> dict[str, Any]:
    """One endpoint's health: its deliveries pending (due now, in flight), the age of the
    oldest, its dead-letter list, its last 2xx, since when it fails, why it is disabled.
    Times in ISO 8601 (None: never, or not failing); ages in seconds."""
    return {
        "id": e.endpoint_id,
        "url": e.url,
        "pending": e.pending,
        "due_now": e.due_now,
        "in_flight": e.in_flight,
        "oldest_pending_seconds": None
        if e.oldest_pending_age is None
        else round(e.oldest_pending_age, 1),
        "dead": e.dead,
        "last_success": None if e.last_success is None else iso(e.last_success),
        "failing_since": None if e.failing_since is None else iso(e.failing_since),
        "failing_seconds": None
        if e.failing_since is None
        else round(max(0.0, now - e.failing_since), 1),
        "last_outcome": e.last_outcome or None,
        "disabled": None
        if e.disabled is None
        else {"reason": e.disabled.reason, "at": iso(e.disabled.at)},
    }


def health_report(overview: WebhookOverview, now: float) -> dict[str, Any]:
    """Every endpoint's health (oldest endpoint first) and the delivery counters since Redis
    was first used: attempts by outcome, delivered, dead-lettered, replayed, endpoints
    disabled by a delivery."""
    c = overview.counters
    return {
        "endpoints": [endpoint_health(e, now) for e in overview.endpoints],
        "attempts": dict(c.attempts),
        "delivered": c.delivered,
        "dead_lettered": c.dead,
        "replayed": c.replayed,
        "endpoints_disabled": c.disabled,
    }


def ago(seconds: float) -> str:
    """``3h 2m``, ``4m 10s``, ``12s``: an age as the lines show it."""
    s = round(seconds)
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m {s % 60}s"
    return f"{s}s"


def _time(text: str) -> str:
    return text[:19].replace("T", " ") + " UTC"


def endpoint_line(e: Mapping[str, Any]) -> str:
    """One endpoint: ``  ep_... URL  `` and its :func:`deliveries_text`."""
    return f"  {e['id']}  {e['url']}  {deliveries_text(e)}"


def deliveries_text(e: Mapping[str, Any]) -> str:
    """An endpoint's deliveries: ``pending=3 (due 1, in flight 2, oldest 4m 10s)  dead=0  last
    2xx ...`` and then ``FAILING since ... (10m 0s; last: HTTP 503)`` or ``DISABLED since
    ...: why``."""
    pending = f"pending={e['pending']}"
    if e["pending"]:
        oldest = e["oldest_pending_seconds"]
        pending += f" (due {e['due_now']}, in flight {e['in_flight']}"
        pending += f", oldest {ago(oldest)})" if oldest is not None else ")"
    last = _time(e["last_success"]) if e["last_success"] else "never"
    line = f"{pending}  dead={e['dead']}  last 2xx {last}"
    if e["disabled"]:
        why = f": {e['disabled']['reason']}" if e["disabled"]["reason"] else ""
        line += f"  DISABLED since {_time(e['disabled']['at'])}{why}"
    elif e["failing_since"]:
        said = f"; last: {e['last_outcome']}" if e.get("last_outcome") else ""
        line += f"  FAILING since {_time(e['failing_since'])} ({ago(e['failing_seconds'])}{said})"
    return line


def health_lines(report: Mapping[str, Any]) -> list[str]:
    """The text form of :func:`health_report` for ``stats``: a line of totals and one per
    endpoint; nothing when there is no endpoint (and nothing was ever delivered)."""
    if not report["endpoints"] and not any(report["attempts"].values()):
        return []
    tried = "  ".join(f"{kind}={n}" for kind, n in report["attempts"].items() if n) or "none"
    disabled = sum(e["disabled"] is not None for e in report["endpoints"])
    return [
        f"webhooks        {len(report['endpoints'])} endpoint(s), {disabled} disabled  "
        f"delivered={report['delivered']}  dead={report['dead_lettered']}  "
        f"replayed={report['replayed']}  attempts {tried}",
        *(endpoint_line(e) for e in report["endpoints"]),
    ]
