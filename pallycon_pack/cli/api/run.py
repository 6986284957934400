"""The work of the direct commands (sign, storage, jobs): a site's client, the API's requests,
their answers shown."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TypeVar

import click
from pydantic import SecretStr

from pallycon.client import PallyConClient, utc_now
from pallycon.codes import parse_status
from pallycon.models import (
    JobInfo,
    JobListRequest,
    JobRegisterRequest,
    RequestModel,
    StorageListRequest,
    StorageRegisterRequest,
    StorageUpdateRequest,
    validate_request,
)
from pallycon.signing import SITE_KEY_BYTES, SiteCredentials, parse_timestamp
from pallycon.signing import sign as sign_api_json
from pallycon_config import Settings, Site, UnknownSite, load_settings
from pallycon_config.rules import check_region
from pallycon_pack.cli.inputs import STDIN, one_secret, read_api_json, read_json
from pallycon_pack.errors import EXIT_FAILED, EXIT_INVALID, Failure
from pallycon_pack.interrupts import on_interrupt
from pallycon_pack.present import render
from pallycon_worker.clients import site_client

RequestT = TypeVar("RequestT", bound=RequestModel)


class _Target:
    """Where a direct command calls: the settings, the site (None: the default site, from
    the settings as before there were several) and the region (None: neither --region, the
    site nor PALLYCON_REGION gives one)."""

    def __init__(self, settings: Settings, site: Site | None, region: str | None) -> None:
        self.settings = settings
        self.site = site
        self.region = region

    def credentials(self) -> SiteCredentials:
        """The site's (a ConfigError names any missing credential of the default site)."""
        return self.settings.credentials() if self.site is None else self.site.credentials()

    def client(self) -> PallyConClient:
        """A client signing as the site (a ConfigError names any missing credential)."""
        return site_client(self.settings, self.site)


def _target(site_id: str | None, region: str | None = None) -> _Target:
    """The settings, the site ``--site`` names and the region: ``--region``, else that site's,
    else (no --site) PALLYCON_REGION. An unknown site: one line naming --site and the sites."""
    if site_id is None:
        settings = load_settings(region=region)
        keys = settings.access_key is not None or settings.site_key is not None
        if settings.site_id is None or keys or settings.sites_path is None:
            return _Target(settings, None, settings.region)
        site_id = settings.site_id  # the default site, named here, its keys in PALLYCON_SITES
    if region is not None:
        try:
            check_region(region)
        except ValueError as exc:
            raise Failure(f"--region: {exc}", EXIT_INVALID) from None
    settings = load_settings()
    if not site_id:
        raise Failure(f"--site: give a site id ({_known(settings)})", EXIT_INVALID)
    # Which credentials sign, not which site: the default site whose keys are in the settings
    # is called as without --site (the sites file does not hold it).
    if site_id == settings.site_id and settings.access_key and settings.site_key:
        return _Target(settings, None, region or settings.region)  # as without --site
    try:
        site = settings.sites().get(site_id)
    except UnknownSite as exc:
        raise Failure(f"--site: {exc.reason}", EXIT_INVALID) from None
    return _Target(settings, site, region or site.region)


def _known(settings: Settings) -> str:
    return f"sites: {', '.join(settings.sites().ids()) or 'none'}"


def _region(site_id: str | None, region: str | None) -> _Target:
    """:func:`_target`, with a region: one line naming both sources when neither --region nor
    PALLYCON_REGION gives one."""
    target = _target(site_id, region)
    if target.region is None:
        raise Failure(
            "no region: give --region or set PALLYCON_REGION (a code such as RG011)", EXIT_INVALID
        )
    return target


def _window(options: dict[str, Any]) -> dict[str, Any]:
    """The values of :func:`_window_options`, keyed as the API spells them."""
    return {("from" if name == "from_" else name): value for name, value in options.items()}


def _request(model: type[RequestT], **fields: Any) -> RequestT:
    """Build a request from options, dropping the ones not given."""
    return validate_request(model, {k: v for k, v in fields.items() if v is not None})


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
    """Sign the API JSON read on stdin (or --input); print the pallycon-apidata value."""
    if site is not None:
        given = [
            flag
            for flag, value in (
                ("--site-id", site_id),
                ("--access-key", access_key),
                ("--access-key-file", access_key_file),
                ("--site-key", site_key),
                ("--site-key-file", site_key_file),
            )
            if value is not None
        ]
        if given:
            raise Failure(
                f"--site and {', '.join(given)}: --site signs with that site's own id and "
                "keys; give one or the other",
                EXIT_INVALID,
            )
    _one_reads_stdin(
        {
            "--input": input_path,
            "--access-key-file": access_key_file,
            "--site-key-file": site_key_file,
        }
    )
    access_key = one_secret(access_key, access_key_file, flag="--access-key")
    site_key = _site_key(site_key, site_key_file)
    credentials: SiteCredentials
    if site is not None:
        credentials = _target(site).credentials()
    else:
        settings = load_settings(site_id=site_id, access_key=access_key, site_key=site_key)
        credentials = settings.credentials()
    try:
        moment = parse_timestamp(timestamp) if timestamp else utc_now()
    except ValueError as exc:
        raise Failure(f"--timestamp: {exc}", EXIT_INVALID) from None
    envelope = sign_api_json(read_api_json(input_path, "--input"), credentials, moment)
    if show_parts:
        click.echo(f"data: {envelope.data}")
        click.echo(f"timestamp: {envelope.timestamp}")
        click.echo(f"hash: {envelope.hash}")
        click.echo(f"pallycon-apidata: {envelope.encode()}")
    else:
        click.echo(envelope.encode())


def _one_reads_stdin(paths: dict[str, str | None]) -> None:
    """Refuse two options reading standard input: the first would take all of it."""
    readers = [option for option, path in paths.items() if path == STDIN]
    if len(readers) > 1:
        both = "both" if len(readers) == 2 else "all"
        hint = " (--input is '-' unless given the API JSON's path)" if "--input" in readers else ""
        raise Failure(
            f"{' and '.join(readers)} cannot {both} read standard input ('-'){hint}", EXIT_INVALID
        )


def _site_key(value: str | None, path: str | None) -> str | None:
    """The site key from --site-key or --site-key-file, checked here to name the option."""
    key = one_secret(value, path, flag="--site-key")
    if key is not None and len(key.encode("utf-8")) != SITE_KEY_BYTES:
        option = "--site-key" if path is None else "--site-key-file"
        size = len(key.encode("utf-8"))
        raise Failure(
            f"{option}: the site key must be {SITE_KEY_BYTES} bytes (AES-256), got {size}",
            EXIT_INVALID,
        )
    return key


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
    """Register a storage; print its storage id."""
    key_id = aws_access_key_id or os.environ.get("AWS_ACCESS_KEY_ID")
    if not key_id:
        raise Failure(
            "no AWS access key id: give --aws-access-key-id or set AWS_ACCESS_KEY_ID", EXIT_INVALID
        )
    secret = one_secret(
        aws_secret_access_key, aws_secret_access_key_file, flag="--aws-secret-access-key"
    )
    if storage_region is None:
        target = _region(site, region)
        storage_region = target.region
    else:
        target = _target(site, region)
    if secret is None:
        secret = _aws_secret_from_env_or_prompt()
    request = _request(
        StorageRegisterRequest,
        storage_name=name,
        id=key_id,
        password=SecretStr(secret),
        aws_bucket=bucket,
        description=description,
        region=storage_region,
    )
    with target.client() as client:
        response = client.register_storage(request)
    _print_id(as_json, "storage_id", response.storage_id)


def _aws_secret_from_env_or_prompt() -> str:
    from_env = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if from_env:
        return from_env
    if sys.stdin.isatty():
        return str(click.prompt("AWS secret access key", hide_input=True, err=True))
    raise Failure(
        "no AWS secret access key: set AWS_SECRET_ACCESS_KEY or give "
        "--aws-secret-access-key-file PATH ('-' = standard input)",
        EXIT_INVALID,
    )


def storage_update(
    storage_id: str,
    name: str | None,
    description: str | None,
    region: str | None,
    site: str | None,
    as_json: bool,
) -> None:
    """Change a storage's name or description."""
    if region is not None:
        raise Failure(
            "storage update: a storage's region cannot be changed (the API takes only --name "
            "and --description); register a new storage with --storage-region",
            EXIT_INVALID,
        )
    if name is None and description is None:
        raise Failure("storage update: give --name, --description or both", EXIT_INVALID)
    request = _request(
        StorageUpdateRequest, storage_id=storage_id, storage_name=name, description=description
    )
    with _target(site).client() as client:
        response = client.update_storage(request)
    _print_id(as_json, "storage_id", response.storage_id)


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
    target = _region(site, region)
    request = _request(
        StorageListRequest,
        search_keyword=keyword,
        search_keyword_type=(keyword_type or "storageName") if keyword is not None else None,
        region=target.region,
        **_window(window),
    )
    with target.client() as client:
        response = client.list_storages(request)
    if as_json:
        storages = [render.storage_dict(s, show_secrets=show_secrets) for s in response.data]
        render.emit_json({"total_count": response.total_count, "data": storages})
    else:
        table = render.storage_table(response.data, response.total_count, show_secrets=show_secrets)
        render.console().print(table)


def jobs_register(file: Any, site: str | None, as_json: bool) -> None:
    """Register the job in FILE (the guide's job JSON; '-' reads stdin); print its job id."""
    request = validate_request(JobRegisterRequest, read_json(file))
    on_interrupt(
        "interrupted: the job may be registered at PallyCon; look for it with pallycon-pack "
        "jobs list before registering it again"
    )
    with _target(site).client() as client:
        response = client.register_job(request)
    _print_id(as_json, "job_id", response.job_id)


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
    target = _region(site, region)
    request = _request(
        JobListRequest,
        search_keyword=keyword,
        search_keyword_type=(keyword_type or "jobName") if keyword is not None else None,
        search_type=search_type,
        search_status=status,
        search_condition=search_condition,
        region=target.region,
        **_window(window),
    )
    with target.client() as client:
        if all_pages:
            found = list(client.iter_jobs(request))
            total = len(found)
        else:
            response = client.list_jobs(request)
            found, total = response.data, response.total_count
    if as_json:
        render.emit_json({"total_count": total, "data": [j.model_dump(mode="json") for j in found]})
    else:
        render.console().print(render.job_table(found, total))


def jobs_watch(
    job_id: str,
    interval: float,
    timeout: float,
    region: str | None,
    site: str | None,
    as_json: bool,
) -> None:
    """Follow one job until it ends; exit 0 when it completes (WM030), 1 otherwise."""
    target = _region(site, region)
    query = JobListRequest(search_keyword=job_id, search_keyword_type="jobId", region=target.region)
    deadline = time.monotonic() + timeout
    last = None
    on_interrupt(
        f"interrupted: job {job_id} goes on at PallyCon; follow it again with pallycon-pack "
        f"jobs watch {job_id}"
    )
    with target.client() as client:
        while True:
            job = _find(client.list_jobs(query).data, job_id)
            if job.status != last:
                last = job.status
                _show_status(job, as_json)
            info = parse_status(job.status)
            if info.terminal:
                if not info.success:
                    raise Failure(f"job {job_id} ended: {render.status_text(job)}", EXIT_FAILED)
                return
            if time.monotonic() > deadline:
                raise Failure(f"job {job_id} still {job.status} after {timeout:g} s", EXIT_FAILED)
            time.sleep(interval)


def _find(found: list[JobInfo], job_id: str) -> JobInfo:
    for job in found:
        if job.job_id == job_id:
            return job
    raise Failure(f"job {job_id} not found", EXIT_FAILED)


def _show_status(job: JobInfo, as_json: bool) -> None:
    if as_json:
        render.emit_json({"job_id": job.job_id, "status": job.status, **_meaning(job)})
    else:
        click.echo(f"job {job.job_id}: {render.status_text(job)}")


def _meaning(job: JobInfo) -> dict[str, Any]:
    info = job.status_info
    return {"meaning": info.meaning, "stage": info.stage.value, "terminal": info.terminal}


def _print_id(as_json: bool, key: str, value: str | None) -> None:
    if as_json:
        render.emit_json({key: value})
    else:
        click.echo(value)
