"""``pallycon-pack demo``: the whole protocol on embedded defaults, with nothing to set up.

It starts the emulator (demo site, a temporary data directory), registers an input and an
output storage, registers N signed packaging jobs (some with DRM, the last one with a missing
input so that it fails as PallyCon would), follows them all with one coalesced job-list call
per poll, shows progress bars and ends with a summary table. Exit 0 when every job ended as
expected.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from emulator.config import DEMO_REGION, DEMO_SITE, EmulatorConfig
from emulator.files import MANIFESTS, VARIANTS
from emulator.server import running_emulator
from pallycon.client import ClientOptions, PallyConClient
from pallycon.codes import STATUS_CODES, parse_status, status_sequence
from pallycon.models import (
    JobInfo,
    JobListRequest,
    JobRegisterRequest,
    StorageRegisterRequest,
    validate_request,
)
from pallycon_pack import render
from pallycon_pack.cli import EXIT_FAILED, Failure

INPUT_BUCKET = "demo-input"
OUTPUT_BUCKET = "demo-output"


@dataclass(frozen=True)
class DemoJob:
    request: JobRegisterRequest
    expect_success: bool
    job_id: str = ""


def sample_requests(count: int, input_id: str, output_id: str) -> list[DemoJob]:
    """``count`` jobs: alternating DRM and formats; the last one's input is missing."""
    jobs = []
    for number in range(1, count + 1):
        fails = number == count and count > 1
        body = {
            "job_name": f"demo-{number}",
            "storage": {
                "input": {
                    "storage_id": input_id,
                    "contents_path": ["missing.mp4" if fails else f"movie-{number}.mp4"],
                },
                "output": {"storage_id": output_id, "path": "packaged"},
            },
            "content_id": f"demo-{number}",
            "streaming_format": ["dash", "hls"] if number % 2 else ["dash"],
            "protect_type": ["watermark", "drm"] if number % 3 == 2 else ["watermark"],
        }
        jobs.append(DemoJob(validate_request(JobRegisterRequest, body), expect_success=not fails))
    return jobs


def _prepare_data_dir(root: Path, count: int) -> None:
    (root / OUTPUT_BUCKET).mkdir(parents=True)
    inputs = root / INPUT_BUCKET
    inputs.mkdir(parents=True)
    for number in range(1, count + 1):
        (inputs / f"movie-{number}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))


def _storage(client: PallyConClient, name: str, bucket: str) -> str:
    request = StorageRegisterRequest.model_validate(
        {
            "storage_name": name,
            "id": "AKIADEMO",
            "password": "demo-secret",
            "aws_bucket": bucket,
            "region": DEMO_REGION,
        }
    )
    storage_id = client.register_storage(request).storage_id
    assert storage_id is not None
    return storage_id


@click.command()
@click.option(
    "--jobs",
    "count",
    type=click.IntRange(1, 500),
    default=4,
    show_default=True,
    help="How many sample jobs.",
)
@click.option(
    "--job-seconds",
    type=click.FloatRange(0, 600),
    default=6.0,
    show_default=True,
    help="How long each emulated job takes.",
)
def demo(count: int, job_seconds: float) -> None:
    """Run the emulator and a batch of signed packaging jobs end to end."""
    with tempfile.TemporaryDirectory(prefix="pallycon-demo-") as tmp:
        data_dir = Path(tmp)
        _prepare_data_dir(data_dir, count)
        config = EmulatorConfig(sites=(DEMO_SITE,), job_seconds=job_seconds, data_dir=data_dir)
        with running_emulator(config) as (url, _):
            click.echo(f"emulator at {url}, site {DEMO_SITE.site_id}, data in {data_dir}")
            with PallyConClient(DEMO_SITE, ClientOptions(base_url=url)) as client:
                jobs = _register(client, count)
                final = _follow(client, jobs, job_seconds)
        _summarise(jobs, final, data_dir)


def _register(client: PallyConClient, count: int) -> list[DemoJob]:
    input_id = _storage(client, "demo input", INPUT_BUCKET)
    output_id = _storage(client, "demo output", OUTPUT_BUCKET)
    click.echo(f"storages: input {input_id}, output {output_id}")
    registered = []
    for job in sample_requests(count, input_id, output_id):
        job_id = client.register_job(job.request).job_id or ""
        registered.append(DemoJob(job.request, job.expect_success, job_id))
    click.echo(f"registered {len(registered)} jobs: {', '.join(j.job_id for j in registered)}")
    return registered


def _follow(client: PallyConClient, jobs: list[DemoJob], job_seconds: float) -> dict[str, JobInfo]:
    """Poll with one paged job-list call until every job has ended."""
    query = JobListRequest(region=DEMO_REGION, page_unit=max(25, len(jobs)))
    deadline = time.monotonic() + job_seconds * 3 + 30
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"))
    latest: dict[str, JobInfo] = {}
    with Progress(*columns, console=render.console()) as progress:
        bars = {
            j.job_id: progress.add_task(
                f"job {j.job_id}",
                total=len(status_sequence(j.request.drm)) - 1,
                status="",
            )
            for j in jobs
        }
        while time.monotonic() < deadline:
            latest = {info.job_id: info for info in client.iter_jobs(query) if info.job_id in bars}
            for job_id, info in latest.items():
                progress.update(
                    bars[job_id], completed=_step(info), status=render.status_text(info)
                )
            if len(latest) == len(jobs) and all(i.status_info.terminal for i in latest.values()):
                break
            time.sleep(0.5)
    return latest


def _step(info: JobInfo) -> int:
    sequence = status_sequence(bool(info.drm))
    code = info.status_info.code
    if info.status_info.terminal:
        return len(sequence) - 1
    return sequence.index(code) if code in sequence else 0


def _summarise(jobs: list[DemoJob], final: dict[str, JobInfo], data_dir: Path) -> None:
    table = Table(title="pallycon-pack demo")
    for column in ("Job", "Content", "DRM", "Formats", "Final", "Manifests", "OK"):
        table.add_column(column, no_wrap=True)
    surprises = 0
    for job in jobs:
        info = final.get(job.job_id)
        status = parse_status(info.status) if info else None
        succeeded = bool(status and status.success)
        outputs = _outputs(job.request, data_dir) if succeeded else 0
        expected = succeeded == job.expect_success and (not succeeded or outputs > 0)
        surprises += not expected
        table.add_row(
            job.job_id,
            job.request.content_id,
            "yes" if job.request.drm else "no",
            "+".join(job.request.streaming_format),
            _final(info),
            str(outputs) if outputs else "-",
            "yes" if expected else "NO",
        )
    render.console().print(table)
    if surprises:
        raise Failure(f"{surprises} job(s) did not end as expected", EXIT_FAILED)
    click.echo(
        f"all {len(jobs)} jobs ended as expected ({STATUS_CODES['WM030'].meaning}: "
        f"{sum(j.expect_success for j in jobs)}, failed on purpose: "
        f"{sum(not j.expect_success for j in jobs)})"
    )


def _final(info: JobInfo | None) -> str:
    if info is None:
        return "not seen"
    return f"{info.status} {info.error_code}" if info.error_code else info.status


def _outputs(request: JobRegisterRequest, data_dir: Path) -> int:
    root = data_dir / OUTPUT_BUCKET / request.storage.output.path / request.content_id
    return sum(
        (root / variant / fmt / MANIFESTS[fmt]).is_file()
        for variant in VARIANTS
        for fmt in request.streaming_format
    )
