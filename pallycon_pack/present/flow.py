"""Flow control as the CLI shows it: what a pause, a resume and a cancel did, the pauses in
force, and ``stats``'s flow by site and priority. Pure: every form is built from what was read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pallycon_config.site_ref import DEFAULT, SiteBook
from pallycon_store.cancel import Cancel, CancelOutcome
from pallycon_store.events import iso
from pallycon_store.flow import EVERY_SITE, PRIORITIES, FlowSnapshot, Pause

#: What each cancel outcome is called in ``cancel``'s lines.
CANCEL_WORDS: Mapping[CancelOutcome, str] = {
    CancelOutcome.CANCELLED: "cancelled",
    CancelOutcome.STOPPED_TRACKING: "tracking stopped",
    CancelOutcome.FINISHED: "finished",
    CancelOutcome.UNKNOWN: "unknown",
    CancelOutcome.BUSY: "busy",
}
#: The same, for a ``--dry-run`` (what would be done).
WOULD: Mapping[CancelOutcome, str] = {
    CancelOutcome.CANCELLED: "would cancel",
    CancelOutcome.STOPPED_TRACKING: "would stop tracking",
}
#: What a pause means, said after each pause.
PAUSE_MEANS = "requests are still accepted and queued; polls and callbacks go on"


def when(at: float) -> str:
    """``2026-12-05 10:00:00 UTC``: a time as the flow's lines show it."""
    return iso(at)[:19].replace("T", " ") + " UTC"


def site_name(site: str, book: SiteBook) -> str:
    """A stored site (or :data:`EVERY_SITE`) as a sentence names it: ``every site``, ``site
    TUTO``."""
    return "every site" if site == EVERY_SITE else f"site {book.label(site)}"


def resume_command(site: str, book: SiteBook) -> str:
    """The command that lifts the pause of ``site``."""
    return "pallycon-pack resume" + ("" if site == EVERY_SITE else f" --site {book.label(site)}")


def _since(pause: Pause) -> str:
    return f"since {when(pause.at)}" + (f": {pause.reason}" if pause.reason else "")


def paused_line(
    site: str,
    created: bool,
    reason: str,
    before: Pause | None,
    pauses: Mapping[str, Pause],
    book: SiteBook,
) -> str:
    """What ``pause`` did to ``site`` (``created``: it was not paused; ``before``: its pause as
    read before, for when it was), what it means and how to undo it; ``pauses``: those in force
    now (the every-site one is named when it holds a site paused on its own as well)."""
    whom = "any site" if site == EVERY_SITE else book.label(site)
    name = site_name(site, book)
    if created or before is None:
        done = f"paused {name}" + (f" ({reason})" if reason else "")
    elif before.reason != reason:
        done = f"{name} was already paused (since {when(before.at)}); reason now: {reason or '-'}"
    else:
        done = f"{name} was already paused ({_since(before)})"
    line = (
        f"{done}: {PAUSE_MEANS}; no new registration for {whom} until "
        f"`{resume_command(site, book)}`"
    )
    every = pauses.get(EVERY_SITE)
    if site != EVERY_SITE and every is not None:
        line += f" (every site is paused too, {_since(every)}: `pallycon-pack resume` lifts it)"
    return line


def resumed_line(
    site: str, before: Pause | None, pauses: Mapping[str, Pause], book: SiteBook
) -> str:
    """What ``resume`` did to ``site`` (``before``: its pause, None if it had none) and the
    pauses that still hold registrations (``pauses``: those in force now)."""
    name = site_name(site, book)
    if before is None:
        line = f"{name} was not paused: nothing changed"
    else:
        line = f"resumed {name} (paused {_since(before)}): its registrations go on"
    still = [
        f"{site_name(other, book)} ({_since(pause)}; `{resume_command(other, book)}`)"
        for other, pause in sorted(pauses.items())
        if site == EVERY_SITE or other == EVERY_SITE
    ]
    if still:
        line += "; still paused: " + ", ".join(still)
    return line


def pause_rows(pauses: Mapping[str, Pause], book: SiteBook) -> list[dict[str, Any]]:
    """The pauses in force, every site's first, then by site: ``site`` (``*`` for every site,
    else the readers' name), ``reason``, ``since`` (ISO 8601) and ``at`` (epoch seconds)."""
    return [
        {
            "site": EVERY_SITE if site == EVERY_SITE else book.label(site),
            "reason": pause.reason,
            "since": iso(pause.at),
            "at": pause.at,
        }
        for site, pause in _ordered(pauses, book)
    ]


def pause_lines(pauses: Mapping[str, Pause], book: SiteBook) -> list[str]:
    """``pause --list``: one line per pause in force (or one saying there is none)."""
    if not pauses:
        return ["no site is paused"]
    return [
        f"{site_name(site, book):<16} paused {_since(pause)}"
        for site, pause in _ordered(pauses, book)
    ]


def _ordered(pauses: Mapping[str, Pause], book: SiteBook) -> list[tuple[str, Pause]]:
    """The pauses, every site's first, then by the readers' names of their sites."""
    return sorted(pauses.items(), key=lambda item: (item[0] != EVERY_SITE, book.label(item[0])))


def cancel_line(done: Cancel, dry_run: bool) -> str:
    """One request's cancel: ``<id>  <what was done>  <why or what it means>``."""
    word = WOULD.get(done.outcome, CANCEL_WORDS[done.outcome]) if dry_run else None
    return f"{done.request_id}  {(word or CANCEL_WORDS[done.outcome]):<19}  {done.message}"


def flow_report(flow: FlowSnapshot, caps: Mapping[str, int], book: SiteBook) -> dict[str, Any]:
    """``stats``'s flow, JSON-ready: by site (the readers' names, the default site first, every
    served site even when idle) the requests ``waiting`` (due on its lanes) per priority,
    ``dispatched`` (sent to a submit task not yet started), ``in_flight`` (their jobs may be
    at PallyCon), ``max_in_flight`` (the cap the workers announce; None: none) and ``paused``
    (the pause that holds it: its own or every site's; None); and every pause in force."""
    sites: dict[str, dict[str, Any]] = {}

    def entry(stored: str) -> dict[str, Any]:
        label = book.label(stored)
        if label not in sites:
            pause = flow.paused(DEFAULT if label == book.label(DEFAULT) else label)
            sites[label] = {
                "waiting": {priority.value: 0 for priority in PRIORITIES},
                "dispatched": 0,
                "in_flight": 0,
                "max_in_flight": caps.get(label) or None,
                "paused": None
                if pause is None
                else {
                    "reason": pause.reason,
                    "since": iso(pause.at),
                    "every_site": pause.site_id == EVERY_SITE,
                },
            }
        return sites[label]

    for label in book.labels() if book.ids else []:
        entry(DEFAULT if label == book.label(DEFAULT) else label)
    for lane, count in flow.due.items():
        entry(lane.site_id)["waiting"][lane.priority.value] += count
    for site, count in flow.dispatched.items():
        entry(site)["dispatched"] += count
    for site, count in flow.in_flight.items():
        entry(site)["in_flight"] += count
    return {"sites": sites, "pauses": pause_rows(flow.pauses, book)}


def flow_lines(flow: Mapping[str, Any]) -> list[str]:
    """The text form of :func:`flow_report`: a line per site (or one saying every site is
    paused, or none, when there is no site)."""
    lines = []
    for label, site in flow["sites"].items():
        waiting = " ".join(f"{name}={count}" for name, count in site["waiting"].items())
        cap = site["max_in_flight"] or "none"
        line = (
            f"flow {label:<10} waiting {waiting}  dispatched={site['dispatched']}  "
            f"in flight={site['in_flight']} (cap {cap})"
        )
        paused = site["paused"]
        if paused:
            whose = " (every site)" if paused["every_site"] else ""
            since = paused["since"][:19].replace("T", " ")
            reason = f": {paused['reason']}" if paused["reason"] else ""
            line += f"  PAUSED{whose} since {since} UTC{reason}"
        lines.append(line)
    if not lines:
        every = any(p["site"] == EVERY_SITE for p in flow["pauses"])
        lines.append("flow            every site PAUSED" if every else "flow            -")
    return lines


def unserved_sites_line(requested: Sequence[str], known: Sequence[str], then: str) -> str | None:
    """The warning line of a command given sites (``webhooks add --site``, ``tokens add
    --site``) when one is served by no worker (a typo, or workers not started yet), saying
    what happens ``then``; None when each is served."""
    unknown = [site for site in dict.fromkeys(requested) if site not in known]
    if not unknown:
        return None
    named = ", ".join(repr(site) for site in unknown)
    return f"warning: no worker serves site {named} (known: {', '.join(known) or 'none'}); {then}"
