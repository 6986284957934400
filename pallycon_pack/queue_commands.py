"""Commands of the queue: submit, status, results, and the worker and callback processes.

Each command imports what it runs on (the settings, the producer, Redis, Celery) when it runs,
so that showing its help loads none of it.
"""

from __future__ import annotations

import json
import os
import socket
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


@click.command()
@click.option(
    "--concurrency", "-c", type=int, default=2, show_default=True, help="Worker processes."
)
@click.option("--loglevel", help="Log level (default: PALLYCON_LOG_LEVEL, INFO).")
def worker(concurrency: int, loglevel: str | None) -> None:
    """Run a Celery worker: submits, polls, the sweeper and the stream intake.

    Run as many as you like, on as many machines: they share the work through Redis.
    """
    from config import load_settings
    from store.connect import connect_redis
    from worker.tasks import create_app

    settings = load_settings(log_level=loglevel)
    loglevel = settings.log_level
    settings.credentials()
    settings.require_region()
    # Redis refusing our credentials is permanent: say so now, rather than retry for ever.
    connect_redis(settings.redis_url).ping()
    app = create_app(settings)
    node = f"pallycon-{os.getpid()}@{socket.gethostname()}"
    code = _run_celery(
        app,
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            f"--hostname={node}",
            "--without-gossip",
            "--without-mingle",
        ],
    )
    if code:  # Celery met an unrecoverable error (it has logged it): supervisors restart us
        raise Failure(f"the worker stopped on an unrecoverable error (exit {code})", code)


def _run_celery(app: Any, argv: list[str]) -> int:
    """Run Celery's command line for ``app``; its exit code.

    As ``Celery.start`` does, except that the exit code is kept (``start`` drops it, so that a
    worker that met an unrecoverable error would exit 0).
    """
    from celery.bin.celery import celery as celery_cli

    celery_cli.params[0].default = app
    try:
        code = celery_cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    finally:
        celery_cli.params[0].default = None
    return code if isinstance(code, int) else 0


@click.command()
@click.option("--host", help="Listen address (default: PALLYCON_CALLBACK_HOST).")
@click.option("--port", type=int, help="Port (default: PALLYCON_CALLBACK_PORT, 8700; 0 = any).")
def callbacks(host: str | None, port: int | None) -> None:
    """Receive PallyCon's result callbacks at /callback/<PALLYCON_CALLBACK_TOKEN>."""
    from config import load_settings
    from pallycon_pack.servers import serve_callbacks

    settings = load_settings(callback_host=host, callback_port=port)
    token = settings.require_callback_token()

    def ready(url: str) -> None:
        click.echo(f"callback receiver listening on {url}/callback/<token>")

    serve_callbacks(settings, token, on_ready=ready)
