"""Following requests on the result channel, with live progress bars (or JSON lines)."""

from __future__ import annotations

import json
import time

import click
import redis
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from pallycon.codes import status_sequence
from pallycon_pack import render
from producers.api import Event, Producer
from store.record import Record


class _Bars:
    """One bar per request: the steps of its status sequence."""

    def __init__(self, progress: Progress, producer: Producer, request_ids: list[str]) -> None:
        self.progress = progress
        self.bars: dict[str, TaskID] = {}
        self.sequences: dict[str, tuple[str, ...]] = {}
        for request_id in request_ids:
            record = producer.get(request_id)
            drm = bool(record and "drm" in record.body)
            self.sequences[request_id] = status_sequence(drm)
            total = len(self.sequences[request_id]) + 1  # + "submitted"
            self.bars[request_id] = progress.add_task(request_id[:24], total=total, status="queued")

    def show(self, event: Event) -> None:
        bar = self.bars[event["request_id"]]
        sequence = self.sequences[event["request_id"]]
        kind = event["type"]
        if kind == "submitted":
            self.progress.update(bar, completed=1, status=f"submitted job {event['job_id']}")
        elif kind == "progress":
            step = sequence.index(event["status"]) + 1 if event["status"] in sequence else 1
            status = f"{event['status']} {event.get('meaning', '')}"
            self.progress.update(bar, completed=step, status=status)
        elif kind == "completed":
            self.progress.update(bar, completed=len(sequence) + 1, status="completed")
        elif kind == "failed":
            self.progress.update(bar, status=f"FAILED {event.get('code', '')}")


def follow_requests(
    producer: Producer,
    request_ids: list[str],
    timeout: float,
    *,
    after: str = "0-0",
    as_json: bool = False,
) -> dict[str, Record | None]:
    """Show each request's events from ``after`` until all have ended; their final records."""
    wanted = set(request_ids)
    done: set[str] = set()
    deadline = time.monotonic() + timeout
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=render.console(), disable=as_json) as progress:
        bars = _Bars(progress, producer, request_ids)
        cursor = after
        while done != wanted and time.monotonic() < deadline:
            try:
                cursor = _show_new(producer, cursor, wanted, done, bars, as_json)
                done |= _finished_by_record(producer, wanted - done)
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.5)  # Redis is restarting: the stream and records are durable
    return {request_id: producer.get(request_id) for request_id in request_ids}


def _show_new(
    producer: Producer, cursor: str, wanted: set[str], done: set[str], bars: _Bars, as_json: bool
) -> str:
    for entry_id, event in producer.events(after=cursor, block_ms=500):
        cursor = entry_id
        if event["request_id"] not in wanted or event["type"] == "rejected":
            continue  # a rejected event is an intake entry's, not part of the request's history
        if as_json:
            click.echo(json.dumps(event, ensure_ascii=False))
        else:
            bars.show(event)
        if event["type"] in ("completed", "failed"):
            done.add(event["request_id"])
    return cursor


def _finished_by_record(producer: Producer, pending: set[str]) -> set[str]:
    """Requests whose records say they ended (should their events have been trimmed)."""
    records = producer.records.get_many(sorted(pending))
    return {rid for rid, record in records.items() if record.state.final}
