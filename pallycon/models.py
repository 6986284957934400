"""Request and response bodies of the Packaging API, as pydantic models.

Requests (what we write) are strict: every rule of the guide and the notes is enforced, unknown
keys are refused, and :func:`validate_request` turns violations into :class:`InvalidRequest`
naming each field. Responses (what we read) are tolerant where the guide is ambiguous: numbers
given as strings, ``error_code`` unquoted, booleans as ``"true"``, ``output.path`` as a string or
a one-element list, ``status`` as a WM code or a word, unknown keys ignored.

The one written form is decided here (:func:`api_json`): compact UTF-8 JSON, absent options
omitted, ``protect_type`` (the guide's JSON example; its field table says ``protection_type``,
which :class:`WireOptions` can select), formats and protections in lower case, ``output.path``
as a string (the example and the callback use a string), ``search_keyword_type`` spelt as the
field table spells it (``jobName``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    ValidationError,
    field_serializer,
    model_validator,
)
from pydantic_core import PydanticSerializationError

from pallycon.codes import StatusCode, parse_status
from pallycon.errors import FieldError, InvalidRequest
from pallycon.signing import parse_timestamp

CONTENT_ID_MAX_BYTES = 200
NAME_MAX_BYTES = 50
PATH_MAX_BYTES = 512
MIN_BUFFER_TIME_MIN = 2

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_TIME_ZONE_RE = re.compile(r"^[+-]?(\d{2}):(\d{2})$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


# --- Field rules ------------------------------------------------------------------------------


def _max_bytes(limit: int) -> AfterValidator:
    def check(value: str) -> str:
        size = len(value.encode("utf-8"))
        if size > limit:
            raise ValueError(f"must be at most {limit} bytes in UTF-8, got {size}")
        return value

    return AfterValidator(check)


def _printable(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or blank")
    if _CONTROL_RE.search(value):
        raise ValueError("must not contain control characters")
    return value


def _timestamp(value: str) -> str:
    parse_timestamp(value)
    return value


def _time_zone(value: str) -> str:
    match = _TIME_ZONE_RE.match(value)
    if not match or int(match.group(1)) > 14 or int(match.group(2)) >= 60:
        raise ValueError("must be an offset hh:mm such as 09:00 or -05:00")
    return value


def _bucket(value: str) -> str:
    if not _BUCKET_RE.match(value):
        raise ValueError("must be an S3 bucket name: 3-63 of a-z, 0-9, '.', '-'")
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _one_of_list(value: Any) -> Any:
    """``output.path`` is a string in the example and an Array in the table: take both."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("must not repeat a value")
    return values


def _watermark(values: list[str]) -> list[str]:
    if "watermark" not in values:
        raise ValueError("'watermark' is mandatory ('drm' is optional)")
    return values


Text = Annotated[str, AfterValidator(_printable)]
Name = Annotated[str, AfterValidator(_printable), _max_bytes(NAME_MAX_BYTES)]
ContentId = Annotated[str, AfterValidator(_printable), _max_bytes(CONTENT_ID_MAX_BYTES)]
ContentPath = Annotated[str, AfterValidator(_printable), _max_bytes(PATH_MAX_BYTES)]
Timestamp = Annotated[str, AfterValidator(_timestamp)]
TimeZone = Annotated[str, AfterValidator(_time_zone)]
Bucket = Annotated[str, AfterValidator(_bucket)]
StreamingFormat = Annotated[Literal["dash", "hls"], BeforeValidator(_lower)]
Protection = Annotated[Literal["watermark", "drm"], BeforeValidator(_lower)]
StorageType = Annotated[
    Literal["S3"], BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)
]
PositiveInt = Annotated[int, Field(ge=1)]
Height = Annotated[int, Field(ge=1, le=10_000)]

_KEYWORD_TYPES = {"cid": "cid", "jobid": "jobId", "jobname": "jobName"}
_STORAGE_KEYWORD_TYPES = {"storageid": "storageId", "storagename": "storageName"}


def _spelling(table: dict[str, str]) -> BeforeValidator:
    return BeforeValidator(lambda v: table.get(v.lower(), v) if isinstance(v, str) else v)


# --- Requests ---------------------------------------------------------------------------------


class RequestModel(BaseModel):
    """A body we write: strict, unknown keys refused, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StorageRegisterRequest(RequestModel):
    storage_name: Name
    type: StorageType = "S3"
    id: Text = Field(description="AWS access key id")
    password: SecretStr = Field(description="AWS secret access key")
    aws_bucket: Bucket
    description: str | None = None
    region: Text

    @field_serializer("password")
    def _password(self, value: SecretStr, info: SerializationInfo) -> str:
        if isinstance(info.context, dict) and info.context.get("reveal_secrets"):
            return value.get_secret_value()
        return str(value)

    @model_validator(mode="after")
    def _password_not_blank(self) -> StorageRegisterRequest:
        if not self.password.get_secret_value().strip():
            raise ValueError("password: must not be empty")
        return self


class StorageUpdateRequest(RequestModel):
    storage_id: Text
    storage_name: Name | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> StorageUpdateRequest:
        if self.storage_name is None and self.description is None:
            raise ValueError("give storage_name or description to change")
        return self


class _SearchWindow(RequestModel):
    """Paging and time-window options shared by both list APIs."""

    from_: Timestamp | None = Field(default=None, alias="from")
    to: Timestamp | None = None
    page_unit: PositiveInt | None = None
    page_index: PositiveInt | None = None
    time_zone: TimeZone | None = None

    @model_validator(mode="after")
    def _window_order(self) -> _SearchWindow:
        if self.from_ and self.to and parse_timestamp(self.from_) > parse_timestamp(self.to):
            raise ValueError("from: must not be after to")
        return self


class StorageListRequest(_SearchWindow):
    search_keyword: str | None = None
    search_keyword_type: Annotated[
        Literal["storageId", "storageName"] | None, _spelling(_STORAGE_KEYWORD_TYPES)
    ] = None
    storage_type: StorageType = "S3"
    region: Text


class InputStorage(RequestModel):
    storage_id: Text
    contents_path: Annotated[list[ContentPath], Field(min_length=1)]


class OutputStorage(RequestModel):
    storage_id: Text
    path: Annotated[ContentPath, BeforeValidator(_one_of_list)]


class JobStorage(RequestModel):
    input: InputStorage
    output: OutputStorage


class Subtitle(RequestModel):
    path: ContentPath | None = None
    language: str | None = None


class DashOption(RequestModel):
    """``min_buffer_time`` is a Number: written as an integer when it is whole."""

    min_buffer_time: Annotated[float, Field(ge=MIN_BUFFER_TIME_MIN)] | None = None
    enable_average_bandwidth_mpd: bool | None = None

    @field_serializer("min_buffer_time")
    def _whole(self, value: float | None) -> float | int | None:
        return int(value) if value is not None and value.is_integer() else value


class DrmOption(RequestModel):
    multi_key: bool | None = None
    skip_audio_encryption: bool | None = None
    max_sd_height: Height | None = None
    max_hd_height: Height | None = None
    max_uhd1_height: Height | None = None
    clear_lead: Annotated[int, Field(ge=0)] | None = None
    generate_tracktype_manifests: bool | None = None


class JobRegisterRequest(RequestModel):
    """A packaging job: the body producers submit and the worker registers."""

    job_name: Name
    storage: JobStorage
    content_id: ContentId
    streaming_format: Annotated[list[StreamingFormat], Field(min_length=1), AfterValidator(_unique)]
    protection_type: Annotated[
        list[Protection], Field(min_length=1), AfterValidator(_unique), AfterValidator(_watermark)
    ] = Field(validation_alias=AliasChoices("protection_type", "protect_type"))
    subtitles: list[Subtitle] | None = None
    dash_option: DashOption | None = None
    drm_option: DrmOption | None = None

    @property
    def drm(self) -> bool:
        return "drm" in self.protection_type


class JobListRequest(_SearchWindow):
    search_keyword: str | None = None
    search_keyword_type: Annotated[
        Literal["cid", "jobId", "jobName"] | None, _spelling(_KEYWORD_TYPES)
    ] = None
    search_type: Annotated[Literal["watermark", "drm"] | None, BeforeValidator(_lower)] = None
    search_status: Annotated[
        Literal["ready", "success", "failed", "complete", "working", "process", "stop"] | None,
        BeforeValidator(_lower),
    ] = None
    search_condition: Annotated[Literal["dash", "hls"] | None, BeforeValidator(_lower)] = None
    region: Text

    @model_validator(mode="after")
    def _keyword_pair(self) -> JobListRequest:
        if self.search_keyword is not None and self.search_keyword_type is None:
            raise ValueError("search_keyword_type: required with search_keyword")
        if self.search_keyword_type is not None and self.search_keyword is None:
            raise ValueError("search_keyword: required with search_keyword_type")
        return self


# --- The written form -------------------------------------------------------------------------


@dataclass(frozen=True)
class WireOptions:
    """Choices the guide leaves open, fixed per deployment (settings), applied when writing."""

    protection_key: Literal["protect_type", "protection_type"] = "protect_type"


def api_dict(request: RequestModel, wire: WireOptions | None = None) -> dict[str, Any]:
    """The request as the JSON object the API receives (secrets revealed: for signing only).

    A Ctrl-C that lands in one of the models' serializers comes out as the KeyboardInterrupt it
    is: pydantic-core wraps it in a ``PydanticSerializationError`` (its cause), which would
    read as a bug of the request."""
    try:
        body: dict[str, Any] = request.model_dump(
            mode="json", by_alias=True, exclude_none=True, context={"reveal_secrets": True}
        )
    except PydanticSerializationError as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            raise exc.__cause__ from None
        raise
    if isinstance(request, JobRegisterRequest):
        key = (wire or WireOptions()).protection_key
        body = {(key if name == "protection_type" else name): v for name, v in body.items()}
    return body


def api_json(request: RequestModel, wire: WireOptions | None = None) -> bytes:
    """The bytes that get encrypted: compact UTF-8 JSON of :func:`api_dict`."""
    text = json.dumps(api_dict(request, wire), ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


RequestT = TypeVar("RequestT", bound=RequestModel)


def validate_request(model: type[RequestT], data: Any) -> RequestT:
    """Validate ``data`` as ``model``, or raise :class:`InvalidRequest` naming every field."""
    if not isinstance(data, Mapping):
        raise InvalidRequest([FieldError("body", "must be a JSON object")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(field_errors(exc)) from None


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Pydantic errors as FieldErrors, dotted paths (``storage.input.contents_path[0]``)."""
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        path = _dotted(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if path == "protection_type" and error["type"] == "missing":
            # Missing under both spellings: name the one the guide's example and ours use.
            path, message = "protect_type", "Field required (or protection_type)"
        field, sep, rest = message.partition(": ")
        if not path and sep and " " not in field:  # a model rule that names its own field
            path, message = field, rest
        errors.append(FieldError(path or "body", message))
    return errors


def _dotted(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


# --- Responses --------------------------------------------------------------------------------


def _code(value: Any) -> Any:
    """``error_code`` may come unquoted: 0 is ``"0000"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return f"{value:04d}"
    return value


def _id(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _flag(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "y", "yes", "1"}:
            return True
        if lowered in {"false", "n", "no", "0", ""}:
            return False
    return value


def _date(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _list_of_str(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _none_is_empty(value: Any) -> Any:
    return "" if value is None else value


Code = Annotated[str, BeforeValidator(_code)]
Id = Annotated[str, BeforeValidator(_id)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Count = Annotated[int, Field(ge=0)]
Date = Annotated[datetime | None, BeforeValidator(_date), AfterValidator(_utc)]
Message = Annotated[str, BeforeValidator(_none_is_empty)]


class ResponseModel(BaseModel):
    """A body we read: tolerant, unknown keys ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class ApiResult(ResponseModel):
    """The fields every response carries."""

    error_code: Code
    error_message: Message = ""


class StorageResponse(ApiResult):
    storage_id: Id | None = None


class StorageInfo(ResponseModel):
    storage_id: Id
    storage_name: str | None = None
    type: str | None = None
    id: str | None = None
    password: SecretStr | None = Field(default=None, repr=False)
    aws_bucket: str | None = None
    description: str | None = None
    region: str | None = None
    reg_date: Date = None


class StorageListResponse(ApiResult):
    total_count: Count = 0
    time_zone: str | None = None
    data: list[StorageInfo] = Field(default_factory=list)


class JobRegisterResponse(ApiResult):
    job_id: Id | None = None


class InputStorageInfo(ResponseModel):
    storage_id: Id | None = None
    contents_path: Annotated[list[str], BeforeValidator(_list_of_str)] = Field(default_factory=list)


class OutputStorageInfo(ResponseModel):
    storage_id: Id | None = None
    path: Annotated[str | None, BeforeValidator(_one_of_list)] = None


class JobStorageInfo(ResponseModel):
    input: InputStorageInfo | None = None
    output: OutputStorageInfo | None = None


class SubtitleInfo(ResponseModel):
    path: str | None = None
    language: str | None = None


class JobInfo(ResponseModel):
    """One entry of the job list."""

    job_id: Id
    job_name: str | None = None
    start_date: Date = None
    update_date: Date = None
    reg_date: Date = None
    watermark: Flag | None = None
    drm: Flag | None = None
    dash: Flag | None = None
    hls: Flag | None = None
    content_id: str | None = None
    status: Id
    storage: JobStorageInfo | None = None
    subtitles: list[SubtitleInfo] | None = None
    # Not in the guide: the emulator adds these to failed jobs; read them when present.
    error_code: Code | None = None
    error_message: str | None = None

    @property
    def status_info(self) -> StatusCode:
        return parse_status(self.status)


class JobListResponse(ApiResult):
    total_count: Count = 0
    time_zone: str | None = None
    data: list[JobInfo] = Field(default_factory=list)


class CallbackBody(ResponseModel):
    """What PallyCon POSTs to the site's callback URL when a job ends (unsigned: a hint)."""

    job_id: Id
    error_code: Code
    error_message: Message = ""
    input_contents_path: Annotated[list[str], BeforeValidator(_list_of_str)] = Field(
        default_factory=list
    )
    output_path: Annotated[str | None, BeforeValidator(_one_of_list)] = None

    @property
    def succeeded(self) -> bool:
        return self.error_code == "0000"
