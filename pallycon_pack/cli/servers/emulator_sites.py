"""``pallycon-pack emulator``: serve the PallyCon-compatible API locally."""

from __future__ import annotations

from pathlib import Path

import click
from pallycon_config import load_settings
from pallycon_emulator.config import (
    DEMO_SITE,
    HOSTILE_MODES,
    CallbackUrl,
    EmulatorConfig,
    EmulatorSettings,
    FaultConfig,
    callback_url_problem,
    emulator_env_name,
    load_emulator_settings,
)

from pallycon.signing import SITE_KEY_BYTES, SiteCredentials
from pallycon_pack.cli.inputs import read_source, source_name
from pallycon_pack.errors import EXIT_INVALID, Failure

SITES_FILE_LIMIT = 1024 * 1024
SITE_FORMAT = "ID:ACCESS_KEY:SITE_KEY"


def _site(value: str) -> SiteCredentials:
    """A site from ``ID:ACCESS_KEY:SITE_KEY``; a ValueError's message never holds the value."""
    site_id, sep, rest = value.partition(":")
    access_key, sep2, site_key = rest.partition(":")
    if not (sep and sep2 and site_id and access_key):
        raise ValueError(f"expected {SITE_FORMAT}")
    if len(site_key.encode("utf-8")) != SITE_KEY_BYTES:
        raise ValueError(f"the site key must be {SITE_KEY_BYTES} bytes")
    return SiteCredentials.of(site_id, access_key, site_key)


def _flag_sites(values: tuple[str, ...]) -> list[SiteCredentials]:
    sites = []
    for number, value in enumerate(values, start=1):
        try:
            sites.append(_site(value))
        except ValueError as exc:
            which = f" (number {number})" if len(values) > 1 else ""
            raise Failure(f"--site{which}: {exc}", EXIT_INVALID) from None
    return sites


def _file_sites(path: str) -> list[SiteCredentials]:
    """The sites in a sites file: one per line, blank lines and # comments ignored.

    An error names the line by number, never its content.
    """
    where = source_name(path)
    sites = []
    lines = read_source(path, "--sites-file", SITES_FILE_LIMIT).split(b"\n")
    for number, raw in enumerate(lines, start=1):
        try:
            entry = raw.decode("utf-8").strip()
            if entry and not entry.startswith("#"):
                sites.append(_site(entry))
        except UnicodeDecodeError:
            raise Failure(f"--sites-file {where}: line {number}: not UTF-8", EXIT_INVALID) from None
        except ValueError as exc:
            raise Failure(f"--sites-file {where}: line {number}: {exc}", EXIT_INVALID) from None
    if not sites:
        raise Failure(
            f"--sites-file {where}: no site in it (one {SITE_FORMAT} a line)", EXIT_INVALID
        )
    return sites


def _extra_sites(values: tuple[str, ...], path: str | None) -> tuple[SiteCredentials, ...]:
    return (*_flag_sites(values), *(_file_sites(path) if path is not None else ()))


def _check_unique(sites: tuple[SiteCredentials, ...]) -> None:
    seen: set[str] = set()
    for site in sites:
        if site.site_id in seen:
            raise Failure(
                f"site {site.site_id} is given twice (PALLYCON_SITE_ID, --site, --sites-file)",
                EXIT_INVALID,
            )
        seen.add(site.site_id)


SITE_CALLBACK_FORMAT = "SITE_ID=URL"


def _flag_callbacks(values: tuple[str, ...]) -> dict[str, str]:
    """``--site-callback`` values by site; an error names the flag and the site (or the
    value's number), never the URL: its path carries the receiver's token."""
    found: dict[str, str] = {}
    for number, value in enumerate(values, start=1):
        site_id, sep, url = value.partition("=")
        if not (sep and site_id and url):
            which = f" (number {number})" if len(values) > 1 else ""
            raise Failure(f"--site-callback{which}: expected {SITE_CALLBACK_FORMAT}", EXIT_INVALID)
        if site_id in found:
            raise Failure(f"--site-callback: site {site_id} is given twice", EXIT_INVALID)
        problem = callback_url_problem(url)
        if problem:
            raise Failure(f"--site-callback {site_id}: the URL {problem}", EXIT_INVALID)
        found[site_id] = url
    return found


def _with_callbacks(
    settings: EmulatorSettings, flags: dict[str, str], served: list[str]
) -> EmulatorSettings:
    """``settings`` with the per-site callback URLs of ``flags`` over those of the environment
    (site by site); every site named must be one the emulator serves."""
    for site_id in [*settings.callback_urls, *flags]:
        if site_id not in served:
            where = "--site-callback" if site_id in flags else emulator_env_name("callback_urls")
            raise Failure(
                f"{where}: site {site_id} is not served (sites: {', '.join(served)})",
                EXIT_INVALID,
            )
    if not flags:
        return settings
    merged = {**settings.callback_urls, **{key: CallbackUrl(url) for key, url in flags.items()}}
    return settings.model_copy(update={"callback_urls": merged})


def _statuses(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter("expected comma-separated status codes, e.g. 500,503") from None


@click.command()
@click.option("--host", help="Listen address (default: PALLYCON_EMULATOR_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: PALLYCON_EMULATOR_PORT, 8600; 0 = any).")
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
    site_callbacks: tuple[str, ...],
    status_style: str | None,
    max_skew_seconds: float | None,
    max_page_unit: int | None,
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
    to --callback-url, else nowhere.
    """
    settings = load_settings()
    emulator_settings = load_emulator_settings(
        host=host,
        port=port,
        job_seconds=job_seconds,
        data_dir=data_dir,
        callback_url=callback_url,
        status_style=status_style,
        max_skew_seconds=max_skew_seconds,
        max_page_unit=max_page_unit,
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

    from pallycon_pack.web.launch import serve_emulator  # not the callback receiver's imports

    def ready(url: str) -> None:
        names = ", ".join(site.site_id for site in config.sites)
        click.echo(f"PallyCon emulator listening on {url} (sites: {names})")

    serve_emulator(
        config,
        emulator_settings.host,
        emulator_settings.port,
        on_ready=ready,
        access_log=access_log,
        seed=seed,
        settings=(emulator_settings,),
    )
