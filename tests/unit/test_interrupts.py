"""What Ctrl-C says and when it lands: the batch's line by how far it got, the step that
finishes before the interrupt, and the interrupt raised inside a model's serializer."""

from __future__ import annotations

import os
import signal

import pytest

from pallycon.models import DashOption, JobRegisterRequest, api_dict
from pallycon_pack.cli.queue.batch import Recording
from pallycon_pack.interrupts import finishing
from pallycon_producers.lines import Line
from support.samples import job_body


def _lines(first: int, last: int, *, named: bool = True) -> list[Line]:
    return [Line(n, {}, f"r-{n}" if named else None, None) for n in range(first, last + 1)]


SAFE = "run the same command again to record the rest"


@pytest.mark.parametrize(
    ("chunks", "pending", "expected"),
    [
        ([], [], f"interrupted: 0 of 9 recorded; {SAFE}"),
        ([_lines(1, 3), _lines(4, 6)], [], f"interrupted: 6 of 9 recorded; {SAFE}"),
        ([_lines(1, 3)], _lines(4, 6), f"interrupted: 3 of 9 recorded (lines 4-6 maybe); {SAFE}"),
        # Lines without an id later in the file: running it all again is still safe.
        ([_lines(1, 3)], [], f"interrupted: 3 of 9 recorded; {SAFE}"),
        (
            [_lines(1, 3, named=False)],
            [],
            "interrupted: 3 of 9 recorded; submit only the lines after line 3 (tail -n +4 "
            "b.jsonl > rest.jsonl, then --batch rest.jsonl): 3 recorded line(s) have no request_id and would be recorded again",
        ),
        (
            [_lines(1, 3)],
            _lines(4, 6, named=False),
            "interrupted: 3 of 9 recorded (lines 4-6 maybe); submit only the lines after line 3 "
            "(tail -n +4 b.jsonl > rest.jsonl, then --batch rest.jsonl): 3 recorded line(s) have no request_id and would be recorded "
            "again",
        ),
    ],
)
def test_an_interrupted_batch_says_how_far_it_got_and_how_to_resume(chunks, pending, expected):
    """The count recorded, the lines maybe recorded, and running the file again only while no
    line recorded (or maybe recorded) lacks a request_id; else where to resume from."""
    recording = Recording("b.jsonl", 9)
    for chunk in chunks:
        recording.recorded(chunk)
    recording.pending = pending
    assert recording.interrupted() == expected


def _step(interrupts: int, done: list[str]) -> None:
    """A finishing block interrupted ``interrupts`` times, then noting that it went on."""
    with finishing():
        for _ in range(interrupts):
            os.kill(os.getpid(), signal.SIGINT)
        done.append("went on")


def test_a_finishing_step_runs_to_its_end_then_the_interrupt_is_raised():
    """One Ctrl-C in a finishing block: the block goes on to its end, then KeyboardInterrupt;
    the handler before it is back."""
    before = signal.getsignal(signal.SIGINT)
    done: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        _step(1, done)
    assert done == ["went on"]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_second_interrupt_stops_a_finishing_step_at_once():
    """A second Ctrl-C in a finishing block stops it where it is."""
    done: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        _step(2, done)
    assert done == []


class _CtrlC(float):
    """A number whose reading is interrupted, as Ctrl-C interrupts whatever runs."""

    def is_integer(self) -> bool:
        raise KeyboardInterrupt


def test_an_interrupt_in_a_serializer_comes_out_as_itself():
    """pydantic-core wraps a KeyboardInterrupt raised in a field serializer (DashOption's
    min_buffer_time) in a PydanticSerializationError: api_dict raises the interrupt."""
    body = JobRegisterRequest.model_validate(job_body())
    dash = DashOption.model_construct(min_buffer_time=_CtrlC(2.0))
    with pytest.raises(KeyboardInterrupt):
        api_dict(body.model_copy(update={"dash_option": dash}))
