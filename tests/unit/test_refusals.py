"""When a warning that may come thousands of times is logged (pure)."""

from __future__ import annotations

import pytest

from pallycon_pack.web.exporter import counter_metrics
from pallycon_pack.web.refusals import Reason, Sparing


@pytest.mark.parametrize(
    ("times", "logged"),
    [
        ([0], [(0, (0, 0.0))]),  # the first at once
        ([0, 1, 2, 59], [(0, (0, 0.0))]),  # then held back within the minute
        ([0, 1, 2, 60], [(0, (0, 0.0)), (60, (2, 1.0))]),  # a minute on: with the two held
        ([0, 61, 62, 200], [(0, (0, 0.0)), (61, (0, 0.0)), (200, (1, 62.0))]),
    ],
)
def test_a_warning_is_logged_once_a_minute_with_the_count_held_back(times, logged):
    """note(): the first warning, then one per minute naming how many were held since when."""
    sparing = Sparing(60.0)
    said = [(now, held) for now in times if (held := sparing.note(now)) is not None]
    assert said == logged


@pytest.mark.parametrize(
    ("notes", "now", "due", "held_after"),
    [
        ([0], 100, None, 0),  # nothing held back: no line
        ([0, 5, 6], 30, None, 2),  # held, not yet a minute since the last line
        ([0, 5, 6], 60, (2, 5.0), 0),  # a minute on: the summary, once
    ],
)
def test_warnings_held_back_are_summed_up_once_due(notes, now, due, held_after):
    """due(): the held-back warnings' count and start, once a minute has passed; then none."""
    sparing = Sparing(60.0)
    for at in notes:
        sparing.note(at)
    assert sparing.due(now) == due
    assert sparing.held == held_after
    assert sparing.due(now) is None


def test_refusals_are_a_counter_by_reason():
    """pallycon_pack_callbacks_refused_total{reason}: every reason, from the counters hash."""
    raw = {Reason.WRONG_TOKEN.value.value: "10000", Reason.TOO_LARGE.value.value: "2"}
    (family,) = [m for m in counter_metrics(raw) if m.name == "pallycon_pack_callbacks_refused"]
    samples = {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert samples == {"wrong_token": 10000, "too_large": 2, "too_slow": 0, "not_a_callback": 0}
