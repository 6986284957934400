"""A synchronous HTTP client for the Packaging API (httpx, injectable transport).

One method per API. Each call signs the API JSON, sends ``pallycon-apidata`` percent-encoded
in the query string (or as a form body), reads at most ``max_response_bytes``, and either
returns the parsed response model or raises one error of :mod:`pallycon.errors`. It never
retries: the caller owns that decision (see ``CallError.retryable``).
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from pallycon.codes import SUCCESS, api_code
from pallycon.errors import (
    ApiError,
    HttpStatusError,
    MalformedResponse,
    OutcomeUnknown,
    RateLimited,
    RequestNotBuilt,
    RequestNotSent,
    ResponseTooLarge,
    ServerError,
)
from pallycon.models import (
    ApiResult,
    JobInfo,
    JobListRequest,
    JobListResponse,
    JobRegisterRequest,
    JobRegisterResponse,
    RequestModel,
    StorageListRequest,
    StorageListResponse,
    StorageRegisterRequest,
    StorageResponse,
    StorageUpdateRequest,
    api_json,
    field_errors,
)
from pallycon.options import API_VERSION, APIDATA
from pallycon.options import ClientOptions as ClientOptions
from pallycon.options import max_api_json_bytes as max_api_json_bytes
from pallycon.signing import SiteCredentials, sign

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"


Clock = Callable[[], datetime]
ResponseT = TypeVar("ResponseT", bound=ApiResult)


def utc_now() -> datetime:
    return datetime.now(UTC)


class PallyConClient:
    """The Packaging API for one site. Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        credentials: SiteCredentials,
        options: ClientOptions | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._credentials = credentials
        self._options = options or ClientOptions()
        self._clock = clock
        opts = self._options
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(opts.read_timeout, connect=opts.connect_timeout),
            limits=httpx.Limits(
                max_connections=opts.pool_size, max_keepalive_connections=opts.pool_size
            ),
            headers={"Accept": "application/json"},
        )

    @property
    def site_id(self) -> str:
        return self._credentials.site_id

    def __enter__(self) -> PallyConClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- The APIs -----------------------------------------------------------------------------

    def register_storage(self, request: StorageRegisterRequest) -> StorageResponse:
        return self._call("POST", "storage", request, StorageResponse)

    def update_storage(self, request: StorageUpdateRequest) -> StorageResponse:
        return self._call("PUT", "storage", request, StorageResponse)

    def list_storages(self, request: StorageListRequest) -> StorageListResponse:
        return self._call("GET", "storage", request, StorageListResponse)

    def register_job(self, request: JobRegisterRequest) -> JobRegisterResponse:
        response = self._call("POST", "pack", request, JobRegisterResponse)
        if not response.job_id:
            raise MalformedResponse("job registration succeeded without a job_id")
        return response

    def list_jobs(
        self, request: JobListRequest, *, only: Collection[str] | None = None
    ) -> JobListResponse:
        """One page of the job list.

        With ``only`` (job ids), other jobs' entries are dropped before they are read into
        models: a poll that wants 10 jobs of a 500-entry page pays for 10.
        """
        body, server_time = self._send("GET", "pack", api_json(request, self._options.wire))
        kept = body if only is None else keep_jobs(body, only)
        return parse_response(
            kept, JobListResponse, server_time=server_time, signed_at=self._clock().timestamp()
        )

    def iter_jobs(self, request: JobListRequest) -> Iterator[JobInfo]:
        """Every job matching ``request``, page after page from ``page_index``."""
        page = request.page_index or 1
        seen = 0
        while True:
            response = self.list_jobs(request.model_copy(update={"page_index": page}))
            yield from response.data
            seen += len(response.data)
            if not response.data or seen >= response.total_count:
                return
            page += 1

    # --- The exchange -------------------------------------------------------------------------

    def _call(
        self, method: str, api: str, request: RequestModel, response_model: type[ResponseT]
    ) -> ResponseT:
        body, server_time = self._send(method, api, api_json(request, self._options.wire))
        return parse_response(
            body, response_model, server_time=server_time, signed_at=self._clock().timestamp()
        )

    def apidata(self, api_json_bytes: bytes) -> str:
        """The ``pallycon-apidata`` value for these exact bytes, signed now."""
        return sign(api_json_bytes, self._credentials, self._clock()).encode()

    def send_raw(self, method: str, api: str, api_json_bytes: bytes) -> dict[str, Any]:
        """Sign and send these exact API JSON bytes; the decoded JSON object of the answer."""
        return self._send(method, api, api_json_bytes)[0]

    def _send(
        self, method: str, api: str, api_json_bytes: bytes
    ) -> tuple[dict[str, Any], float | None]:
        """The decoded answer, and the time of its ``Date`` header (None without one)."""
        status, headers, raw = self._exchange(self._build(method, api, api_json_bytes))
        check_status(status, headers, raw)
        return decode_json(raw), parse_http_date(headers.get("Date"))

    def _build(self, method: str, api: str, api_json_bytes: bytes) -> httpx.Request:
        """The signed request; :class:`RequestNotBuilt` if httpx refuses to build it."""
        if len(api_json_bytes) > self._options.max_api_json_bytes(self.site_id):
            raise RequestNotBuilt(
                f"the API JSON is {len(api_json_bytes)} bytes, over the limit of "
                f"{self._options.max_api_json_bytes(self.site_id)} bytes for "
                f"pallycon-apidata in the {self._options.apidata_in}"
            )
        value = quote(self.apidata(api_json_bytes), safe="")
        url = f"{self._options.base_url}/api/{API_VERSION}/{api}/{quote(self.site_id, safe='')}"
        try:
            if self._options.apidata_in == "query":
                return self._http.build_request(
                    method, f"{url}?{APIDATA}={value}", headers={"Content-Type": JSON_CONTENT_TYPE}
                )
            return self._http.build_request(
                method,
                url,
                content=f"{APIDATA}={value}".encode("ascii"),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        except (httpx.InvalidURL, httpx.HTTPError, httpx.StreamError, ValueError) as exc:
            raise RequestNotBuilt(f"{type(exc).__name__}: {exc}") from exc

    def _exchange(self, request: httpx.Request) -> tuple[int, httpx.Headers, bytes]:
        limit = self._options.max_response_bytes
        try:
            response = self._http.send(request, stream=True)
            try:
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise ResponseTooLarge(limit)
                    chunks.append(chunk)
                return response.status_code, response.headers, b"".join(chunks)
            finally:
                response.close()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            api = shown_url(self._options.base_url)
            raise RequestNotSent(f"{type(exc).__name__}: {exc}", api=api) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise RequestNotBuilt(f"{type(exc).__name__}: {exc}") from exc
        except httpx.DecodingError as exc:  # the answer arrived, but cannot be decoded
            raise MalformedResponse(f"{type(exc).__name__}: {exc}") from exc
        except (httpx.HTTPError, httpx.StreamError) as exc:
            # Read/write timeouts, resets and protocol errors after the request may have left.
            raise OutcomeUnknown(f"{type(exc).__name__}: {exc}") from exc


# --- Pure request sizing and response handling (unit-tested without a server) ----------------


def shown_url(url: str) -> str:
    """``url`` fit for a message: without its user and password, query and fragment."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def check_status(status: int, headers: httpx.Headers, raw: bytes) -> None:
    """Raise the HTTP error for a status other than 200."""
    if status == httpx.codes.OK:
        return
    detail = raw[:200].decode("utf-8", errors="replace").strip()
    if status == httpx.codes.TOO_MANY_REQUESTS:
        raise RateLimited(parse_retry_after(headers.get("Retry-After")), detail)
    if status >= httpx.codes.INTERNAL_SERVER_ERROR:
        raise ServerError(status, detail)
    raise HttpStatusError(status, detail)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; ``None`` if absent or bad."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    when = parse_http_date(text)
    if when is None:
        return None
    return max(0.0, when - (time.time() if now is None else now))


def parse_http_date(value: str | None) -> float | None:
    """An HTTP date (``Date``, ``Retry-After``) as epoch seconds; ``None`` if absent or bad."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


def decode_json(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise MalformedResponse(f"response is not JSON: {raw[:80]!r}") from exc
    if not isinstance(parsed, dict):
        raise MalformedResponse(f"response is not a JSON object: {type(parsed).__name__}")
    return parsed


def keep_jobs(body: dict[str, Any], only: Collection[str]) -> dict[str, Any]:
    """The job list ``body`` without the entries of jobs not in ``only``.

    Only well-formed entries are dropped: anything else stays, to be reported as malformed.
    """
    data = body.get("data")
    if not isinstance(data, list):
        return body
    kept = [entry for entry in data if not _other_job(entry, only)]
    return {**body, "data": kept}


def _other_job(entry: Any, only: Collection[str]) -> bool:
    if not isinstance(entry, dict):
        return False
    job_id = entry.get("job_id")
    if isinstance(job_id, bool) or not isinstance(job_id, str | int):
        return False
    return str(job_id) not in only


def parse_response(
    body: dict[str, Any],
    model: type[ResponseT],
    *,
    server_time: float | None = None,
    signed_at: float | None = None,
) -> ResponseT:
    """Raise :class:`ApiError` for an error code, else the body as ``model``. ``signed_at``:
    the signing clock's time as the answer came (so that a refused timestamp says how far
    that clock is off the answer's ``Date``)."""
    try:
        result = ApiResult.model_validate(body)
    except ValidationError as exc:
        raise MalformedResponse(_describe(exc)) from None
    if result.error_code != SUCCESS:
        entry = api_code(result.error_code)
        raise ApiError(
            result.error_code,
            result.error_message or entry.meaning,
            retryable=entry.retryable,
            server_time=server_time,
            skew=None if server_time is None or signed_at is None else signed_at - server_time,
            hint=entry.hint,
        )
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise MalformedResponse(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    return "unexpected response: " + "; ".join(str(error) for error in field_errors(exc))
