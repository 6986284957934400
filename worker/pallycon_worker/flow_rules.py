"""Which waiting requests a sweeper sends to be registered next, pure: the flow's snapshot +
each site's limits + the priorities' credits -> how many to take from each lane.

Each site is decided on its own, so that one site's backlog never holds another's back:

- **room**: a site gets no more dispatched (sent to the submit queue, task not started) than
  :data:`HORIZON` seconds of its API rate, so that what is registered next is chosen
  when a place frees, not hours earlier; with a cap (``max_in_flight``), no more than the
  places left (cap - in flight - dispatched); paused: none.
- **priorities**: each place goes to the oldest request of the highest priority waiting,
  except that a lower priority with requests waiting is guaranteed its share
  (:data:`pallycon_store.flow.SHARES`: normal 20 %, bulk 10 %) through credits it earns on every
  place it does not get: a backfill never starves, and never delays live work by more than its
  share.

Table-tested in tests/unit/test_flow_rules.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from pallycon_store.flow import PRIORITIES, SHARES, FlowSnapshot, Lane, Priority
from pallycon_store.messages import SUBMIT_CHUNK

#: Seconds of a site's API rate a sweeper keeps dispatched ahead of the workers.
HORIZON = 0.5
#: Seconds of a site's API rate one submit task carries (its requests go out together).
TASK_SECONDS = 0.5

#: Rounding room for credits made of sums of shares (ten times 0.1 is not quite 1.0).
_EPSILON = 1e-9

#: The credits of one site's lower priorities (see :func:`split`).
Credits = MutableMapping[Priority, float]


@dataclass(frozen=True)
class SiteLimits:
    """What bounds how many of a site's requests are dispatched at once."""

    rate: float  # API calls per second (the site's token bucket)
    cap: int = 0  # most requests in flight at PallyCon (0: no cap)


def allowance(rate: float) -> int:
    """The most of a site's requests dispatched and not yet started, at ``rate`` calls/s."""
    return max(1, math.ceil(rate * HORIZON))


def task_size(rate: float) -> int:
    """Requests per submit task for a site at ``rate`` calls/s (at least 1, at most
    :data:`SUBMIT_CHUNK`)."""
    return min(SUBMIT_CHUNK, max(1, math.ceil(rate * TASK_SECONDS)))


def rate_room(snapshot: FlowSnapshot, site: str, limits: SiteLimits) -> int:
    """What ``site``'s API rate leaves to dispatch now: its :func:`allowance` less what is
    dispatched (may be negative)."""
    return allowance(limits.rate) - snapshot.dispatched.get(site, 0)


def room(snapshot: FlowSnapshot, site: str, limits: SiteLimits) -> int:
    """How many more of ``site``'s requests may be dispatched now."""
    if snapshot.paused(site) is not None:
        return 0
    free = rate_room(snapshot, site, limits)
    if limits.cap > 0:
        dispatched = snapshot.dispatched.get(site, 0)
        free = min(free, limits.cap - snapshot.in_flight.get(site, 0) - dispatched)
    return max(0, free)


def lookups(snapshot: FlowSnapshot, limits: Mapping[str, SiteLimits]) -> dict[str, int]:
    """Per site with a cap, the budget of a take (:meth:`pallycon_store.flow.Flow.take`): the
    room its API rate leaves (:func:`rate_room`), spent first on its due lookups
    (requests in flight whose worker died mid-registration) whatever the cap, since each holds
    its place already, then on the counts :func:`plan` gave; none while it is paused. Sites
    without a cap take their lookups in turn, within their room."""
    return {
        site: max(0, rate_room(snapshot, site, site_limits))
        for site, site_limits in limits.items()
        if site_limits.cap > 0 and snapshot.paused(site) is None
    }


def split(budget: int, waiting: Mapping[Priority, int], credits: Credits) -> dict[Priority, int]:
    """``budget`` places among the priorities with requests ``waiting``: each to the highest
    waiting, unless a lower one has earned a whole credit (it earns its share on each place
    it does not get while it waits, and loses its credits when it has nothing waiting).
    ``credits`` is updated."""
    left = {p: waiting.get(p, 0) for p in PRIORITIES}
    taken = dict.fromkeys(PRIORITIES, 0)
    for priority in PRIORITIES:
        if left[priority] <= 0:
            credits[priority] = 0.0
    for _ in range(budget):
        ready = [p for p in PRIORITIES if left[p] > 0]
        if not ready:
            break
        for lower in ready[1:]:
            credits[lower] = credits.get(lower, 0.0) + SHARES[lower]
        due = [p for p in ready[1:] if credits[p] >= 1.0 - _EPSILON]
        # The most credit first; on a tie the lowest priority (it earns the slowest)
        chosen = max(due, key=lambda p: (credits[p], PRIORITIES.index(p))) if due else ready[0]
        if chosen is not ready[0]:
            credits[chosen] -= 1.0
        taken[chosen] += 1
        left[chosen] -= 1
    return {p: n for p, n in taken.items() if n}


def plan(
    snapshot: FlowSnapshot,
    limits: Mapping[str, SiteLimits],
    credits: MutableMapping[str, Credits],
) -> dict[Lane, int]:
    """How many to take from each lane of ``snapshot`` (sites without ``limits`` get none).
    ``credits``: per site, updated."""
    by_site: dict[str, dict[Priority, Lane]] = {}
    for lane in snapshot.due:
        by_site.setdefault(lane.site_id, {})[lane.priority] = lane
    counts: dict[Lane, int] = {}
    for site, lanes in by_site.items():
        site_limits = limits.get(site)
        if site_limits is None:
            continue
        waiting = {p: snapshot.due[lane] for p, lane in lanes.items()}
        budget = room(snapshot, site, site_limits)
        shares = split(budget, waiting, credits.setdefault(site, {}))
        counts.update({lanes[p]: n for p, n in shares.items()})
    return counts
