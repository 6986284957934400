"""Each site's flow as the exporter and the console show it (pallycon_pack.web.flows): rows by
the readers' site names, pauses of one site and of every site, caps by the announced id; and
the exporter's flow families with their bounded labels."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from pallycon_config.site_ref import SiteBook
from pallycon_pack.web.console.views import flow_row
from pallycon_pack.web.exporter import flow_metrics
from pallycon_pack.web.flows import SiteFlow, site_flows, stored_sites
from pallycon_store.flow import EVERY_SITE, FlowSnapshot, Lane, Pause, Priority

NOW = 10_000.0
HIGH, NORMAL, BULK = Priority.HIGH, Priority.NORMAL, Priority.BULK
#: A default site with an id, and another site.
BOOK = SiteBook("MAIN", ("MAIN", "BRND"), served=True)
#: No default id (no PALLYCON_SITE_ID, none announced as default).
UNNAMED = SiteBook(None, (), served=True)


def lane(site: str, priority: Priority) -> Lane:
    return Lane(site, priority, f"lane:{site}:{priority.value}")


def snap(
    due: Mapping[Lane, int] | None = None,
    dispatched: Mapping[str, int] | None = None,
    in_flight: Mapping[str, int] | None = None,
    pauses: Mapping[str, Pause] | None = None,
) -> FlowSnapshot:
    return FlowSnapshot(NOW, due or {}, dispatched or {}, in_flight or {}, pauses or {})


def test_stored_sites_put_the_default_first():
    """The default site is read by its stored form "", the others by id."""
    assert stored_sites(BOOK) == ("", "BRND")
    assert stored_sites(UNNAMED) == ("",)


def row(flows: list[SiteFlow], site: str) -> SiteFlow:
    [found] = [f for f in flows if f.site == site]
    return found


@pytest.mark.parametrize(
    ("book", "flow", "caps", "site", "waiting", "in_flight", "dispatched", "cap"),
    [
        # Nothing stored: every known site still has a row, all zero
        (BOOK, snap(), {}, "MAIN", (0, 0, 0), 0, 0, 0),
        (BOOK, snap(), {}, "BRND", (0, 0, 0), 0, 0, 0),
        (UNNAMED, snap(), {}, "default", (0, 0, 0), 0, 0, 0),
        # The default site by its stored form, its cap by its announced id
        (
            BOOK,
            snap({lane("", HIGH): 2, lane("", BULK): 5}, {"": 1}, {"": 3}),
            {"MAIN": 4, "BRND": 0},
            "MAIN", (2, 0, 5), 3, 1, 4,
        ),
        # A lane that named the default site by its id counts as the default site's
        (
            BOOK,
            snap({lane("", NORMAL): 1, lane("MAIN", NORMAL): 2}, in_flight={"MAIN": 1, "": 2}),
            {},
            "MAIN", (0, 3, 0), 3, 0, 0,
        ),
        (BOOK, snap({lane("BRND", NORMAL): 7}), {"BRND": 9}, "BRND", (0, 7, 0), 0, 0, 9),
        # A site no worker announces, which a lane names, has a row of its own
        (BOOK, snap({lane("GONE", BULK): 1}), {}, "GONE", (0, 0, 1), 0, 0, 0),
    ],
)  # fmt: skip
def test_site_rows(
    book: SiteBook,
    flow: FlowSnapshot,
    caps: dict[str, int],
    site: str,
    waiting: tuple[int, int, int],
    in_flight: int,
    dispatched: int,
    cap: int,
):
    """Waiting by priority, in flight, dispatched and the cap of one site's row."""
    found = row(site_flows(flow, book, caps), site)
    assert tuple(found.waiting[p] for p in (HIGH, NORMAL, BULK)) == waiting
    assert (found.in_flight, found.dispatched, found.cap) == (in_flight, dispatched, cap)


def test_rows_are_the_default_site_first_then_the_others():
    """One row per site, named as readers name them; the default one first."""
    flows = site_flows(snap({lane("ZED", HIGH): 1}), BOOK, {"AAA": 2})
    assert [f.site for f in flows] == ["MAIN", "BRND", "AAA", "ZED"]


@pytest.mark.parametrize(
    ("pauses", "site", "reason", "since"),
    [
        ({}, "BRND", None, None),
        ({"BRND": Pause("BRND", "quota", NOW - 60)}, "BRND", "quota", NOW - 60),
        ({"BRND": Pause("BRND", "quota", NOW - 60)}, "MAIN", None, None),
        ({"": Pause("", "maintenance", NOW - 5)}, "MAIN", "maintenance", NOW - 5),
        # Every site's pause holds each site
        ({EVERY_SITE: Pause(EVERY_SITE, "all", NOW - 9)}, "MAIN", "all", NOW - 9),
        ({EVERY_SITE: Pause(EVERY_SITE, "all", NOW - 9)}, "BRND", "all", NOW - 9),
        # Its own pause is the one shown; paused since the earliest of those in force
        (
            {"BRND": Pause("BRND", "own", NOW - 5), EVERY_SITE: Pause(EVERY_SITE, "all", NOW - 50)},
            "BRND", "own", NOW - 50,
        ),
    ],
)  # fmt: skip
def test_pauses(pauses: dict[str, Pause], site: str, reason: str | None, since: float | None):
    """The pause that holds a site (its own first, else every site's) and since when."""
    found = row(site_flows(snap(pauses=pauses), BOOK, {}), site)
    assert (found.pause.reason if found.pause else None) == reason
    assert found.paused_since == since
    assert found.paused_seconds(NOW) == (NOW - since if since is not None else 0.0)


def test_every_sites_pause_is_no_row_of_its_own():
    """A pause of every site shows on each site, not as a site called "*"."""
    flows = site_flows(snap(pauses={EVERY_SITE: Pause(EVERY_SITE, "", NOW)}), BOOK, {})
    assert [f.site for f in flows] == ["MAIN", "BRND"]


def samples(flows: list[SiteFlow]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in flow_metrics(flows, NOW)
        for s in family.samples
    }


def test_the_exporters_flow_families():
    """Waiting by site and priority; in flight, dispatched, cap, paused (0/1) and how long,
    by site; every site's pause makes each site say paused."""
    flow = snap(
        {lane("", HIGH): 2, lane("BRND", BULK): 4},
        {"": 1},
        {"": 3},
        {EVERY_SITE: Pause(EVERY_SITE, "all", NOW - 7200), "BRND": Pause("BRND", "x", NOW - 60)},
    )
    found = samples(site_flows(flow, BOOK, {"MAIN": 5}))
    assert found[("pallycon_pack_waiting", (("priority", "high"), ("site", "MAIN")))] == 2
    assert found[("pallycon_pack_waiting", (("priority", "bulk"), ("site", "BRND")))] == 4
    assert found[("pallycon_pack_waiting", (("priority", "normal"), ("site", "BRND")))] == 0
    assert found[("pallycon_pack_in_flight", (("site", "MAIN"),))] == 3
    assert found[("pallycon_pack_dispatched", (("site", "MAIN"),))] == 1
    assert found[("pallycon_pack_max_in_flight", (("site", "MAIN"),))] == 5
    assert found[("pallycon_pack_max_in_flight", (("site", "BRND"),))] == 0
    assert found[("pallycon_pack_paused", (("site", "MAIN"),))] == 1
    assert found[("pallycon_pack_paused", (("site", "BRND"),))] == 1
    assert found[("pallycon_pack_paused_seconds", (("site", "BRND"),))] == 7200
    # Labels stay bounded: sites and the three priorities
    assert {dict(labels).get("priority") for (name, labels) in found if "priority" in dict(labels)} == {
        "high", "normal", "bulk",
    }  # fmt: skip
    assert len(found) == 2 * 3 + 2 * 5


def test_a_site_not_paused_says_0():
    """Not paused: paused 0 and paused_seconds 0, so an alert on either stays quiet."""
    found = samples(site_flows(snap(), BOOK, {}))
    assert found[("pallycon_pack_paused", (("site", "BRND"),))] == 0
    assert found[("pallycon_pack_paused_seconds", (("site", "BRND"),))] == 0


def test_the_consoles_row():
    """A paused site's row: its reason, since when, for how long, and whether every site's
    pause holds it; not paused: None."""
    flows = site_flows(
        snap({lane("BRND", NORMAL): 3}, pauses={"BRND": Pause("BRND", "quota", NOW - 90)}),
        BOOK,
        {"BRND": 2},
    )
    assert flow_row(row(flows, "BRND"), NOW) == {
        "site": "BRND",
        "waiting": {"high": 0, "normal": 3, "bulk": 0},
        "dispatched": 0,
        "in_flight": 0,
        "cap": 2,
        "paused": {"reason": "quota", "since": NOW - 90, "seconds": 90.0, "every_site": False},
    }
    assert flow_row(row(flows, "MAIN"), NOW)["paused"] is None
