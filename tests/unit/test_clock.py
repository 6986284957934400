"""One clock for schedules: a worker's now is corrected by Redis's TIME (pure parts)."""

from __future__ import annotations

import pytest

from pallycon_store.clock import ServerClock, offset_of, server_time


@pytest.mark.parametrize(
    ("server", "before", "after", "offset"),
    [
        (100.0, 100.0, 100.0, 0.0),
        (100.0, 3700.0, 3700.2, -3600.1),  # our clock an hour fast: taken back
        (100.5, 99.0, 100.0, 1.0),  # the answer taken as of the middle of the round trip
    ],
)
def test_the_offset_is_the_servers_clock_less_ours_mid_round_trip(server, before, after, offset):
    """How far Redis's clock is ahead of ours, its answer taken as of the round trip's middle."""
    assert offset_of(server, before, after) == pytest.approx(offset)


def test_a_time_reply_is_seconds_and_microseconds():
    """TIME answers [seconds, microseconds]."""
    assert server_time([1_700_000_000, 250_000]) == 1_700_000_000.25


def test_a_fast_clock_reads_the_servers_time_once_observed():
    """A clock an hour fast reads Redis's time after one observation, and keeps its pace."""
    local = [5000.0]
    clock = ServerClock(lambda: local[0])
    assert clock() == 5000.0
    clock.observe([1400, 0], 5000.0, 5000.0)
    assert clock() == 1400.0
    local[0] += 2.5
    assert clock() == 1402.5
