"""The five APIs as plain functions of (site state, decrypted API JSON, time) -> response body.

They validate with the same models the client writes with, answer ``A1000`` naming the field
for anything missing or invalid (an unknown storage id included), and shape responses the way
the guide's examples show them: ids, counts and flags in list entries as strings, the job id of
a registration as a number. Unknown top-level keys are ignored, as PallyCon's own samples send
some (``storage_type`` with a job list request).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import AliasChoices

from pallycon.codes import INVALID_PARAMETER, SUCCESS, status_word
from pallycon.errors import InvalidRequest
from pallycon.models import (
    JobListRequest,
    JobRegisterRequest,
    RequestModel,
    StorageListRequest,
    StorageRegisterRequest,
    StorageUpdateRequest,
    validate_request,
)
from pallycon_emulator.config import EmulatorConfig
from pallycon_emulator.files import input_failure
from pallycon_emulator.state import (
    Job,
    Storage,
    Store,
    job_filter,
    offset,
    page,
    render_date,
    seat,
    storage_matches,
)

ModelT = TypeVar("ModelT", bound=RequestModel)


class ApiFailure(Exception):
    """Answer with this API error code."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass
class Context:
    store: Store
    config: EmulatorConfig
    now: datetime


def ok(**fields: Any) -> dict[str, Any]:
    return {"error_code": SUCCESS, "error_message": "Success", **fields}


def _known_keys(model: type[RequestModel]) -> set[str]:
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        keys.add(name)
        if info.alias:
            keys.add(info.alias)
        if isinstance(info.validation_alias, AliasChoices):
            keys.update(str(choice) for choice in info.validation_alias.choices)
    return keys


def parse(model: type[ModelT], body: dict[str, Any]) -> ModelT:
    known = _known_keys(model)
    try:
        return validate_request(model, {k: v for k, v in body.items() if k in known})
    except InvalidRequest as exc:
        raise ApiFailure(INVALID_PARAMETER, f"Invalid input parameter: {exc}") from None


def _storage(ctx: Context, storage_id: str, field: str) -> Storage:
    storage = ctx.store.storages.get(storage_id)
    if storage is None:
        raise ApiFailure(INVALID_PARAMETER, f"Invalid input parameter: {field}: unknown storage")
    return storage


# --- Storage ----------------------------------------------------------------------------------


def register_storage(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    request = parse(StorageRegisterRequest, body)
    storage = Storage(
        storage_id=ctx.store.next_storage_id(),
        storage_name=request.storage_name,
        type=request.type,
        id=request.id,
        password=request.password,
        aws_bucket=request.aws_bucket,
        description=request.description,
        region=request.region,
        reg_date=ctx.now,
    )
    ctx.store.storages[storage.storage_id] = storage
    return ok(storage_id=storage.storage_id)


def update_storage(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    request = parse(StorageUpdateRequest, body)
    storage = _storage(ctx, request.storage_id, "storage_id")
    if request.storage_name is not None:
        storage.storage_name = request.storage_name
    if request.description is not None:
        storage.description = request.description
    return ok(storage_id=storage.storage_id)


def list_storages(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    query = parse(StorageListRequest, body)
    zone = offset(query.time_zone)
    found = [s for s in _newest_first(ctx.store.storages.values()) if storage_matches(s, query)]
    entries = [
        {
            "storage_id": s.storage_id,
            "storage_name": s.storage_name,
            "type": s.type,
            "id": s.id,
            # The real service echoes the AWS secret; so does the emulator (the client hides it).
            "password": s.password.get_secret_value(),
            "aws_bucket": s.aws_bucket,
            "description": s.description or "",
            "region": s.region,
            "reg_date": render_date(s.reg_date, zone),
        }
        for s in page(found, query.page_unit, query.page_index, ctx.config.max_page_unit)
    ]
    return ok(total_count=str(len(found)), time_zone=query.time_zone or "00:00", data=entries)


def _newest_first(storages: Iterable[Storage]) -> list[Storage]:
    return sorted(storages, key=lambda s: s.reg_date, reverse=True)


# --- Jobs -------------------------------------------------------------------------------------


def register_job(ctx: Context, body: dict[str, Any]) -> tuple[dict[str, Any], Job]:
    request = parse(JobRegisterRequest, body)
    source = _storage(ctx, request.storage.input.storage_id, "storage.input.storage_id")
    _storage(ctx, request.storage.output.storage_id, "storage.output.storage_id")
    job = Job(
        job_id=ctx.store.next_job_id(),
        request=request,
        reg_date=ctx.now,
        duration=ctx.config.job_seconds,
        failure=input_failure(request.storage.input.contents_path, source, ctx.config.data_dir),
    )
    seat(job, ctx.store.slots_free, ctx.config.slots)
    ctx.store.jobs[job.job_id] = job
    return ok(job_id=job.job_id), job


def list_jobs(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    query = parse(JobListRequest, body)
    matches = job_filter(query, ctx.now)
    found = [job for job in _candidates(ctx.store, query) if matches(job)]
    chosen = page(found, query.page_unit, query.page_index, ctx.config.max_page_unit)
    entries = [job_entry(job, ctx, query.time_zone) for job in chosen]
    return ok(total_count=str(len(found)), time_zone=query.time_zone or "00:00", data=entries)


def _candidates(store: Store, query: JobListRequest) -> Iterable[Job]:
    """Newest first (IDs grow with insertion order); a job ID search is a direct lookup."""
    if query.search_keyword_type == "jobId" and query.search_keyword is not None:
        key = query.search_keyword.strip()
        job = store.jobs.get(int(key)) if key.isdigit() else None
        return [job] if job is not None else []
    return reversed(store.jobs.values())


def job_entry(job: Job, ctx: Context, time_zone: str | None) -> dict[str, Any]:
    """One job as the job list shows it; rendered once per time zone when it has ended."""
    if not job.ended(ctx.now):
        return _render_entry(job, ctx, time_zone)
    key = (time_zone, ctx.config.status_style)
    if key not in job.entries:
        job.entries[key] = _render_entry(job, ctx, time_zone)
    return job.entries[key]


def _render_entry(job: Job, ctx: Context, time_zone: str | None) -> dict[str, Any]:
    zone = offset(time_zone)
    request = job.request
    code = job.status(ctx.now)
    entry: dict[str, Any] = {
        "job_id": str(job.job_id),
        "job_name": request.job_name,
        "start_date": render_date(job.start_date(ctx.now), zone),
        "update_date": render_date(job.changed_at(ctx.now), zone),
        "reg_date": render_date(job.reg_date, zone),
        "watermark": "true",
        "drm": _flag(request.drm),
        "dash": _flag("dash" in request.streaming_format),
        "hls": _flag("hls" in request.streaming_format),
        "content_id": request.content_id,
        "status": code if ctx.config.status_style == "code" else status_word(code),
        "storage": request.storage.model_dump(mode="json"),
        "subtitles": [s.model_dump(mode="json") for s in request.subtitles or []],
    }
    if code == "WM999" and job.failure is not None:
        entry["error_code"] = job.failure.code
        entry["error_message"] = job.failure.meaning
    return entry


def _flag(value: bool) -> str:
    return "true" if value else "false"
