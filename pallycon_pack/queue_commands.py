"""Commands of the queue: submit, status, results, and the worker and callback processes.

Each command imports what it runs on (the settings, the producer, Redis, Celery) when it runs,
so that showing its help loads none of it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from pallycon_pack.errors import EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE, Failure
from pallycon_pack.inputs import read_json

if TYPE_CHECKING:
    from producers.api import Producer

DEFAULT_WAIT = 24 * 3600.0


@click.command()
@click.argument("file", type=click.File("rb"))
@click.option("--request-id", help="Your id for this request (default: a new UUID).")
@click.option(
    "--wait", is_flag=True, help="Show progress until it ends; exit 0 completed, 1 failed."
)
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_WAIT,
    show_default=True,
    help="With --wait: give up after this many seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="With --wait: print events as JSON lines.")
def submit(file: Any, request_id: str | None, wait: bool, timeout: float, as_json: bool) -> None:
    """Enqueue the packaging request in FILE ('-': stdin); print its request id.

    The request is validated first: an invalid one is refused (exit 2) and nothing is enqueued.
    """
    from config import load_settings
    from producers.api import Producer, RequestConflict, SubmitUnconfirmed

    producer = Producer.from_settings(load_settings())
    after = producer.last_entry_id()
    try:
        request_id = producer.submit(read_json(file), request_id)
    except RequestConflict as exc:
        raise Failure(str(exc), EXIT_INVALID) from None
    except SubmitUnconfirmed as exc:  # maybe recorded: the id is what makes a retry safe
        click.echo(exc.request_ids[0])
        raise Failure(
            f"Redis did not confirm request {exc.request_ids[0]} ({exc.__cause__}); submit it "
            f"again with --request-id {exc.request_ids[0]}, which is safe",
            EXIT_UNAVAILABLE,
        ) from None
    click.echo(request_id)
    if wait:
        _follow_one(producer, request_id, after, timeout, as_json)


def _follow_one(
    producer: Producer, request_id: str, after: str, timeout: float, as_json: bool
) -> None:
    from pallycon_pack.progress import follow_requests

    outcome = follow_requests(producer, [request_id], timeout, after=after, as_json=as_json)
    record = outcome[request_id]
    if record is None or record.state.value != "completed":
        reason = record.error_message if record else "no record"
        raise Failure(f"request {request_id} failed: {reason}", EXIT_FAILED)


@click.command()
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(request_id: str, as_json: bool) -> None:
    """Print a request's state: job id, last status, error."""
    from config import load_settings
    from pallycon_pack import render
    from producers.api import Producer

    producer = Producer.from_settings(load_settings())
    record = producer.get(request_id)
    if record is None:
        raise Failure(f"no request {request_id}", EXIT_FAILED)
    shown = record.public()
    if as_json:
        render.emit_json(shown)
        return
    for key in (
        "request_id",
        "state",
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
    ):
        if shown.get(key):
            click.echo(f"{key:15} {shown[key]}")


@click.command()
@click.option("--follow", is_flag=True, help="Keep printing new events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
@click.option(
    "--from",
    "after",
    default="0-0",
    show_default=True,
    help="Start after this stream entry id ('$': only new events).",
)
def results(follow: bool, as_json: bool, after: str) -> None:
    """Read the result channel: one event per change of every request."""
    from config import load_settings
    from producers.api import Producer

    producer = Producer.from_settings(load_settings())
    events = (
        producer.follow(after=after)
        if follow
        else iter(producer.events(after=after, count=100_000))
    )
    for _, event in events:
        if as_json:
            click.echo(json.dumps(event, ensure_ascii=False))
        else:
            click.echo(_line(event))


def _line(event: dict[str, Any]) -> str:
    details = {
        k: v
        for k, v in event.items()
        if k not in {"schema", "event_id", "type", "request_id", "ts"}
    }
    text = " ".join(f"{k}={v}" for k, v in details.items())
    return f"{event['ts']} {event['request_id']} {event['type']:9} {text}"
