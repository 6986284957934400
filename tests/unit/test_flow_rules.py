"""The sweeper's flow decisions, pure: each site's room, the priorities' shares, the plan."""

from __future__ import annotations

import pytest

from pallycon.errors import InvalidRequest
from pallycon_store.flow import FlowSnapshot, Lane, Pause, Priority, parse_priority
from pallycon_worker.flow_rules import (
    SiteLimits,
    allowance,
    lookups,
    plan,
    room,
    split,
    task_size,
)

HIGH, NORMAL, BULK = Priority.HIGH, Priority.NORMAL, Priority.BULK


def lane(site: str, priority: Priority) -> Lane:
    return Lane(site, priority, f"lane:{site}:{priority.value}")


def snap(
    due: dict[Lane, int] | None = None,
    dispatched: dict[str, int] | None = None,
    in_flight: dict[str, int] | None = None,
    pauses: dict[str, Pause] | None = None,
) -> FlowSnapshot:
    return FlowSnapshot(0.0, due or {}, dispatched or {}, in_flight or {}, pauses or {})


@pytest.mark.parametrize(
    ("rate", "expected_allowance", "expected_task"),
    [(20.0, 10, 10), (0.5, 1, 1), (1000.0, 500, 50), (3.0, 2, 2)],
)
def test_a_site_keeps_half_a_second_of_its_rate_dispatched(rate, expected_allowance, expected_task):
    """The allowance is half a second of the site's rate (at least one request); a task
    carries half a second of it too, at most SUBMIT_CHUNK."""
    assert allowance(rate) == expected_allowance
    assert task_size(rate) == expected_task


@pytest.mark.parametrize(
    ("state", "limits", "expected"),
    [
        (snap(), SiteLimits(40.0), 20),  # nothing dispatched: half a second's worth
        (snap(dispatched={"a": 15}), SiteLimits(40.0), 5),
        (snap(dispatched={"a": 30}), SiteLimits(40.0), 0),  # never negative
        (snap(in_flight={"a": 7}), SiteLimits(40.0, cap=10), 3),  # the cap's places left
        (snap(in_flight={"a": 7}, dispatched={"a": 2}), SiteLimits(40.0, cap=10), 1),
        (snap(in_flight={"a": 10}), SiteLimits(40.0, cap=10), 0),  # at its cap
        (snap(in_flight={"a": 99}), SiteLimits(40.0, cap=0), 20),  # 0: no cap
        (snap(pauses={"a": Pause("a", "", 0.0)}), SiteLimits(40.0), 0),  # paused
        (snap(pauses={"*": Pause("*", "", 0.0)}), SiteLimits(40.0), 0),  # every site paused
        (snap(pauses={"b": Pause("b", "", 0.0)}), SiteLimits(40.0), 20),  # another paused
    ],
)
def test_room_is_the_rate_allowance_the_cap_and_the_pause(state, limits, expected):
    """What one site may have dispatched more: bounded by its rate's allowance, by the places
    its cap leaves (in flight and dispatched count), none while it or every site is paused."""
    assert room(state, "a", limits) == expected


@pytest.mark.parametrize(
    ("state", "limits", "expected"),
    [
        (snap(in_flight={"a": 10}), {"a": SiteLimits(40.0, cap=10)}, {"a": 20}),  # cap full
        (snap(dispatched={"a": 15}), {"a": SiteLimits(40.0, cap=10)}, {"a": 5}),  # the rate
        (snap(dispatched={"a": 30}), {"a": SiteLimits(40.0, cap=10)}, {"a": 0}),
        (snap(), {"a": SiteLimits(40.0)}, {}),  # no cap: taken in turn, within the room
        (snap(pauses={"a": Pause("a", "", 0.0)}), {"a": SiteLimits(40.0, cap=5)}, {}),
        (snap(pauses={"*": Pause("*", "", 0.0)}), {"a": SiteLimits(40.0, cap=5)}, {}),
        (
            snap(pauses={"b": Pause("b", "", 0.0)}),
            {"a": SiteLimits(4.0, cap=5), "b": SiteLimits(4.0, cap=5)},
            {"a": 2},
        ),
    ],
)
def test_lookups_of_a_capped_site_ignore_its_cap_but_not_its_rate_or_a_pause(
    state, limits, expected
):
    """A capped site's due lookups (requests in flight whose worker died) hold their places
    already: the cap does not hold them back, its rate's allowance does, and a pause does."""
    assert lookups(state, limits) == expected


@pytest.mark.parametrize(
    ("budget", "waiting", "expected"),
    [
        (10, {HIGH: 100}, {HIGH: 10}),
        (10, {BULK: 100}, {BULK: 10}),  # alone, bulk takes everything
        (10, {HIGH: 3, BULK: 100}, {HIGH: 3, BULK: 7}),  # high first, the rest to bulk
        (10, {HIGH: 100, BULK: 100}, {HIGH: 9, BULK: 1}),  # bulk's 10 %
        (10, {NORMAL: 100, BULK: 100}, {NORMAL: 9, BULK: 1}),
        (0, {HIGH: 5}, {}),
        (10, {}, {}),
    ],
)
def test_the_highest_priority_goes_first_and_lower_ones_keep_their_share(budget, waiting, expected):
    """Places go to the highest priority waiting, except that normal keeps 20 % and bulk
    10 % while they have requests waiting."""
    assert split(budget, waiting, {}) == expected


def test_with_all_three_waiting_the_shares_are_70_20_10():
    """High, normal and bulk all waiting: 70 %, 20 % and 10 % of the places (within one place
    over a thousand: two lower priorities due at once take turns)."""
    taken = split(1000, {HIGH: 5000, NORMAL: 5000, BULK: 5000}, {})
    assert taken[NORMAL] == pytest.approx(200, abs=1)
    assert taken[BULK] == pytest.approx(100, abs=1)
    assert sum(taken.values()) == 1000


def test_a_share_builds_up_over_small_budgets():
    """One place at a time (a cap freeing one place per finished job): bulk still gets one in
    ten, carried by its credits from sweep to sweep."""
    credits: dict[Priority, float] = {}
    taken = [split(1, {HIGH: 100, BULK: 100}, credits) for _ in range(30)]
    assert sum(t.get(BULK, 0) for t in taken) == 3
    assert sum(t.get(HIGH, 0) for t in taken) == 27


def test_credits_are_lost_when_nothing_waits():
    """A priority with nothing waiting keeps no credit: it cannot come back with a burst."""
    credits: dict[Priority, float] = {}
    split(9, {HIGH: 100, BULK: 100}, credits)
    assert credits[BULK] == pytest.approx(0.9)
    split(5, {HIGH: 100}, credits)
    assert credits[BULK] == 0.0


def test_each_site_is_planned_on_its_own():
    """Site a's backlog does not use site b's room: each gets its own, by its own rate, and a
    site without limits (not served here) gets none."""
    state = snap(
        due={lane("a", BULK): 10_000, lane("b", BULK): 20, lane("x", NORMAL): 5},
        dispatched={"a": 10},
    )
    limits = {"a": SiteLimits(20.0), "b": SiteLimits(20.0)}
    assert plan(state, limits, {}) == {lane("b", BULK): 10}


def test_a_plan_takes_high_first_within_a_site():
    """Within one site, the live request is taken before the backfill (bulk keeps a place)."""
    state = snap(due={lane("a", BULK): 500, lane("a", HIGH): 1})
    assert plan(state, {"a": SiteLimits(40.0)}, {}) == {lane("a", HIGH): 1, lane("a", BULK): 19}


@pytest.mark.parametrize(
    ("given", "expected"),
    [(None, NORMAL), ("", NORMAL), ("high", HIGH), (" BULK ", BULK), ("normal", NORMAL)],
)
def test_a_priority_is_read_leniently(given, expected):
    """None or "" is normal; case and spaces do not matter."""
    assert parse_priority(given) is expected


@pytest.mark.parametrize("given", ["urgent", 3, ["high"], "x" * 100])
def test_a_bad_priority_names_the_field(given):
    """Anything else is refused, naming the field and the choices."""
    with pytest.raises(InvalidRequest) as caught:
        parse_priority(given)
    (error,) = caught.value.errors
    assert error.field == "priority"
    assert "high, normal, bulk" in error.message
