"""The callback receiver's poll batches: the polls claimed within a window, or up to a size,
go out as one poll task; a failed send is logged, never raised; closing sends what is open."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

import pytest
from kombu.exceptions import OperationalError

from pallycon_pack.web import poll_batches
from pallycon_pack.web.poll_batches import PollBatches

#: Long enough that no batch in these tests is sent by its window unless the test waits for it.
NEVER = 60.0


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=30))


def test_ids_added_within_the_window_go_out_as_one_task() -> None:
    """Three callbacks in one window: one publish with the three ids, in their order."""
    sent: list[list[str]] = []

    async def scenario() -> None:
        batches = PollBatches(sent.append, lease_seconds=30, window=0.2)
        done = [batches.add(rid) for rid in ("a", "b", "c")]
        await asyncio.gather(*done)
        assert batches.unsent == 0
        await batches.close(5)

    _run(scenario)
    assert sent == [["a", "b", "c"]]


@pytest.mark.parametrize(
    ("added", "most", "expected"),
    [
        (3, 3, [["0", "1", "2"]]),
        (4, 3, [["0", "1", "2"], ["3"]]),
        (7, 3, [["0", "1", "2"], ["3", "4", "5"], ["6"]]),
        (1, 1, [["0"]]),
    ],
)
def test_a_full_batch_goes_out_without_waiting_for_its_window(
    added: int, most: int, expected: list[list[str]]
) -> None:
    """A batch that reaches ``most`` ids is sent at once; the rest wait for their window (here
    sent by closing)."""
    sent: list[list[str]] = []

    async def scenario() -> None:
        batches = PollBatches(sent.append, lease_seconds=30, window=NEVER, most=most)
        done = [batches.add(str(n)) for n in range(added)]
        full = added - added % most
        await asyncio.gather(*done[:full])  # the full batches went out before the window
        assert sent == expected[: full // most]
        await batches.close(5)

    _run(scenario)
    assert sent == expected


def test_callbacks_of_separate_windows_are_separate_tasks() -> None:
    """A callback after a batch went out opens a new batch."""
    sent: list[list[str]] = []

    async def scenario() -> None:
        batches = PollBatches(sent.append, lease_seconds=30, window=0.01)
        await batches.add("a")
        await batches.add("b")
        await batches.close(5)

    _run(scenario)
    assert sent == [["a"], ["b"]]


def test_a_failed_send_is_logged_and_lets_its_callbacks_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker away: one warning naming how many polls wait for the lease; the callbacks'
    futures end without an error."""

    def fail(_: list[str]) -> None:
        raise OperationalError("broker away")

    async def scenario() -> None:
        batches = PollBatches(fail, lease_seconds=30, window=0.01)
        results = await asyncio.gather(batches.add("a"), batches.add("b"))
        assert list(results) == [None, None]
        assert batches.unsent == 0
        await batches.close(5)

    with caplog.at_level(logging.WARNING, logger="pallycon_pack.callbacks"):
        _run(scenario)
    assert [r.getMessage() for r in caplog.records] == [
        "poll task of 2 callback(s) not sent (broker away); their polls come back after the "
        "lease (30 s)"
    ]


def test_closing_sends_the_open_batch() -> None:
    """A receiver that stops sends the polls it claimed, not leaving them to the lease."""
    sent: list[list[str]] = []

    async def scenario() -> None:
        batches = PollBatches(sent.append, lease_seconds=30, window=NEVER)
        batches.add("a")
        batches.add("b")
        await batches.close(5)

    _run(scenario)
    assert sent == [["a", "b"]]


def test_a_broker_that_falls_behind_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids not sent pile up while a send blocks: past MAX_UNSENT the batches say so (the
    receiver's callbacks then wait for their batch)."""
    monkeypatch.setattr(poll_batches, "MAX_UNSENT", 4)
    release = threading.Event()

    def blocked(_: list[str]) -> None:
        release.wait(10)

    async def scenario() -> None:
        batches = PollBatches(blocked, lease_seconds=30, window=NEVER, most=2)
        states = []
        for n in range(6):
            batches.add(str(n))
            states.append(batches.behind)
        release.set()
        await batches.close(5)
        assert (batches.unsent, batches.behind) == (0, False)
        assert states == [False, False, False, False, True, True]

    _run(scenario)
