"""Direct commands for operators: sign a request, manage storages and jobs (no queue)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pallycon_pack.cli.inputs import STDIN

F = TypeVar("F", bound=Callable[..., Any])


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _region_option(f: F) -> F:
    return click.option(
        "--region",
        help="Region code such as RG011; required unless PALLYCON_REGION is set or --site "
        "names a site of PALLYCON_SITES (default: that site's region, else PALLYCON_REGION).",
    )(f)


def _site_option(f: F) -> F:
    return click.option(
        "--site",
        metavar="SITE_ID",
        help="Call the API as this site, with its keys and region: the default site "
        "(PALLYCON_SITE_ID) or one of PALLYCON_SITES. Default: the default site, from "
        "PALLYCON_SITE_ID, PALLYCON_ACCESS_KEY and PALLYCON_SITE_KEY.",
    )(f)


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """Refuse nan and infinity, which the ranges of click let through."""
    if not math.isfinite(value):
        raise click.BadParameter("must be a finite number", ctx, param)
    return value


def _window_options(f: F) -> F:
    """The paging and time-window options both list APIs share."""
    for option in reversed(
        [
            click.option("--from", "from_", help="Registered at or after YYYY-MM-DDThh:mm:ssZ."),
            click.option("--to", help="Registered at or before YYYY-MM-DDThh:mm:ssZ."),
            click.option("--page-unit", type=int, help="Results per page (API default 25)."),
            click.option("--page-index", type=int, help="Page number, from 1."),
            click.option("--time-zone", help="Offset hh:mm for dates and the window."),
        ]
    ):
        f = option(f)
    return f


@click.command()
@click.option("--timestamp", help="Sign at this time (YYYY-MM-DDThh:mm:ssZ) instead of now.")
@click.option(
    "--input",
    "input_path",
    metavar="PATH",
    default=STDIN,
    show_default=True,
    help="Read the API JSON from PATH ('-' = standard input).",
)
@click.option("--site-id", help="Override PALLYCON_SITE_ID.")
@click.option(
    "--access-key",
    metavar="KEY",
    help="Override PALLYCON_ACCESS_KEY. Visible to other users in ps: "
    "prefer PALLYCON_ACCESS_KEY or --access-key-file.",
)
@click.option(
    "--access-key-file",
    metavar="PATH",
    help="Read the access key from PATH ('-' = standard input, with --input PATH).",
)
@click.option(
    "--site-key",
    metavar="KEY",
    help="Override PALLYCON_SITE_KEY. Visible to other users in ps: "
    "prefer PALLYCON_SITE_KEY or --site-key-file.",
)
@click.option(
    "--site-key-file",
    metavar="PATH",
    help="Read the site key from PATH ('-' = standard input, with --input PATH).",
)
@click.option("--show-parts", is_flag=True, help="Also print data, timestamp and hash.")
@click.option(
    "--site",
    metavar="SITE_ID",
    help="Sign as this site, with its keys: the default site (PALLYCON_SITE_ID) or one of "
    "PALLYCON_SITES (not with --site-id or the key options).",
)
def sign(
    timestamp: str | None,
    input_path: str,
    site: str | None,
    site_id: str | None,
    access_key: str | None,
    access_key_file: str | None,
    site_key: str | None,
    site_key_file: str | None,
    show_parts: bool,
) -> None:
    """Sign the API JSON read on stdin (or --input); print the pallycon-apidata value.

    The bytes are encrypted exactly as given (a trailing newline too: use printf or echo -n);
    they must be JSON, of at most 262144 bytes (twice the largest API JSON the API takes).

    The access key and the site key come from --access-key-file / --site-key-file (or the
    flags --access-key / --site-key, visible in ps), else PALLYCON_ACCESS_KEY /
    PALLYCON_SITE_KEY (environment or .env). A key file holds the key alone; one trailing
    newline is ignored. Only one option can read standard input. With --site, the site id and
    both keys are that site's.
    """
    from pallycon_pack.cli.api import run

    run.sign(
        timestamp,
        input_path,
        site,
        site_id,
        access_key,
        access_key_file,
        site_key,
        site_key_file,
        show_parts,
    )


@click.group()
def storage() -> None:
    """Register, update and list the S3 storages PallyCon reads from and writes to."""


@storage.command("register")
@click.option("--name", required=True, help="Storage name (at most 50 bytes).")
@click.option("--bucket", required=True, help="S3 bucket name.")
@click.option(
    "--aws-access-key-id",
    metavar="ID",
    help="AWS access key id; required unless AWS_ACCESS_KEY_ID is set.",
)
@click.option(
    "--aws-secret-access-key",
    metavar="SECRET",
    help="AWS secret access key; required unless AWS_SECRET_ACCESS_KEY is set, "
    "--aws-secret-access-key-file is given, or a terminal can prompt for it. Visible to other "
    "users in ps: prefer AWS_SECRET_ACCESS_KEY or --aws-secret-access-key-file.",
)
@click.option(
    "--aws-secret-access-key-file",
    metavar="PATH",
    help="Read the AWS secret access key from PATH ('-' = standard input).",
)
@click.option(
    "--storage-region",
    help="The storage's region code (default: --region, else the --site's region, else "
    "PALLYCON_REGION).",
)
@click.option("--description", help="Free text.")
@_region_option
@_site_option
@json_option
def storage_register(
    name: str,
    bucket: str,
    aws_access_key_id: str | None,
    aws_secret_access_key: str | None,
    aws_secret_access_key_file: str | None,
    storage_region: str | None,
    description: str | None,
    region: str | None,
    site: str | None,
    as_json: bool,
) -> None:
    """Register a storage; print its storage id.

    The AWS access key id comes from --aws-access-key-id, else AWS_ACCESS_KEY_ID. The AWS
    secret access key comes from --aws-secret-access-key-file (or the flag
    --aws-secret-access-key, visible in ps), else AWS_SECRET_ACCESS_KEY, else a hidden prompt
    when standard input is a terminal. A key file holds the key alone; one trailing newline is
    ignored.
    """
    from pallycon_pack.cli.api import run

    run.storage_register(
        name,
        bucket,
        aws_access_key_id,
        aws_secret_access_key,
        aws_secret_access_key_file,
        storage_region,
        description,
        region,
        site,
        as_json,
    )


@storage.command("update")
@click.argument("storage_id")
@click.option("--name", help="New storage name.")
@click.option("--description", help="New description.")
@click.option(
    "--region",
    hidden=True,
    help="Refused: the API cannot change a storage's region.",
)
@_site_option
@json_option
def storage_update(
    storage_id: str,
    name: str | None,
    description: str | None,
    region: str | None,
    site: str | None,
    as_json: bool,
) -> None:
    """Change a storage's name or description.

    Give --name, --description or both. A storage's region (and bucket and AWS keys) cannot be
    changed: PallyCon's Storage Update API takes only the name and the description. Register a
    new storage instead (storage register --storage-region CODE).
    """
    from pallycon_pack.cli.api import run

    run.storage_update(storage_id, name, description, region, site, as_json)


@storage.command("list")
@click.option("--keyword", help="Search keyword.")
@click.option(
    "--keyword-type",
    type=click.Choice(["storageId", "storageName"]),
    help="What --keyword matches (default storageName).",
)
@_window_options
@_region_option
@_site_option
@click.option("--show-secrets", is_flag=True, help="Also show AWS secret access keys.")
@json_option
def storage_list(
    keyword: str | None,
    keyword_type: str | None,
    region: str | None,
    site: str | None,
    show_secrets: bool,
    as_json: bool,
    **window: Any,
) -> None:
    """List registered storages (AWS secrets hidden unless --show-secrets)."""
    from pallycon_pack.cli.api import run

    run.storage_list(keyword, keyword_type, region, site, show_secrets, as_json, **window)


@click.group()
def jobs() -> None:
    """Register, list and watch packaging jobs directly (no queue)."""


@jobs.command("register")
@click.argument("file", type=click.File("rb"))
@_site_option
@json_option
def jobs_register(file: Any, site: str | None, as_json: bool) -> None:
    """Register the job in FILE (the guide's job JSON; '-' reads stdin); print its job id."""
    from pallycon_pack.cli.api import run

    run.jobs_register(file, site, as_json)


@jobs.command("list")
@click.option("--keyword", help="Search keyword.")
@click.option(
    "--keyword-type",
    type=click.Choice(["cid", "jobId", "jobName"]),
    help="What --keyword matches (default jobName).",
)
@click.option(
    "--type",
    "search_type",
    type=click.Choice(["watermark", "drm"]),
    help="Jobs with DRM, or watermark only.",
)
@click.option(
    "--status",
    type=click.Choice(["ready", "success", "failed", "complete", "working", "process", "stop"]),
    help="Jobs in this state: ready (not started), working (not ended), process (started, "
    "not ended), success, failed, complete (success or failed), stop (stopped).",
)
@click.option(
    "--format",
    "search_condition",
    type=click.Choice(["dash", "hls"]),
    help="Jobs packaging this streaming format.",
)
@_window_options
@_region_option
@_site_option
@click.option("--all-pages", is_flag=True, help="Fetch every page, not one.")
@json_option
def jobs_list(
    keyword: str | None,
    keyword_type: str | None,
    search_type: str | None,
    status: str | None,
    search_condition: str | None,
    region: str | None,
    site: str | None,
    all_pages: bool,
    as_json: bool,
    **window: Any,
) -> None:
    """List packaging jobs, with every search option of the guide."""
    from pallycon_pack.cli.api import run

    run.jobs_list(
        keyword,
        keyword_type,
        search_type,
        status,
        search_condition,
        region,
        site,
        all_pages,
        as_json,
        **window,
    )


@jobs.command("watch")
@click.argument("job_id")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 3600),
    default=2.0,
    show_default=True,
    callback=_finite,
    help="Seconds between polls.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0),
    default=3600.0,
    show_default=True,
    callback=_finite,
    help="Give up after this many seconds.",
)
@_region_option
@_site_option
@json_option
def jobs_watch(
    job_id: str,
    interval: float,
    timeout: float,
    region: str | None,
    site: str | None,
    as_json: bool,
) -> None:
    """Follow one job until it ends; exit 0 when it completes (WM030), 1 otherwise."""
    from pallycon_pack.cli.api import run

    run.jobs_watch(job_id, interval, timeout, region, site, as_json)
