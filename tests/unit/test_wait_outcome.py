"""How ``submit --wait`` ends, as a table: the record the wait left -> the line and exit code."""

from __future__ import annotations

import pytest

from pallycon_pack.cli.queue.run import wait_failure
from pallycon_store.events import State
from pallycon_store.record import Record


@pytest.mark.parametrize(
    ("record", "line", "code"),
    [
        (Record("r", State.COMPLETED, 5, job_id="7"), None, 0),
        (None, "request r has no record (expired?)", 1),
        (
            Record("r", State.FAILED, 4, error_code="A1003", error_message="bad storage"),
            "request r failed (",
            1,
        ),
        (
            Record("r", State.CANCELLED, 3, error_message="cancelled before it was registered"),
            "request r ended cancelled (cancelled before it was registered)",
            1,
        ),
        (
            Record("r", State.ACCEPTED, 1),
            "request r timed out after 2.5 s of waiting; it is still accepted and goes on",
            4,
        ),
    ],
)
def test_how_a_wait_ends(record: Record | None, line: str | None, code: int):
    """Completed is no failure; failed says "failed" once, then why; cancelled or stopped
    "ended"; still on its way, the wait timed out (exit 4) and it goes on."""
    failure = wait_failure("r", record, 2.5)
    if line is None:
        assert failure is None
        return
    assert failure is not None
    assert failure.message.startswith(line), failure.message
    assert failure.message.count("failed") <= 1
    assert failure.exit_code == code
