"""The long-running processes: the Celery worker and the callback receiver.

Each command imports what it runs on when it runs, so that showing its help loads none of it.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import click

from pallycon_pack.errors import Failure


@click.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--concurrency", "-c", type=int, default=2, show_default=True, help="Worker processes."
)
@click.option("--loglevel", help="Log level (default: PALLYCON_LOG_LEVEL, INFO).")
@click.option(
    "--hostname",
    "-n",
    help="Celery node name (default: pallycon-<pid>@<host name>; %h, %n, %d as Celery's).",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED, metavar="[CELERY OPTIONS]...")
def worker(
    concurrency: int, loglevel: str | None, hostname: str | None, celery_args: tuple[str, ...]
) -> None:
    """Run a Celery worker: submits, polls, the sweeper and the stream intake.

    Run as many as you like, on as many machines: they share the work through Redis. Any other
    option (or anything after --) goes to Celery's worker as it is, e.g. --uid, --gid, -Q,
    --max-tasks-per-child, --autoscale: see celery worker --help.
    """
    from config import load_settings
    from store.connect import connect_redis
    from worker.logs import configure, log_start
    from worker.tasks import create_app

    settings = load_settings(log_level=loglevel)
    configure(settings.log_level)
    settings.credentials()
    settings.require_region()
    # Redis refusing our credentials is permanent: say so now, rather than retry for ever.
    connect_redis(settings.redis_url).ping()
    app = create_app(settings)
    node = hostname or f"pallycon-{os.getpid()}@{socket.gethostname()}"
    argv = celery_worker_argv(concurrency, settings.log_level, node, celery_args)
    log_start("worker", settings, celery=argv)
    code = _run_celery(app, argv)
    if code:  # Celery met an unrecoverable error (it has logged it): supervisors restart us
        raise Failure(f"the worker stopped on an unrecoverable error (exit {code})", code)


def celery_worker_argv(
    concurrency: int, loglevel: str, node: str, extra: tuple[str, ...] | list[str]
) -> list[str]:
    """Celery's command line for our worker: ours first, then ``extra`` as the user gave it
    (``--`` dropped), so that an option given again in ``extra`` wins (Celery keeps the last)."""
    passed = list(extra)
    if passed[:1] == ["--"]:
        passed = passed[1:]
    return [
        "worker",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        f"--hostname={node}",
        "--without-gossip",
        "--without-mingle",
        *passed,
    ]


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
@click.option("--access-log", is_flag=True, help="Log every HTTP request (a JSON line on stderr).")
def callbacks(host: str | None, port: int | None, access_log: bool) -> None:
    """Receive PallyCon's result callbacks at /callback/<PALLYCON_CALLBACK_TOKEN>."""
    from config import load_settings
    from pallycon_pack.servers import serve_callbacks

    settings = load_settings(callback_host=host, callback_port=port)
    token = settings.require_callback_token()

    def ready(url: str) -> None:
        click.echo(f"callback receiver listening on {url}/callback/<token>")

    serve_callbacks(settings, token, on_ready=ready, access_log=access_log)
