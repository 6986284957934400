"""The work of the long-running processes: the Celery worker, the callback receiver, the
console, the metrics exporter and the emulator.

Celery is imported by the worker alone (it takes a while, and the other servers have no use for
it); everything else at the top.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import redis
from pydantic import SecretStr

from pallycon_config import Settings, load_callback_tokens, load_settings
from pallycon_config.logs import configure, log_start
from pallycon_config.settings import read_settings
from pallycon_config.show import mask_text
from pallycon_emulator.config import (
    DEMO_SITE,
    EmulatorConfig,
    FaultConfig,
    callback_url_problem,
    load_emulator_settings,
)
from pallycon_pack import receiver
from pallycon_pack.cli.servers import permissions
from pallycon_pack.cli.servers.emulator_sites import (
    _check_unique,
    _extra_sites,
    _flag_callbacks,
    _statuses,
    _with_callbacks,
)
from pallycon_pack.errors import EXIT_INVALID, EXIT_UNAVAILABLE, Failure
from pallycon_pack.interrupts import on_interrupt, server_stopped
from pallycon_pack.web import asgi
from pallycon_pack.web.console.app import REDIS_TIMEOUT, create_app
from pallycon_pack.web.console.auth import ConsoleSettings, check_token, console_variable
from pallycon_pack.web.http_api.app import busy_answer
from pallycon_pack.web.http_api.app import create_app as create_http_app
from pallycon_pack.web.http_api.service import Limits, Service
from pallycon_pack.web.http_api.settings import HttpSettings, http_variable
from pallycon_pack.web.launch import (
    callback_book,
    serve_callbacks,
    serve_emulator,
    serve_metrics,
)
from pallycon_store.connect import answering_first, connect_redis, describe, login_refused
from pallycon_store.wiring import Store, keys_of


def worker(
    concurrency: int, loglevel: str | None, hostname: str | None, celery_args: tuple[str, ...]
) -> None:
    """``worker``: check the settings, wait for Redis, run Celery's worker."""
    from pallycon_worker.tasks import create_app as celery_app  # Celery: the worker only

    on_interrupt(server_stopped("worker"))
    settings = load_settings(log_level=loglevel)
    node = hostname or f"pallycon-{os.getpid()}@{socket.gethostname()}"
    argv = celery_worker_argv(concurrency, settings.log_level, node, celery_args)
    configure(settings.log_level)
    if settings.sites_path is None:  # one site: its settings' own messages
        settings.credentials()
        settings.require_region()
    sites = settings.sites()  # every site valid (a sites file's errors name the site and field)
    client = connect_redis(settings.redis)
    _wait_for_redis(client, settings.redis_startup_wait)
    _check_permissions(client, settings)
    app = celery_app(_answering_sentinel_first(settings))
    log_start("worker", settings, celery=[mask_text(arg) for arg in argv], sites=sites.ids())
    code, by_ctrl_c = _run_celery(app, argv)
    if by_ctrl_c:  # Celery's warm (or, at a second Ctrl-C, cold) shutdown: it exits 1
        raise KeyboardInterrupt
    if code:  # Celery met an unrecoverable error (it has logged it): supervisors restart us
        raise Failure(f"the worker stopped on an unrecoverable error (exit {code})", code)


def _wait_for_redis(client: Any, patience: float) -> None:
    """Return once Redis answers. Unreachable: one warning line, then retries with backoff for
    ``patience`` seconds. Refused credentials are permanent: raised at once, not retried."""
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


def _check_permissions(client: redis.Redis, settings: Settings) -> None:
    """Refuse to start (one line, exit 3) if the Redis user may not run a command the worker
    needs: Celery would retry for ever rather than stop (see :mod:`.permissions`)."""
    refused = permissions.ask(client, permissions.worker_commands(keys_of(settings)))
    if refused:
        user = permissions.user_of(settings.redis.url)
        raise Failure(permissions.message(user, refused), EXIT_UNAVAILABLE)


def _answering_sentinel_first(settings: Settings) -> Settings:
    """``settings`` with the sentinel that answered the check of Redis first: Celery's
    transport asks the sentinels in their order once for each of its connection pools, and a
    dead one first would cost its deadline each time (about 15 s to start instead of 2)."""
    nodes = answering_first(settings.redis).sentinels
    if not nodes:
        return settings
    listed = ",".join(f"{host}:{port}" for host, port in nodes)
    return settings.model_copy(update={"redis_sentinels": listed})


def receiver_callback_url(settings: Settings, callback_url: str | None, base: str) -> str:
    """The callback URL of ``emulator --callback-receiver [BASE]``: the receiver at ``base``
    (empty: where the settings place it on this machine), with the default site's token of the
    settings. One line, exit 2, when ``--callback-url`` is given too or there is no token."""
    if callback_url is not None:
        raise Failure("--callback-receiver and --callback-url: give one of them", EXIT_INVALID)
    base = base or receiver.local_base(settings.callback_host, settings.callback_port)
    problem = callback_url_problem(base)
    if problem:
        raise Failure(f"--callback-receiver: the URL {problem}", EXIT_INVALID)
    if settings.callback_token is None:
        raise Failure(
            "--callback-receiver: PALLYCON_CALLBACK_TOKEN is not set (environment or .env): "
            "the receiver's token, which its callback URL ends with",
            EXIT_INVALID,
        )
    return receiver.callback_url(base, settings.callback_token.get_secret_value())


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


def _run_celery(app: Any, argv: list[str]) -> tuple[int, bool]:
    """Run Celery's command line for ``app``; its exit code, and whether a SIGINT (Ctrl-C)
    stopped it.

    As ``Celery.start`` does, except that the exit code is kept (``start`` drops it, so that a
    worker that met an unrecoverable error would exit 0), and that standard output and error are
    given back once Celery is done (it sends them to its log: a last line would be a warning).
    """
    from celery.bin.celery import celery as celery_cli  # Celery: the worker only
    from celery.signals import worker_shutting_down

    signals: list[str] = []

    def shutting_down(sig: str, **_: Any) -> None:
        signals.append(sig)

    worker_shutting_down.connect(shutting_down, weak=False)
    streams = sys.stdout, sys.stderr
    celery_cli.params[0].default = app
    try:
        code = celery_cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    finally:
        celery_cli.params[0].default = None
        worker_shutting_down.disconnect(shutting_down)
        sys.stdout, sys.stderr = streams
    return (code if isinstance(code, int) else 0), "SIGINT" in signals


def callbacks(
    host: str | None, port: int | None, access_log: bool, serving: Callable[[], None]
) -> None:
    """``callbacks``: serve the callback receiver of every site's token; ``serving`` is called
    once it listens (uvicorn's signal handlers then installed)."""
    on_interrupt(server_stopped("callbacks"))
    settings = load_settings(callback_host=host, callback_port=port)
    named: list[str] = []
    tokens: dict[str, SecretStr] | None = None
    if settings.sites_path is None:
        token: SecretStr | None = settings.require_callback_token()
    else:  # the default site's token may come from the sites file, each other site's does
        token = settings.callback_token
        tokens = load_callback_tokens(settings)
        if token is None and not tokens:
            settings.require_callback_token()

        book = callback_book(settings, tokens)
        named = [site for site in book.ids if not book.is_default(site)]

    def ready(url: str) -> None:
        others = f" and {url}/callback/<site>/<token> for {', '.join(named)}" if named else ""
        serving()
        click.echo(f"callback receiver listening on {url}/callback/<token>{others}")

    serve_callbacks(settings, token, on_ready=ready, access_log=access_log, tokens=tokens)


def console(host: str | None, port: int | None) -> None:
    """``console``: check the token and Redis, serve the console."""
    on_interrupt(server_stopped("console"))
    options = read_settings(ConsoleSettings, console_variable, {"host": host, "port": port})
    token = check_token(options.host, options.token)
    settings = load_settings()
    # A deadline on every command: a stalled Redis is a 503.
    store = Store.of(settings, deadline=REDIS_TIMEOUT)
    store.redis.ping()  # a wrong URL or password: one line now, not a page of errors later
    overview = store.overview()
    app = create_app(overview, token, loopback_only=token is None)
    server = asgi.make_server(app, options.host, options.port, settings_prefix="PALLYCON_CONSOLE")

    def ready(url: str) -> None:
        click.echo(f"console listening on {url}" + (" (token required)" if token else ""))

    configure(settings.log_level)
    log_start("console", options, settings)
    asgi.serve(server, ready)


#: Seconds a Redis command of the HTTP API may take before it answers 503.
HTTP_REDIS_TIMEOUT = 5.0


def http(host: str | None, port: int | None, access_log: bool, serving: Callable[[], None]) -> None:
    """``http``: check Redis, serve the HTTP API until SIGTERM or SIGINT; ``serving`` is
    called once it listens (uvicorn's signal handlers then installed)."""
    on_interrupt(server_stopped("http"))
    options = read_settings(HttpSettings, http_variable, {"host": host, "port": port})
    settings = load_settings()
    store = Store.of(settings, deadline=HTTP_REDIS_TIMEOUT)
    store.redis.ping()  # a wrong URL or password: one line now, not a 503 at every request
    service = Service(store, Limits(options.rate, options.burst))
    app = create_http_app(service, options.max_body_bytes, options.body_timeout)
    server = asgi.make_server(
        app,
        options.host,
        options.port,
        settings_prefix="PALLYCON_HTTP",
        access_log=access_log,
        max_connections=options.max_connections,
        busy=busy_answer(),
    )

    def ready(url: str) -> None:
        serving()
        click.echo(f"HTTP API listening on {url} (GET /openapi.json)")
        sys.stdout.flush()

    configure(settings.log_level)
    log_start("http", options, settings, access_log=access_log)
    asgi.serve(server, ready)


def metrics(host: str | None, port: int | None, serving: Callable[[], None]) -> None:
    """``metrics``: serve the fleet's metrics until SIGTERM or SIGINT; ``serving`` is called
    once it listens (uvicorn's signal handlers then installed)."""
    on_interrupt(server_stopped("metrics"))
    settings = load_settings(metrics_host=host, metrics_port=port)
    configure(settings.log_level)

    def ready(url: str) -> None:
        serving()
        log_start("metrics", settings, host=settings.metrics_host, port=int(url.rsplit(":", 1)[1]))
        click.echo(f"metrics: listening on {url} (GET /metrics)", err=True)
        sys.stderr.flush()

    serve_metrics(settings, settings.metrics_host, settings.metrics_port, ready)


def emulator(
    host: str | None,
    port: int | None,
    job_seconds: float | None,
    data_dir: Path | None,
    callback_url: str | None,
    callback_receiver: str | None,
    site_callbacks: tuple[str, ...],
    status_style: str | None,
    max_skew_seconds: float | None,
    max_page_unit: int | None,
    slots: int | None,
    stop_seconds: float | None,
    sites: tuple[str, ...],
    sites_file: str | None,
    error_rate: float,
    error_statuses: str,
    rate_limit_rate: float,
    retry_after: float,
    latency: float,
    drop_rate: float,
    hostile_rate: float,
    hostile_modes: str,
    seed: int | None,
    access_log: bool,
) -> None:
    """``emulator``: the sites, faults and callbacks given; serve the API."""
    on_interrupt(server_stopped("emulator"))
    settings = load_settings()
    if callback_receiver is not None:
        callback_url = receiver_callback_url(settings, callback_url, callback_receiver)
    emulator_settings = load_emulator_settings(
        host=host,
        port=port,
        job_seconds=job_seconds,
        data_dir=data_dir,
        callback_url=callback_url,
        status_style=status_style,
        max_skew_seconds=max_skew_seconds,
        max_page_unit=max_page_unit,
        slots=slots,
        stop_seconds=stop_seconds,
    )
    try:
        faults = FaultConfig(
            error_rate=error_rate,
            error_statuses=_statuses(error_statuses),
            rate_limit_rate=rate_limit_rate,
            retry_after=retry_after,
            latency=latency,
            drop_rate=drop_rate,
            hostile_rate=hostile_rate,
            hostile_modes=tuple(mode.strip() for mode in hostile_modes.split(",") if mode.strip()),
        )
    except ValueError as exc:
        raise Failure(f"fault options: {exc}", EXIT_INVALID) from None
    flag_callbacks = _flag_callbacks(site_callbacks)
    extra = _extra_sites(sites, sites_file)
    if settings.site_id is None and settings.access_key is None and settings.site_key is None:
        primary = DEMO_SITE
        click.echo(f"no site configured: serving the demo site {DEMO_SITE.site_id}", err=True)
    else:
        primary = settings.credentials()
    served = (primary, *extra)
    _check_unique(served)
    emulator_settings = _with_callbacks(
        emulator_settings, flag_callbacks, [site.site_id for site in served]
    )
    config = EmulatorConfig.from_settings(emulator_settings, sites=served, faults=faults)
    if config.data_dir is not None:
        config.data_dir.mkdir(parents=True, exist_ok=True)

    def ready(url: str) -> None:
        names = ", ".join(site.site_id for site in config.sites)
        click.echo(f"PallyCon emulator listening on {url} (sites: {names})")
        click.echo(
            "its storages and jobs live in memory: after a restart, register the storage again"
        )

    serve_emulator(
        config,
        emulator_settings.host,
        emulator_settings.port,
        on_ready=ready,
        access_log=access_log,
        seed=seed,
        settings=(emulator_settings,),
    )
