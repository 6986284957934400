"""Each site's flow as the exporter and the console show it: requests waiting on each priority's
lane, dispatched, in flight at PallyCon against the site's cap, and the pause that holds it.

Pure: :func:`site_flows` turns a :class:`pallycon_store.flow.FlowSnapshot`, the sites' book and
their caps into one row per site, named as readers name it (:meth:`SiteBook.label`). Every
site the book knows has a row (the default one first), and so has any other site a lane, a
count or a pause names. A site is paused by its own pause or by every site's
(:data:`pallycon_store.flow.EVERY_SITE`), as the sweeper and the ``submitting`` mark judge it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pallycon_config.site_ref import DEFAULT, SiteBook
from pallycon_store.flow import EVERY_SITE, PRIORITIES, FlowSnapshot, Pause, Priority


@dataclass(frozen=True)
class SiteFlow:
    """One site's flow at one instant."""

    site: str  # the site as readers name it
    waiting: Mapping[Priority, int]  # due requests waiting on each priority's lane
    dispatched: int  # sent to the submit queue, task not started
    in_flight: int  # registered or being registered, job not finished: what the cap counts
    cap: int  # its max_in_flight (0: none)
    pause: Pause | None  # the pause holding it: its own, else every site's
    paused_since: float | None  # since when a pause has held it (the earliest in force)

    def paused_seconds(self, now: float) -> float:
        """How long it has been paused (0: it is not)."""
        return max(0.0, now - self.paused_since) if self.paused_since is not None else 0.0


def stored_sites(book: SiteBook) -> tuple[str, ...]:
    """The stored form of every site ``book`` knows: the default site ("") first."""
    return (DEFAULT, *(site for site in book.ids if not book.is_default(site)))


def site_flows(flow: FlowSnapshot, book: SiteBook, caps: Mapping[str, int]) -> list[SiteFlow]:
    """One row per site (see the module): ``caps`` by site id as the workers announce them
    (the default site's by its id or ""); stored forms that readers name alike (the default
    site by "" and by its id) are one row, their counts added."""
    forms: dict[str, list[str]] = {}
    named = [
        *stored_sites(book),
        *sorted(
            {lane.site_id for lane in flow.due}
            | set(flow.dispatched)
            | set(flow.in_flight)
            | {DEFAULT if book.is_default(site) else site for site in caps}
            | (set(flow.pauses) - {EVERY_SITE})
        ),
    ]
    for stored in named:
        mine = forms.setdefault(book.label(stored), [])
        if stored not in mine:
            mine.append(stored)
    cap_of = {book.label(DEFAULT if book.is_default(s) else s): n for s, n in caps.items()}
    return [_row(flow, label, stored, cap_of.get(label, 0)) for label, stored in forms.items()]


def _row(flow: FlowSnapshot, label: str, stored: list[str], cap: int) -> SiteFlow:
    waiting = dict.fromkeys(PRIORITIES, 0)
    for lane, n in flow.due.items():
        if lane.site_id in stored:
            waiting[lane.priority] += n
    holding = [flow.pauses[s] for s in stored if s in flow.pauses]
    if EVERY_SITE in flow.pauses:
        holding.append(flow.pauses[EVERY_SITE])
    return SiteFlow(
        site=label,
        waiting=waiting,
        dispatched=sum(flow.dispatched.get(s, 0) for s in stored),
        in_flight=sum(flow.in_flight.get(s, 0) for s in stored),
        cap=cap,
        pause=holding[0] if holding else None,
        paused_since=min(p.at for p in holding) if holding else None,
    )
