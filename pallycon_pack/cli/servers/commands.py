"""The long-running processes: worker, callbacks, console, metrics, emulator (their options and
help; the work is in :mod:`.run`, imported when a command runs, so that showing its help loads
neither Redis nor Celery).
"""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import BaseModel

from pallycon_config import Settings
from pallycon_emulator.config import HOSTILE_MODES, EmulatorSettings
from pallycon_pack.cli.servers.emulator_sites import SITE_CALLBACK_FORMAT, SITE_FORMAT
from pallycon_pack.cli.servers.stopping import stop_while_starting
from pallycon_pack.web.console.auth import ConsoleSettings
from pallycon_pack.web.http_api.settings import HttpSettings


def _default(settings: type[BaseModel], name: str) -> object:
    """A setting's default, as the help names it."""
    return settings.model_fields[name].default


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
    """Run a Celery worker: submits, polls, the sweeper, the intake, the webhooks.

    Run as many as you like, on as many machines: they share the work through Redis. Any other
    option (or anything after --) goes to Celery's worker as it is, e.g. --uid, --gid, -Q,
    --max-tasks-per-child, --autoscale: see celery worker --help.
    """
    stop_while_starting("worker")  # Celery's own handler replaces it
    from pallycon_pack.cli.servers import run

    run.worker(concurrency, loglevel, hostname, celery_args)


@click.command()
@click.option("--host", help="Listen address (default: PALLYCON_CALLBACK_HOST).")
@click.option(
    "--port",
    type=int,
    help=f"Port (default: PALLYCON_CALLBACK_PORT, {_default(Settings, 'callback_port')}; 0 = any).",
)
@click.option("--access-log", is_flag=True, help="Log every HTTP request (a JSON line on stderr).")
def callbacks(host: str | None, port: int | None, access_log: bool) -> None:
    """Receive PallyCon's result callbacks at /callback/<PALLYCON_CALLBACK_TOKEN>.

    Each other site of PALLYCON_SITES at /callback/<site id>/<its callback_token>.
    """
    stop = stop_while_starting("callbacks")  # uvicorn's own handler replaces it while it serves
    from pallycon_pack.cli.servers import run

    run.callbacks(host, port, access_log, serving=stop.serving)


@click.command()
@click.option(
    "--host",
    help=f"Listen address (default: PALLYCON_CONSOLE_HOST, {_default(ConsoleSettings, 'host')}).",
)
@click.option(
    "--port",
    type=int,
    help=f"Port (default: PALLYCON_CONSOLE_PORT, {_default(ConsoleSettings, 'port')}; 0 = any).",
)
def console(host: str | None, port: int | None) -> None:
    """Serve the operators' read-only web console: counts, failures, requests, timelines.

    Off 127.0.0.1 (--host) it needs PALLYCON_CONSOLE_TOKEN; then open /?token=<token> once.
    """
    from pallycon_pack.cli.servers import run

    run.console(host, port)


@click.command()
@click.option(
    "--host",
    help=f"Listen address (default: PALLYCON_HTTP_HOST, {_default(HttpSettings, 'host')}).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help=f"Port (default: PALLYCON_HTTP_PORT, {_default(HttpSettings, 'port')}; 0 = any).",
)
@click.option("--access-log", is_flag=True, help="Log every HTTP request (a JSON line on stderr).")
def http(host: str | None, port: int | None, access_log: bool) -> None:
    """Serve the HTTP API for producers: submit, read, retry and cancel requests over HTTP.

    Every /v1 route needs a bearer token (pallycon-pack tokens add); /openapi.json is the
    contract, /health/live and /health/ready the probes (docs/HTTP.md).
    """
    stop = stop_while_starting("http")  # uvicorn's own handler replaces it while it serves
    from pallycon_pack.cli.servers import run

    run.http(host, port, access_log, serving=stop.serving)


@click.command()
@click.option(
    "--host",
    help=f"Listen address (default: PALLYCON_METRICS_HOST, {_default(Settings, 'metrics_host')}; "
    "0.0.0.0 in a container).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help=f"Port (default: PALLYCON_METRICS_PORT, {_default(Settings, 'metrics_port')}; "
    "0 = any, printed).",
)
def metrics(host: str | None, port: int | None) -> None:
    """Serve Prometheus metrics of the whole fleet at /metrics, read from Redis at each scrape.

    Requests by state, transitions, API calls by code and their durations, queue and schedule
    depths, poll and intake lag, rate-limit waits, retries, reconciliations, dead letters, the
    workers' heartbeats; pallycon_pack_up is 0 while Redis cannot be read.
    """
    stop = stop_while_starting("metrics")  # uvicorn's own handler replaces it while it serves
    from pallycon_pack.cli.servers import run

    run.metrics(host, port, serving=stop.serving)


@click.command()
@click.option(
    "--host",
    help=f"Listen address (default: PALLYCON_EMULATOR_HOST, {_default(EmulatorSettings, 'host')}).",
)
@click.option(
    "--port",
    type=int,
    help=f"Port (default: PALLYCON_EMULATOR_PORT, {_default(EmulatorSettings, 'port')}; 0 = any).",
)
@click.option("--job-seconds", type=float, help="How long a job takes to reach WM030.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Storages map to folders <dir>/<bucket>/; outputs are written there.",
)
@click.option(
    "--callback-url",
    help="POST the guide's callback here when a job ends (sites without --site-callback).",
)
@click.option(
    "--callback-receiver",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[URL]",
    help="POST the callbacks to pallycon-pack callbacks at URL (http://HOST:PORT; alone: the "
    "one PALLYCON_CALLBACK_HOST/_PORT place on this machine) with PALLYCON_CALLBACK_TOKEN "
    "(environment or .env) after /callback/. Instead of --callback-url.",
)
@click.option(
    "--site-callback",
    "site_callbacks",
    multiple=True,
    metavar=SITE_CALLBACK_FORMAT,
    help="POST the callbacks of site SITE_ID's jobs to URL instead (repeatable; over "
    "PALLYCON_EMULATOR_CALLBACK_URLS site by site). Visible in ps: prefer that variable.",
)
@click.option("--status-style", type=click.Choice(["code", "word"]), help="Job list status.")
@click.option("--max-skew-seconds", type=float, help="Refuse timestamps further off (A1002).")
@click.option("--max-page-unit", type=int, help="Largest page returned (larger ones clamp).")
@click.option(
    "--slots",
    type=int,
    help="The most jobs of one site working at once; the others wait in WM000 (0 = unlimited).",
)
@click.option("--stop-seconds", type=float, help="How long a stopped job stays WM100 before WM200.")
@click.option(
    "--site",
    "sites",
    multiple=True,
    metavar=SITE_FORMAT,
    help="Serve another site too (repeatable). Visible to other users in ps: prefer --sites-file.",
)
@click.option(
    "--sites-file",
    metavar="PATH",
    help=f"Serve the sites in PATH too ('-' = standard input): one {SITE_FORMAT} a line; "
    "blank lines and # comments are ignored.",
)
@click.option("--error-rate", type=float, default=0.0, help="Share of requests answered 5xx.")
@click.option("--error-statuses", default="500,503", show_default=True, help="Which 5xx.")
@click.option("--rate-limit-rate", type=float, default=0.0, help="Share answered 429.")
@click.option("--retry-after", type=float, default=1.0, show_default=True, help="429's delay.")
@click.option("--latency", type=float, default=0.0, help="Seconds added to every API request.")
@click.option(
    "--drop-rate",
    type=float,
    default=0.0,
    help="Share of job registrations accepted, then dropped without a response.",
)
@click.option(
    "--hostile-rate", type=float, default=0.0, help="Share answered with a hostile response."
)
@click.option(
    "--hostile-modes",
    default=",".join(HOSTILE_MODES),
    show_default=True,
    help="Which hostile responses (see docs/EMULATOR.md).",
)
@click.option("--seed", type=int, help="Seed the fault draws (repeatable runs).")
@click.option("--access-log", is_flag=True, help="Log every HTTP request (a JSON line on stderr).")
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
    """Serve a PallyCon-compatible Packaging API (for development, tests and demos).

    It serves the site in PALLYCON_SITE_ID / _ACCESS_KEY / _SITE_KEY (environment or .env);
    with none configured, the demo site of .env.example. More sites come from --sites-file
    (kept out of ps) or --site. A job's callback goes to its site's --site-callback URL, else
    to --callback-url (or the receiver of --callback-receiver), else nowhere.
    """
    from pallycon_pack.cli.servers import run

    run.emulator(
        host,
        port,
        job_seconds,
        data_dir,
        callback_url,
        callback_receiver,
        site_callbacks,
        status_style,
        max_skew_seconds,
        max_page_unit,
        slots,
        stop_seconds,
        sites,
        sites_file,
        error_rate,
        error_statuses,
        rate_limit_rate,
        retry_after,
        latency,
        drop_rate,
        hostile_rate,
        hostile_modes,
        seed,
        access_log,
    )
