"""The long-running processes: the Celery worker and the callback receiver.

Each command imports what it runs on when it runs, so that showing its help loads none of it.
"""

from __future__ import annotations

import os
import signal
import socket
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from pallycon_pack.errors import EXIT_INVALID, Failure

if TYPE_CHECKING:
    from pydantic import SecretStr


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
    signal.signal(signal.SIGTERM, _stop_while_starting)  # Celery's own handler replaces it
    from pallycon_config import load_settings
    from pallycon_config.logs import configure, log_start
    from pallycon_config.show import mask_text
    from pallycon_store.connect import connect_redis
    from pallycon_worker.tasks import create_app

    settings = load_settings(log_level=loglevel)
    node = hostname or f"pallycon-{os.getpid()}@{socket.gethostname()}"
    argv = celery_worker_argv(concurrency, settings.log_level, node, celery_args)
    configure(settings.log_level)
    if settings.sites_path is None:  # one site: its settings' own messages
        settings.credentials()
        settings.require_region()
    sites = settings.sites()  # every site valid (a sites file's errors name the site and field)
    _wait_for_redis(connect_redis(settings.redis), settings.redis_startup_wait)
    app = create_app(settings)
    log_start("worker", settings, celery=[mask_text(arg) for arg in argv], sites=sites.ids())
    code = _run_celery(app, argv)
    if code:  # Celery met an unrecoverable error (it has logged it): supervisors restart us
        raise Failure(f"the worker stopped on an unrecoverable error (exit {code})", code)


def _wait_for_redis(client: Any, patience: float) -> None:
    """Return once Redis answers. Unreachable: one warning line, then retries with backoff for
    ``patience`` seconds. Refused credentials are permanent: raised at once, not retried."""
    import logging
    import time

    import redis
    from pallycon_store.connect import describe, login_refused

    deadline, pause, warned = time.monotonic() + patience, 0.25, False
    while True:
        try:
            client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if login_refused(exc) or time.monotonic() >= deadline:  # the sentinels' too
                raise
            if not warned:
                logging.getLogger("pallycon_pack.worker").warning(
                    "Redis unreachable (%s); waiting up to %gs", describe(exc), patience
                )
                warned = True
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
            continue
        if warned:
            logging.getLogger("pallycon_pack.worker").info("Redis is back; starting")
        return


def _stop_while_starting(signum: int, frame: FrameType | None) -> None:
    """SIGTERM before Celery has installed its warm-shutdown handler (it does so before its
    pool starts): nothing has been taken from the queues yet, so stop at once, exit 0.

    Without a handler, a container's PID 1 never sees SIGTERM (the kernel drops it): a worker
    stopped in its first seconds would start, take tasks, and be SIGKILLed mid-batch when the
    grace period ends.
    """
    os.write(2, b"worker: stopped by SIGTERM while starting\n")  # safe in a signal handler
    raise SystemExit(0)


def celery_worker_argv(
    concurrency: int, loglevel: str, node: str, extra: tuple[str, ...] | list[str]
) -> list[str]:
    """Celery's command line for our worker: ours first, then ``extra`` as the user gave it
    (``--`` dropped), so that an option given again in ``extra`` wins (Celery keeps the last)."""
    passed = list(extra)
    if passed[:1] == ["--"]:
        passed = passed[1:]
    _refuse_unsafe(passed)
    return [
        "worker",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        f"--hostname={node}",
        "--without-gossip",
        "--without-mingle",
        *passed,
    ]


#: Celery options the exactly-once story depends on, which the settings own: the time limits
#: (shares of PALLYCON_VISIBILITY_TIMEOUT: reconciliation waits out the hard one before it
#: registers again) and the pool
#: (only prefork enforces the hard limit, by killing the child).
_OWNED = {
    "--time-limit": "PALLYCON_VISIBILITY_TIMEOUT",
    "--soft-time-limit": "PALLYCON_VISIBILITY_TIMEOUT",
}


def _refuse_unsafe(passed: list[str]) -> None:
    """A Celery option that could let a registration outlive its reconciliation: one line."""
    for n, arg in enumerate(passed):
        name, _, value = arg.partition("=")
        if name in _OWNED:
            raise Failure(
                f"{name} is not passed to Celery: set {_OWNED[name]} (the worker's "
                "reconciliation counts on it)",
                EXIT_INVALID,
            )
        if name in ("-P", "--pool"):
            pool = value or (passed[n + 1] if n + 1 < len(passed) else "")
            if pool != "prefork":
                raise Failure(
                    f"--pool {pool or '?'}: only prefork enforces the task time limit that "
                    "reconciliation counts on",
                    EXIT_INVALID,
                )
        elif arg.startswith("-P") and arg[2:] and arg[2:] != "prefork":
            raise Failure(
                f"--pool {arg[2:]}: only prefork enforces the task time limit that "
                "reconciliation counts on",
                EXIT_INVALID,
            )


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
    """Receive PallyCon's result callbacks at /callback/<PALLYCON_CALLBACK_TOKEN>.

    Each other site of PALLYCON_SITES at /callback/<site id>/<its callback_token>.
    """
    from pallycon_config import load_settings

    from pallycon_pack.web.launch import serve_callbacks

    settings = load_settings(callback_host=host, callback_port=port)
    named: list[str] = []
    tokens: dict[str, SecretStr] | None = None
    if settings.sites_path is None:
        token: SecretStr | None = settings.require_callback_token()
    else:  # the default site's token may come from the sites file, each other site's does
        from pallycon_config import load_callback_tokens

        token = settings.callback_token
        tokens = load_callback_tokens(settings)
        if token is None and not tokens:
            settings.require_callback_token()
        from pallycon_pack.web.launch import callback_book

        book = callback_book(settings, tokens)
        named = [site for site in book.ids if not book.is_default(site)]

    def ready(url: str) -> None:
        others = f" and {url}/callback/<site>/<token> for {', '.join(named)}" if named else ""
        click.echo(f"callback receiver listening on {url}/callback/<token>{others}")

    serve_callbacks(settings, token, on_ready=ready, access_log=access_log, tokens=tokens)
