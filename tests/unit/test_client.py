"""The client's wire format and error mapping, against httpx.MockTransport (no server)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pallycon.client import ClientOptions, PallyConClient, parse_retry_after, shown_url
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
from pallycon.models import JobListRequest, JobRegisterRequest, validate_request
from pallycon.options import max_api_json_bytes
from pallycon.signing import SiteCredentials, decode_envelope, open_envelope
from support.samples import SAMPLE_SITE, job_body

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LIST = JobListRequest(region="RG011")


def _client(handler: Callable[[httpx.Request], httpx.Response], **options) -> PallyConClient:
    return PallyConClient(
        SAMPLE_SITE,
        ClientOptions(base_url="https://api.test", **options),
        transport=httpx.MockTransport(handler),
        clock=lambda: NOW,
    )


def _ok(**fields) -> httpx.Response:
    return httpx.Response(200, json={"error_code": "0000", "error_message": "Success", **fields})


def test_query_mode_sends_percent_encoded_apidata_and_no_body():
    """GET/POST carry pallycon-apidata in the query string, percent-encoded, body empty."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _ok(job_id=5)

    with _client(handler) as client:
        client.register_job(validate_request(JobRegisterRequest, job_body()))
    request = seen[0]
    assert request.method == "POST"
    assert request.url.path == "/api/v2/pack/TUTO"
    raw_query = urlsplit(str(request.url)).query
    assert raw_query.startswith("pallycon-apidata=")
    assert "+" not in raw_query
    assert "/" not in raw_query.partition("=")[2]
    assert request.content == b""
    value = parse_qs(raw_query)["pallycon-apidata"][0]
    api_json = open_envelope(decode_envelope(value), SAMPLE_SITE)
    assert json.loads(api_json)["content_id"] == "episode-1"
    assert decode_envelope(value).timestamp == "2024-05-01T12:00:00Z"


def test_form_mode_sends_a_form_body():
    """With apidata_in='form', the value travels url-encoded in the body."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _ok(data=[], total_count=0)

    with _client(handler, apidata_in="form") as client:
        client.list_jobs(LIST)
    request = seen[0]
    assert request.url.query == b""
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    value = parse_qs(request.content.decode())["pallycon-apidata"][0]
    assert json.loads(open_envelope(decode_envelope(value), SAMPLE_SITE)) == {"region": "RG011"}


def _raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused"), RequestNotSent),
        (httpx.ConnectTimeout("slow connect"), RequestNotSent),
        (httpx.PoolTimeout("pool"), RequestNotSent),
        (httpx.ReadTimeout("slow answer"), OutcomeUnknown),
        (httpx.WriteTimeout("slow send"), OutcomeUnknown),
        (httpx.RemoteProtocolError("server disconnected"), OutcomeUnknown),
        (httpx.ReadError("connection reset"), OutcomeUnknown),
        (httpx.LocalProtocolError("bad header"), OutcomeUnknown),
        (httpx.TooManyRedirects("loop"), OutcomeUnknown),
        (httpx.StreamConsumed(), OutcomeUnknown),
        (httpx.DecodingError("bad gzip"), MalformedResponse),
    ],
)
def test_transport_errors_say_whether_the_request_may_have_arrived(exc, expected):
    """Connect failures are 'not sent' (safe to resend); the rest are 'outcome unknown'."""
    with _client(_raising(exc)) as client, pytest.raises(expected) as caught:
        client.list_jobs(LIST)
    assert type(caught.value) is expected
    assert caught.value.retryable
    assert caught.value.__cause__ is exc


@pytest.mark.parametrize(
    "exc", [httpx.InvalidURL("URL too long"), httpx.UnsupportedProtocol("no scheme")]
)
def test_a_request_that_cannot_be_built_is_never_sent_again(exc):
    """Errors that say the request itself is impossible: RequestNotBuilt, not retryable."""
    with _client(_raising(exc)) as client, pytest.raises(RequestNotBuilt) as caught:
        client.list_jobs(LIST)
    assert isinstance(caught.value, RequestNotSent)
    assert not caught.value.retryable


def _paths(count: int) -> dict[str, Any]:
    return job_body(storage={"input": {"storage_id": "ST1", "contents_path": [
        f"in/{n:04d}-{'x' * 480}.mp4" for n in range(count)]},
        "output": {"storage_id": "ST2", "path": "out"}})  # fmt: skip


@pytest.mark.parametrize(
    ("base_url", "site_id"),
    [("https://api.test", "TUTO"), ("https://api.pallycon.com", None),
     ("http://127.0.0.1:8600/some/prefix", "A" * 32)],
)  # fmt: skip
def test_the_size_limit_is_exactly_what_the_url_can_carry(base_url, site_id):
    """A request of the limit's size fits httpx's URL limit; one byte more cannot be sent."""
    limit = max_api_json_bytes(base_url, "query", site_id)
    site = SiteCredentials.of(site_id or "X" * 32, "key", "k" * 32)
    sent: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(len(str(request.url)))
        return _ok(job_id=1)

    with PallyConClient(
        site, ClientOptions(base_url=base_url), transport=httpx.MockTransport(handler)
    ) as client:
        client.send_raw("POST", "pack", b"x" * limit)
        with pytest.raises(RequestNotBuilt, match=f"over the limit of {limit} bytes"):
            client.send_raw("POST", "pack", b"x" * (limit + 1))
    assert 65_536 - 64 <= sent[0] <= 65_536  # sizes grow in AES blocks of base64 characters
    assert 30_000 < limit < 37_000


def test_an_oversized_job_is_refused_before_it_is_signed():
    """A job with many long input paths: RequestNotBuilt naming its size, nothing sent."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return _ok(job_id=1)

    body = validate_request(JobRegisterRequest, _paths(80))
    with _client(handler) as client, pytest.raises(RequestNotBuilt, match="bytes, over the limit"):
        client.register_job(body)
    assert sent == []


def test_form_bodies_have_a_fixed_ceiling():
    """In a form body the URL does not limit the size: a documented ceiling does."""
    assert max_api_json_bytes("https://api.test", "form", "TUTO") == 128 * 1024


@pytest.mark.parametrize(
    ("response", "expected", "retryable"),
    [
        (httpx.Response(503, text="busy"), ServerError, True),
        (httpx.Response(500), ServerError, True),
        (httpx.Response(404, text="no route"), HttpStatusError, False),
        (httpx.Response(200, text="<html>gateway</html>"), MalformedResponse, True),
        (httpx.Response(200, json=[1, 2]), MalformedResponse, True),
        (httpx.Response(200, json={"error_message": "no code"}), MalformedResponse, True),
        (httpx.Response(200, json={"error_code": "0000", "data": "oops"}), MalformedResponse, True),
        (httpx.Response(200, json={"error_code": "0000", "total_count": -1}), MalformedResponse, True),
        (httpx.Response(200, json={"error_code": "A1000", "error_message": "bad region"}), ApiError, False),
        (httpx.Response(200, json={"error_code": "A1002"}), ApiError, True),
        (httpx.Response(200, json={"error_code": "Z9"}), ApiError, False),
    ],
)  # fmt: skip
def test_responses_map_to_one_error_each(response, expected, retryable):
    """Each bad answer is one error class with the right retry advice, never a crash."""
    with _client(lambda _: response) as client, pytest.raises(expected) as caught:
        client.list_jobs(LIST)
    assert type(caught.value) is expected
    assert caught.value.retryable is retryable


def test_api_error_carries_code_and_message():
    """ApiError keeps the service's code and message (or the table's meaning)."""
    body = {"error_code": "A1003", "error_message": ""}
    with (
        _client(lambda _: httpx.Response(200, json=body)) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.list_jobs(LIST)
    assert (caught.value.code, caught.value.message) == ("A1003", "Cannot find the site ID")
    assert str(caught.value) == "A1003: Cannot find the site ID (is the site id right?)"


def test_rate_limit_carries_retry_after():
    """429 becomes RateLimited with the delay the server asked for."""
    response = httpx.Response(429, headers={"Retry-After": "7"})
    with _client(lambda _: response) as client, pytest.raises(RateLimited) as caught:
        client.list_jobs(LIST)
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), (" 0 ", 0.0), (None, None), ("soon", None), ("-1", None),
     ("Wed, 01 May 2024 12:00:30 GMT", 30.0), ("Wed, 01 May 2024 11:00:00 GMT", 0.0)],
)  # fmt: skip
def test_retry_after_seconds_or_http_date(value, expected):
    """Delta-seconds or an HTTP date (relative to now, never negative)."""
    assert parse_retry_after(value, now=NOW.timestamp()) == expected


def test_a_response_larger_than_the_limit_is_refused_without_reading_it_all():
    """A multi-megabyte body stops at max_response_bytes as ResponseTooLarge."""
    chunks_read = []

    def stream() -> Iterator[bytes]:
        for _ in range(64):
            chunks_read.append(1)
            yield b" " * 65536

    response = httpx.Response(200, content=stream())
    limit = 256 * 1024
    with (
        _client(lambda _: response, max_response_bytes=limit) as client,
        pytest.raises(ResponseTooLarge, match="larger than") as caught,
    ):
        client.list_jobs(LIST)
    assert len(chunks_read) < 64
    assert isinstance(caught.value, MalformedResponse)
    assert caught.value.limit == limit


def test_an_api_error_carries_the_time_of_the_answer():
    """The Date header rides on ApiError (A1002 compares clocks with it)."""
    date = "Wed, 01 May 2024 12:05:00 GMT"
    answer = httpx.Response(200, json={"error_code": "A1002"}, headers={"Date": date})
    with _client(lambda _: answer) as client, pytest.raises(ApiError) as caught:
        client.list_jobs(LIST)
    assert caught.value.server_time == NOW.timestamp() + 300
    undated = httpx.Response(200, json={"error_code": "A1002"})
    with _client(lambda _: undated) as client, pytest.raises(ApiError) as caught:
        client.list_jobs(LIST)
    assert caught.value.server_time is None


def test_registration_without_job_id_is_malformed():
    """Success without a job id cannot be recorded: it is an error, not a None id."""
    with _client(lambda _: _ok()) as client, pytest.raises(MalformedResponse, match="job_id"):
        client.register_job(validate_request(JobRegisterRequest, job_body()))


def test_iter_jobs_walks_every_page():
    """iter_jobs asks page after page until total_count entries are seen."""
    pages = {1: ["1", "2"], 2: ["3", "4"], 3: ["5"]}
    asked = []

    def handler(request: httpx.Request) -> httpx.Response:
        value = parse_qs(urlsplit(str(request.url)).query)["pallycon-apidata"][0]
        index = json.loads(open_envelope(decode_envelope(value), SAMPLE_SITE))["page_index"]
        asked.append(index)
        data = [{"job_id": i, "status": "WM030"} for i in pages[index]]
        return _ok(total_count="5", data=data)

    with _client(handler) as client:
        ids = [job.job_id for job in client.iter_jobs(JobListRequest(region="RG011", page_unit=2))]
    assert ids == ["1", "2", "3", "4", "5"]
    assert asked == [1, 2, 3]


def test_a_page_read_for_some_jobs_models_only_theirs():
    """list_jobs(only=...) drops other jobs' entries before reading them; ids may be numbers."""
    data = [{"job_id": 7, "status": "WM030"}, {"job_id": "8", "status": "WM010"},
            {"job_id": "9", "status": "WM030"}]  # fmt: skip
    with _client(lambda _: _ok(total_count="3", data=data)) as client:
        page = client.list_jobs(LIST, only={"7", "9"})
        everything = client.list_jobs(LIST)
    assert [job.job_id for job in page.data] == ["7", "9"]
    assert page.total_count == 3
    assert [job.job_id for job in everything.data] == ["7", "8", "9"]


@pytest.mark.parametrize("entry", ["junk", {"status": "WM030"}, {"job_id": [1], "status": "WM030"}])
def test_a_malformed_entry_is_still_reported_when_reading_some_jobs(entry):
    """Only well-formed entries of other jobs are dropped unread; anything else is malformed."""
    data = [{"job_id": "8", "status": "WM030"}, entry]
    with (
        _client(lambda _: _ok(total_count="2", data=data)) as client,
        pytest.raises(MalformedResponse),
    ):
        client.list_jobs(LIST, only={"7"})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.pallycon.com", "https://api.pallycon.com"),
        ("http://127.0.0.1:8600", "http://127.0.0.1:8600"),
        (
            "https://user:secret@api.example.com:8443/base?token=t#f",
            "https://api.example.com:8443/base",
        ),
    ],
)
def test_the_api_is_named_without_credentials_or_query(url: str, shown: str):
    """Where an unreachable API is named: no user, password, query or fragment."""
    assert shown_url(url) == shown
