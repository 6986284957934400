"""How results look on a terminal (rich tables) or to a script (``--json``)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pallycon.codes import packaging_error
from pallycon.models import JobInfo, StorageInfo


def console() -> Console:
    """A terminal's own width; 160 columns when piped, so rows stay whole for grep."""
    width = None if sys.stdout.isatty() else 160
    return Console(highlight=False, soft_wrap=True, width=width)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, default=str))


def _date(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def storage_dict(storage: StorageInfo, *, show_secrets: bool) -> dict[str, Any]:
    """A storage for ``--json``; the AWS secret only when asked for explicitly."""
    data = storage.model_dump(mode="json")
    if show_secrets and storage.password is not None:
        data["password"] = storage.password.get_secret_value()
    else:
        data.pop("password", None)
    return data


def storage_table(storages: list[StorageInfo], total: int, *, show_secrets: bool) -> Table:
    table = Table(title=f"{len(storages)} of {total} storages")
    columns = ["ID", "Name", "Type", "Bucket", "Region", "Access key id", "Registered"]
    if show_secrets:
        columns.append("Secret access key")
    for column in columns:
        table.add_column(column)
    for s in storages:
        row = [s.storage_id, s.storage_name or "", s.type or "", s.aws_bucket or ""]
        row += [s.region or "", s.id or "", _date(s.reg_date)]
        if show_secrets:
            row.append(s.password.get_secret_value() if s.password else "")
        table.add_row(*row)
    return table


def status_text(job: JobInfo) -> str:
    """``WM022100 Watermark packaging`` (with the packaging error, if the job carries one)."""
    info = job.status_info
    text = f"{job.status} {info.meaning}" if info.code != info.meaning else job.status
    if job.error_code:
        text += f" [{job.error_code} {packaging_error(job.error_code).meaning}]"
    return text


def job_table(jobs: list[JobInfo], total: int) -> Table:
    table = Table(title=f"{len(jobs)} of {total} jobs")
    for column in ("Job", "Name", "Content ID", "Formats", "DRM", "Status", "Registered"):
        table.add_column(column)
    for job in jobs:
        formats = "+".join(f for f in ("dash", "hls") if getattr(job, f))
        table.add_row(
            job.job_id,
            job.job_name or "",
            job.content_id or "",
            formats,
            "yes" if job.drm else "no",
            status_text(job),
            _date(job.reg_date),
        )
    return table
