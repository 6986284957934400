"""Following requests on the result channel: live progress bars on a terminal, otherwise one
plain line per change (or JSON lines); and the progress of a batch being recorded."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator

import click
import redis
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from pallycon.codes import status_sequence
from pallycon_pack.present import render
from pallycon_pack.present.records import event_line
from pallycon_producers.api import Event, Producer
from pallycon_store.events import EventType, State
from pallycon_store.record import Record


class _Bars:
    """One bar per request: the steps of its status sequence."""

    def __init__(self, progress: Progress, producer: Producer, request_ids: list[str]) -> None:
        self.progress = progress
        self.bars: dict[str, TaskID] = {}
        self.sequences: dict[str, tuple[str, ...]] = {}
        try:
            records = producer.records.get_many(request_ids)
        except (redis.ConnectionError, redis.TimeoutError):
            records = {}  # Redis is restarting: the events will move the bars
        for request_id in request_ids:
            record = records.get(request_id)
            drm = bool(record and "drm" in record.body)
            self.sequences[request_id] = status_sequence(drm)
            total = len(self.sequences[request_id]) + 1  # + "submitted"
            state = record.state.value if record else "unknown"
            completed = 0
            if record is not None:
                completed = {State.COMPLETED: total, State.SUBMITTED: 1}.get(record.state, 0)
            self.bars[request_id] = progress.add_task(
                request_id[:24], total=total, completed=completed, status=state
            )

    def show(self, event: Event) -> None:
        bar = self.bars[event["request_id"]]
        sequence = self.sequences[event["request_id"]]
        kind = event["type"]
        if kind == EventType.SUBMITTED:
            self.progress.update(bar, completed=1, status=f"submitted job {event['job_id']}")
        elif kind == EventType.PROGRESS:
            step = sequence.index(event["status"]) + 1 if event["status"] in sequence else 1
            status = f"{event['status']} {event.get('meaning', '')}"
            self.progress.update(bar, completed=step, status=status)
        elif kind == EventType.COMPLETED:
            self.progress.update(bar, completed=len(sequence) + 1, status="completed")
        elif kind == EventType.FAILED:
            self.progress.update(bar, status=f"FAILED {event.get('code', '')}")
        elif kind == EventType.CANCELLED:
            self.progress.update(bar, status="CANCELLED")
        elif kind == EventType.STOPPED:
            self.progress.update(bar, status=f"STOPPED at PallyCon {event.get('status', '')}")


#: The events that end a request's history (until an operator re-drives it).
FINAL_EVENTS = frozenset(
    {EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED, EventType.STOPPED}
)

#: How long a follower waits out an unreachable Redis (seconds) before it gives up.
REDIS_PATIENCE = 120.0


def follow_requests(
    producer: Producer,
    request_ids: list[str],
    timeout: float,
    *,
    after: str = "0-0",
    as_json: bool = False,
    watch: Callable[[], None] | None = None,
) -> dict[str, Record | None]:
    """Show each request's events from ``after`` until all have ended or ``timeout`` passed;
    their records then. Bars on a terminal; elsewhere (or ``as_json``) one line per event, as
    it comes. ``watch`` is called between reads: it raises to stop following (e.g. when a
    process the requests need has ended)."""
    wanted = set(request_ids)
    done: set[str] = set()
    deadline = time.monotonic() + timeout
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"))
    shown = render.console()
    mode = "json" if as_json else "bars" if shown.is_terminal else "lines"
    with Progress(*columns, console=shown, disable=mode != "bars") as progress:
        bars = _Bars(progress, producer, request_ids)
        cursor = after
        shown_end: set[str] = set()  # requests whose final event was shown
        down_since: float | None = None
        while done != wanted and time.monotonic() < deadline:
            if watch is not None:
                watch()
            try:
                cursor = _show_new(producer, cursor, wanted, shown_end, bars, mode)
                done |= shown_end | _finished_by_record(producer, wanted - done)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # Redis is restarting: the stream and records are durable. Say so, and give up
                # (one line, exit 3) if it stays away.
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                    click.echo(f"Redis unreachable ({exc}); still waiting", err=True)
                elif now - down_since > REDIS_PATIENCE:
                    raise
                time.sleep(0.5)
                continue
            if down_since is not None:
                down_since = None
                click.echo("Redis is back", err=True)
        if done - shown_end:  # ended by its record, its final event not read yet: show it
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                _show_new(producer, cursor, wanted, shown_end, bars, mode)
    return {request_id: producer.get(request_id) for request_id in request_ids}


def _show_new(
    producer: Producer, cursor: str, wanted: set[str], done: set[str], bars: _Bars, mode: str
) -> str:
    for entry_id, event in producer.events(after=cursor, block_ms=500):
        cursor = entry_id
        if event["request_id"] not in wanted or event["type"] == EventType.REJECTED:
            continue  # a rejected event is an intake entry's, not part of the request's history
        if mode == "json":
            click.echo(json.dumps(event, ensure_ascii=False))
        elif mode == "lines":
            click.echo(event_line(event))
        else:
            bars.show(event)
        if event["type"] in FINAL_EVENTS:
            done.add(event["request_id"])
    return cursor


def _finished_by_record(producer: Producer, pending: set[str]) -> set[str]:
    """Requests whose records say they ended (should their events have been trimmed)."""
    records = producer.records.get_many(sorted(pending))
    return {rid for rid, record in records.items() if record.state.final}


@contextlib.contextmanager
def batch_progress(total: int) -> Iterator[Callable[[int], None]]:
    """Progress of ``total`` requests being recorded, on standard error: a bar on a terminal,
    otherwise a line per step. Yields the function to call with each step's count."""
    if not sys.stderr.isatty():
        done = 0

        def line(count: int) -> None:
            nonlocal done
            done += count
            click.echo(f"recorded {done} of {total}", err=True)

        yield line
        return
    columns = (
        TextColumn("recording"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
    )
    # Ids printed on a terminal go above the bar; printed to a file or a pipe, never into it.
    with Progress(
        *columns,
        console=Console(stderr=True),
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=False,
    ) as progress:
        task = progress.add_task("recording", total=total)
        yield lambda count: progress.advance(task, count)
