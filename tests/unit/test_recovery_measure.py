"""The recovery figures' measure (support.recovery): delays against a run without the fault."""

from __future__ import annotations

import pytest

from support.recovery import Delay, delays, spread, summary


@pytest.mark.parametrize(
    ("accepted", "ended", "base", "fault_end", "want"),
    [
        # ended as early as without the fault: no delay; it was open at the fault's end
        (0.0, 10.0, 10.0, 5.0, Delay(0, 0.0, 0.0)),
        # ended before the fault did: an extra delay, no tail after the fault
        (0.0, 4.0, 3.0, 5.0, Delay(0, 1.0, None)),
        # would have ended at 10 anyway, the fault ended at 5: the tail counts from 10
        (0.0, 14.0, 10.0, 5.0, Delay(0, 4.0, 4.0)),
        # would have ended at 3, the fault ended at 20: the tail counts from 20
        (0.0, 50.0, 3.0, 20.0, Delay(0, 47.0, 30.0)),
        # faster than the baseline: no negative delay
        (1.0, 9.0, 10.0, 5.0, Delay(0, 0.0, 0.0)),
    ],
)
def test_delay_is_beyond_the_requests_own_time_and_the_faults_end(
    accepted, ended, base, fault_end, want
):
    """Extra delay is latency past the baseline's; the tail counts from the later of the fault's
    end and the request's own end, only for requests open when the fault ended."""
    assert delays([accepted], [ended], [base], fault_end) == [want]


def test_summary_counts_tails_past_the_goal():
    """The summary spreads both delays and counts tails past the goal."""
    found = [Delay(0, 1.0, None), Delay(1, 40.0, 35.0), Delay(2, 2.0, 2.0)]
    assert summary(found, 30.0) == {
        "extra_delay_s": {"p50": 2.0, "p99": 40.0, "max": 40.0},
        "open_at_fault_end": 2,
        "tail_after_fault_s": {"p50": 35.0, "p99": 35.0, "max": 35.0},
        "tail_over_30s": 1,
    }
    assert spread([]) == {"p50": 0.0, "p99": 0.0, "max": 0.0}
