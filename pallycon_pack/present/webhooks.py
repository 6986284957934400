"""Webhook endpoints as the CLI shows them: ``webhooks list`` (lines or JSON, never a secret),
what ``add``, ``remove`` and ``rotate-secret`` did, ``test``'s one line, the dead-letter list
(``failures``) and what ``replay`` did. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pallycon_pack.present.flow import when
from pallycon_pack.present.webhook_health import deliveries_text, endpoint_health
from pallycon_store.events import iso
from pallycon_store.webhooks.deliveries import DeadLetter, EndpointHealth
from pallycon_store.webhooks.endpoints import Endpoint
from pallycon_store.webhooks.outcome import Outcome, Verdict
from pallycon_store.webhooks.payload import TYPE_PREFIX

#: What a test's verdict would mean for a delivery.
MEANS = {
    Verdict.DELIVERED: "delivered",
    Verdict.RETRY: "not delivered: a delivery would be retried",
    Verdict.DISABLE: "not delivered: a delivery would disable the endpoint (410 Gone)",
}


def scope(endpoint: Endpoint) -> str:
    """``completed, failed of every site``: what an endpoint receives."""
    where = f"site {endpoint.site}" if endpoint.site else "every site"
    return f"{', '.join(sorted(endpoint.events))} of {where}"


def state(endpoint: Endpoint) -> str:
    """``enabled``, or ``disabled since <when>: <why>``."""
    if endpoint.disabled is None:
        return "enabled"
    reason = f": {endpoint.disabled.reason}" if endpoint.disabled.reason else ""
    return f"disabled since {when(endpoint.disabled.at)}{reason}"


#: The fields of an endpoint's health that ``list --json`` adds to its row (as ``stats --json``
#: has them).
HEALTH_FIELDS = (
    "pending",
    "due_now",
    "in_flight",
    "oldest_pending_seconds",
    "dead",
    "last_success",
    "failing_since",
    "failing_seconds",
    "last_outcome",
)


def endpoint_row(
    endpoint: Endpoint, now: float, health: EndpointHealth | None = None
) -> dict[str, Any]:
    """An endpoint for ``list --json``: no secret, only how many sign now and until when the
    rotated-out ones do; its deliveries (:data:`HEALTH_FIELDS`, as ``stats --json``'s, when
    ``health`` is given); times in ISO 8601, as the result events'."""
    disabled, ends = endpoint.disabled, endpoint.rotation_ends(now)
    read = endpoint_health(health, now) if health is not None else {}
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": sorted(endpoint.events),
        "site": endpoint.site or None,
        "allow_private": endpoint.allow_private,
        "created_at": iso(endpoint.created_at),
        "disabled": None
        if disabled is None
        else {"reason": disabled.reason, "at": iso(disabled.at)},
        "signing_secrets": len(endpoint.active_secrets(now)),
        "rotation_ends": None if ends is None else iso(ends),
        **{name: read[name] for name in HEALTH_FIELDS if name in read},
    }


def endpoint_lines(
    endpoints: Sequence[Endpoint], now: float, health: Mapping[str, EndpointHealth] | None = None
) -> list[str]:
    """``list``: per endpoint, a line (id, URL, state), one of what it receives, since when,
    its secrets, and one of its deliveries (as ``stats`` shows them, when in ``health``); or
    one line saying there is none."""
    if not endpoints:
        return ["no webhook endpoints (add one with: pallycon-pack webhooks add URL)"]
    lines = []
    for endpoint in endpoints:
        private = " (private addresses allowed)" if endpoint.allow_private else ""
        lines.append(f"{endpoint.id}  {endpoint.url}{private}  {state(endpoint)}")
        lines.append(
            f"    {scope(endpoint)}; added {when(endpoint.created_at)}; {secrets(endpoint, now)}"
        )
        read = (health or {}).get(endpoint.id)
        if read is not None:
            shown = endpoint_health(read, now)
            shown["disabled"] = None  # said on the first line
            lines.append(f"    deliveries: {deliveries_text(shown)}")
    return lines


def secrets(endpoint: Endpoint, now: float) -> str:
    """``one secret``, or ``2 secrets sign until <when> (rotation)``."""
    ends = endpoint.rotation_ends(now)
    if ends is None:
        return "one secret"
    return f"{len(endpoint.active_secrets(now))} secrets sign until {when(ends)} (rotation)"


def added_line(endpoint: Endpoint, generated: bool) -> str:
    """What ``add`` did (stderr; the id, and a generated secret, go to stdout)."""
    line = f"added webhook endpoint {endpoint.id}: {endpoint.url}, {scope(endpoint)}"
    if generated:
        line += "; its secret, printed above, is shown this once: give it to the receiver"
    return line


def rotated_line(endpoint: Endpoint, now: float, generated: bool) -> str:
    """What ``rotate-secret`` did."""
    ends = endpoint.rotation_ends(now)
    line = f"{endpoint.id}: the new secret signs from now"
    if ends is not None:
        line += f"; the previous one signs beside it until {when(ends)}"
    if generated:
        line += "; the new secret, printed above, is shown this once"
    return line


def test_line(endpoint_id: str, found: Outcome, seconds: float | None) -> str:
    """``test``'s one line: the response (or why there was none) and what it means."""
    took = f" in {seconds:.3f} s" if seconds is not None else ""
    return f"{endpoint_id}: {found.reason}{took}: {MEANS[found.verdict]}"


def webhook_type(letter: DeadLetter) -> str:
    """A dead letter's type as its receiver sees it: ``request.completed``."""
    return TYPE_PREFIX + letter.type


def failure_row(letter: DeadLetter) -> dict[str, Any]:
    """A dead-lettered delivery for ``failures --json`` (its ``type`` as the receiver sees
    it: ``request.completed``)."""
    return {
        "endpoint_id": letter.endpoint_id,
        "webhook_id": letter.webhook_id,
        "type": webhook_type(letter),
        "request_id": letter.request_id,
        "attempts": letter.attempts,
        "last_outcome": letter.last_outcome or None,
        "reason": letter.dead_reason,
        "dead_at": iso(letter.dead_at),
        "event_at": iso(letter.event_at),
    }


def failure_lines(letters: Sequence[DeadLetter]) -> list[str]:
    """``failures``: two lines per dead-lettered delivery, or one saying there is none."""
    if not letters:
        return ["no dead-lettered webhook deliveries"]
    lines = []
    for letter in letters:
        tried = "attempt" if letter.attempts == 1 else "attempts"
        lines.append(
            f"{letter.endpoint_id}  {letter.webhook_id}  {webhook_type(letter)}  "
            f"{letter.attempts} {tried}  dead since {when(letter.dead_at)}"
        )
        said = not letter.last_outcome or letter.last_outcome in letter.dead_reason
        last = "" if said else f"; last attempt: {letter.last_outcome}"
        lines.append(f"    {letter.dead_reason}{last}")
    return lines


def replayed_line(count: int, left: Sequence[str]) -> str:
    """What ``replay`` did (and which disabled endpoints' deliveries it left)."""
    line = f"{count} webhook deliver{'y' if count == 1 else 'ies'} replayed (due now)"
    if left:
        line += (
            f"; left those of disabled endpoint(s) {', '.join(left)} (enable one with: "
            "pallycon-pack webhooks enable ID)"
        )
    return line
