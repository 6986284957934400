"""The work of submit, status and results: the producer, its records and its events."""

from __future__ import annotations

import json
from typing import Any

import click
import redis

from pallycon.errors import InvalidRequest
from pallycon_config import load_settings
from pallycon_pack.cli.inputs import read_json
from pallycon_pack.cli.queue import batch
from pallycon_pack.errors import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    Failure,
)
from pallycon_pack.interrupts import finishing, on_interrupt
from pallycon_pack.present import render
from pallycon_pack.present.progress import batch_progress, follow_requests
from pallycon_pack.present.records import event_line, shown, state_text
from pallycon_producers.api import Producer, RequestConflict, SubmitUnconfirmed
from pallycon_store.admission import new_request_id
from pallycon_store.events import State
from pallycon_store.flow import DEFAULT_PRIORITY, Priority
from pallycon_store.record import Record

#: The priority of one request submitted (``submit FILE``) when ``--priority`` is not given.
ONE_PRIORITY = DEFAULT_PRIORITY.value
#: The priority of a batch's lines (``submit --batch``) when neither ``--priority`` nor the line
#: gives one: a backfill must not hold up live work unless told so.
BATCH_PRIORITY = Priority.BULK.value


def submit(
    file: Any,
    request_id: str | None,
    metadata_text: str | None,
    site_id: str | None,
    priority: str | None,
    batch_path: str | None,
    quiet: bool,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """``submit``: one request (FILE) or many (--batch); see its help. ``priority`` None: the
    default, :data:`ONE_PRIORITY` for one request, :data:`BATCH_PRIORITY` for a batch."""
    if batch_path is not None:
        if file is not None or request_id or metadata_text or site_id is not None or wait:
            raise Failure(
                "--batch takes no FILE, --request-id, --metadata, --site or --wait (they go in "
                "its lines; follow the ids with status or results)",
                EXIT_INVALID,
            )
        producer = Producer.from_settings(load_settings())
        _submit_batch(producer, batch_path, priority or BATCH_PRIORITY, quiet)
        return
    if file is None:
        raise Failure("give the request's FILE ('-': standard input), or --batch", EXIT_INVALID)
    metadata = _metadata(metadata_text)
    body = read_json(file)
    producer = Producer.from_settings(load_settings())
    after = producer.last_entry_id()
    started = producer.clock()
    request_id = request_id or new_request_id()  # named now: an interrupt can say which
    on_interrupt(
        f"interrupted: request {request_id} may be recorded; submitting it again with "
        f"--request-id {request_id} is safe"
    )
    request_id = _submit_one(
        producer, body, request_id, metadata, site_id, priority or ONE_PRIORITY
    )
    click.echo(request_id)
    on_interrupt(
        f"interrupted: request {request_id} goes on; see it with pallycon-pack status {request_id}"
    )
    record = producer.get(request_id)
    if record is not None and record.created_at < started:
        click.echo(
            f"request {request_id} was submitted before (nothing new enqueued); "
            f"it is {state_text(record)}",
            err=True,
        )
        after = "0-0" if not record.state.final else after
    if wait:
        _follow_one(producer, request_id, after, timeout, as_json)


def _metadata(text: str | None) -> Any:
    """--metadata, parsed: a one-line error naming it when it is not JSON."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Failure(f"--metadata: not JSON: {exc}", EXIT_INVALID) from None


def _submit_one(
    producer: Producer,
    body: Any,
    request_id: str | None,
    metadata: Any,
    site_id: str | None,
    priority: str,
) -> str:
    try:
        return producer.submit(
            body, request_id, metadata=metadata, site_id=site_id, priority=priority
        )
    except RequestConflict as exc:
        raise Failure(str(exc), EXIT_INVALID) from None
    except SubmitUnconfirmed as exc:  # maybe recorded: the id is what makes a retry safe
        click.echo(exc.request_ids[0])
        raise Failure(
            f"Redis did not confirm request {exc.request_ids[0]} ({exc.__cause__}); submit it "
            f"again with --request-id {exc.request_ids[0]}, which is safe (it may also go "
            "through on its own)",
            EXIT_UNAVAILABLE,
        ) from None


def _follow_one(
    producer: Producer, request_id: str, after: str, timeout: float, as_json: bool
) -> None:
    outcome = follow_requests(producer, [request_id], timeout, after=after, as_json=as_json)
    failure = wait_failure(request_id, outcome[request_id], timeout)
    if failure is not None:
        raise failure


def wait_failure(request_id: str, record: Record | None, timeout: float) -> Failure | None:
    """How ``submit --wait`` ends for ``record`` as the wait left it: None when it completed,
    else the one line and exit code (failed, ended otherwise, or still on its way)."""
    if record is None:
        return Failure(f"request {request_id} has no record (expired?)", EXIT_FAILED)
    if record.state is State.FAILED:  # the text starts with the state: "failed (...)"
        return Failure(f"request {request_id} {state_text(record)}", EXIT_FAILED)
    if record.state.final and record.state is not State.COMPLETED:  # cancelled, stopped
        return Failure(f"request {request_id} ended {state_text(record)}", EXIT_FAILED)
    if record.state is not State.COMPLETED:
        return Failure(
            f"request {request_id} timed out after {timeout:g} s of waiting; it is still "
            f"{state_text(record)} and goes on (follow it with status or results)",
            EXIT_TIMEOUT,
        )
    return None


def _submit_batch(producer: Producer, path: str, priority: str, quiet: bool) -> None:
    """Check every line of the file, then record them all, CHUNK at a time (``priority``: that
    of the lines that give none)."""
    on_interrupt(
        "interrupted while checking the file: nothing recorded; run the same command again"
    )
    try:
        checked = batch.check(producer, path, priority)
    except OSError as exc:
        raise Failure(f"--batch: cannot read {path}: {exc.strerror}", EXIT_INVALID) from None
    if checked.bad_lines:
        for error in checked.errors:
            click.echo(error, err=True)
        if checked.bad_lines > len(checked.errors):
            click.echo(f"... and {checked.bad_lines - len(checked.errors)} more", err=True)
        raise Failure(
            f"{checked.bad_lines} bad line(s) in {path}; nothing was recorded", EXIT_INVALID
        )
    recording = batch.Recording(path, checked.requests)
    on_interrupt(recording.interrupted)
    with batch_progress(checked.requests) as advance:
        try:
            for chunk in batch.chunks(path):
                recording.pending = chunk
                with finishing():  # a chunk is recorded or not: its outcome is known
                    ids = producer.submit_many(
                        [line.body for line in chunk],
                        [line.request_id for line in chunk],
                        metadata=[line.metadata for line in chunk],
                        site_ids=[line.site_id for line in chunk],
                        priorities=[line.priority_or(priority) for line in chunk],
                    )
                    recording.recorded(chunk)
                    if not quiet:
                        click.echo("\n".join(ids))
                    advance(len(ids))
        except (InvalidRequest, RequestConflict, ValueError) as exc:  # the file changed meanwhile
            raise _stopped(recording, exc, EXIT_INVALID) from None
        except (SubmitUnconfirmed, OSError, redis.RedisError) as exc:
            raise _stopped(recording, exc, EXIT_UNAVAILABLE) from None

    new = checked.requests - checked.existing
    click.echo(
        f"{checked.requests} requests from {path}: {new} new, {checked.existing} submitted "
        "before (nothing new enqueued for them)",
        err=True,
    )


def _stopped(recording: batch.Recording, exc: Exception, code: int) -> Failure:
    done, total, last_line = recording.done, recording.total, recording.last_line
    where = f"after {done} of {total} requests (through line {last_line})" if done else "at once"
    return Failure(
        f"stopped {where}: {exc}; running "
        "the same file again is safe for the lines with a request_id (those without get new ids)",
        code,
    )


def status(request_id: str, as_json: bool) -> None:
    """``status``: print a request's record; exit by its state."""
    producer = Producer.from_settings(load_settings())
    record = producer.get(request_id)
    if record is None:
        raise Failure(f"no request {request_id}", EXIT_NOT_FOUND)
    data = shown(record)
    if as_json:
        render.emit_json(data)
    else:
        data.setdefault("priority", ONE_PRIORITY)  # said, not left to be guessed
        for key in (
            "request_id",
            "state",
            "site_id",
            "priority",
            "job_id",
            "job_name",
            "content_id",
            "status",
            "status_meaning",
            "attempts",
            "error_stage",
            "error_code",
            "error_message",
            "output_path",
            "created_at",
            "updated_at",
            "finished_at",
        ):
            if data.get(key):
                click.echo(f"{key:15} {data[key]}")
        if data.get("metadata"):
            click.echo(f"{'metadata':15} {json.dumps(data['metadata'], ensure_ascii=False)}")
    if record.state.final and record.state is not State.COMPLETED:  # failed, cancelled, stopped
        click.get_current_context().exit(EXIT_FAILED)
    if not record.state.final:
        click.get_current_context().exit(EXIT_TIMEOUT)


def results(follow: bool, as_json: bool, after: str) -> None:
    """``results``: print the result channel's events, as they come with ``follow``."""
    producer = Producer.from_settings(load_settings())
    events = (
        producer.follow(after=after)
        if follow
        else iter(producer.events(after=after, count=100_000))
    )
    shown_to = [""]  # the last entry shown: where to read on from

    def resume() -> str:
        if not shown_to[0]:
            return "interrupted"
        again = " --follow" if follow else ""
        return (
            f"interrupted after entry {shown_to[0]}; read on with pallycon-pack "
            f"results{again} --from {shown_to[0]}"
        )

    on_interrupt(resume)
    for entry_id, event in events:
        if as_json:
            click.echo(json.dumps(event, ensure_ascii=False))
        else:
            click.echo(event_line(event))
        shown_to[0] = entry_id
