"""``pallycon-pack http`` as an upstream system uses it: a real server process over a real Redis,
called over HTTP with bearer tokens. Idempotency, batches in both formats, paging, site scopes
and read-only tokens, the problems of every refusal (401, 403, 404, 405, 409, 413, 415, 422,
429, 503), retry and cancel, health; then Schemathesis against its /openapi.json.

One server process serves the module (its limits high); the limits are tried on an app of the
same code in this process, on a real port, whose limits are low.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from pallycon_config import Settings
from pallycon_pack.web import asgi
from pallycon_pack.web.http_api import app as http_app
from pallycon_pack.web.http_api.app import busy_answer, create_app
from pallycon_pack.web.http_api.contract import EXAMPLE, OPENAPI
from pallycon_pack.web.http_api.service import Limits, Service
from pallycon_producers.api import Producer
from pallycon_store.events import EventType, State, event
from pallycon_store.record import Fields
from pallycon_store.records import Change
from pallycon_store.tokens import ApiToken, Tokens
from pallycon_store.wiring import Store
from support.env import clean_env
from support.processes import PALLYCON_PACK, ServerProcess, cli
from support.queue import announce_sites, eventually, make_settings
from support.redis_server import RedisServer, free_port
from support.samples import job_body

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
LISTENING = re.compile(r"listening on (http://[\w.:-]+)")
#: Sites the workers serve, as they announce them (no worker runs here): TUTO the default.
DEFAULT_SITE, OTHER_SITE = "TUTO", "OTHERSITE"


class Api:
    """The server, the store behind it, and a token of each kind."""

    def __init__(
        self, server: ServerProcess, settings: Settings, tokens: dict[str, str], log: Path
    ) -> None:
        self.server = server
        self.log = log
        self.url = server.url
        self.settings = settings
        self.store = Store.of(settings)
        self.producer = Producer.from_settings(settings)
        self.tokens = tokens

    def client(self, name: str | None = "admin") -> httpx.Client:
        """A client with the token of ``name`` (None: none)."""
        headers = {"Authorization": f"Bearer {self.tokens[name]}"} if name else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def api(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = make_settings(redis_server.url, "http://127.0.0.1:9")
    producer = Producer.from_settings(settings)
    announce_sites(producer, DEFAULT_SITE, OTHER_SITE)
    store = Tokens(producer.redis, producer.keys)
    now = time.time()
    tokens = {
        "admin": store.add("admin", now)[0],
        "other": store.add("other-site", now, sites=[OTHER_SITE])[0],
        "reader": store.add("reader", now, read_only=True)[0],
    }
    env = clean_env(
        settings.environment(), PALLYCON_HTTP_RATE="100000", PALLYCON_HTTP_BURST="100000"
    )
    root = tmp_path_factory.mktemp("http")
    log = root / "http.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*PALLYCON_PACK, "http", "--port", "0", "--access-log"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, text=True,
        )  # fmt: skip
    server = ServerProcess("", process)
    try:
        listening = eventually(lambda: LISTENING.search(log.read_text()), bool, timeout=30)
        assert listening is not None
        server.url = listening[1]
        yield Api(server, settings, tokens, log)
    finally:
        server.stop()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem document of ``response``, checked: its status, type and fields."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:pallycon-pack:problem:")
    assert {"title", "detail", "errors"} <= set(body)
    assert "Traceback" not in response.text
    return body


def fields(body: dict[str, Any]) -> list[Any]:
    return [error["field"] for error in body["errors"]]


def test_the_same_request_twice_is_one_request(api: Api):
    """Under one Idempotency-Key: 201 with Location, then 200 with the same record (the key
    bare or quoted); another body under the key is 409 naming request_id, and nothing
    changes."""
    with api.client() as http:
        first = http.post(
            "/v1/requests", json={"body": job_body()}, headers={"Idempotency-Key": "idem-1"}
        )
        again = http.post(
            "/v1/requests", json={"body": job_body()}, headers={"Idempotency-Key": "idem-1"}
        )
        other = http.post(
            "/v1/requests",
            json={"body": job_body(content_id="another")},
            headers={"Idempotency-Key": "idem-1"},
        )
        both = http.post(
            "/v1/requests",
            json={"body": job_body(), "request_id": "idem-2"},
            headers={"Idempotency-Key": "idem-1"},
        )
        quoted = http.post(  # the IETF draft's form: a structured-field string
            "/v1/requests", json={"body": job_body()}, headers={"Idempotency-Key": '"idem-1"'}
        )
    assert first.status_code == 201, first.text
    assert first.headers["location"] == "/v1/requests/idem-1"
    assert again.status_code == 200, again.text
    assert again.headers["location"] == "/v1/requests/idem-1"
    assert again.json()["record"] == first.json()["record"]
    assert first.json()["record"]["state"] == "accepted"
    assert fields(problem(other, 409)) == ["request_id"]
    assert fields(problem(both, 422)) == ["request_id"]
    assert quoted.status_code == 200, quoted.text
    assert quoted.json()["record"] == first.json()["record"]
    record = api.producer.get("idem-1")
    assert record is not None
    assert record.content_id == "episode-1"
    assert record.version == 1


def test_an_invalid_request_names_every_field(api: Api):
    """422 naming the body's fields under body., the others as they are; 400 for no JSON."""
    with api.client() as http:
        bad = http.post(
            "/v1/requests",
            json={
                "body": job_body(streaming_format=["mp4"], content_id=""),
                "metadata": [1],
                "priority": "urgent",
            },
        )
        shape = http.post("/v1/requests", json={"job": job_body()})
        key = http.post(
            "/v1/requests", json={"body": job_body()}, headers={"Idempotency-Key": "no spaces"}
        )
        broken = http.post(
            "/v1/requests", content=b"{", headers={"Content-Type": "application/json"}
        )
    named = fields(problem(bad, 422))
    assert {"body.streaming_format[0]", "body.content_id", "metadata", "priority"} <= set(named)
    assert fields(problem(shape, 422)) == [None]
    assert "unknown key(s) job" in problem(shape, 422)["errors"][0]["message"]
    assert fields(problem(key, 422)) == ["Idempotency-Key"]
    problem(broken, 400)


def test_a_batch_in_json_lines_or_an_array_all_or_nothing(api: Api):
    """JSON Lines and an array give a result per item; a bad item is named by its line and
    field, and then nothing is recorded."""
    lines = [{"request_id": f"lines-{n}", "body": job_body(job_name=f"ep-{n}")} for n in range(3)]
    text = "\n".join(json.dumps(line) for line in lines[:2]) + "\n\n" + json.dumps(lines[2])
    ndjson = {"Content-Type": "application/x-ndjson"}
    with api.client() as http:
        first = http.post("/v1/requests/batch", content=text, headers=ndjson)
        again = http.post("/v1/requests/batch", json=lines)
        bad_items = [
            {"request_id": "array-1", "body": job_body()},
            {"request_id": "array-2", "body": job_body(storage={})},
            {"request_id": "array-3", "body": job_body(), "site_id": "NOSUCHSITE"},
            {"body": job_body(), "colour": "red"},
        ]
        bad = http.post("/v1/requests/batch", json=bad_items)
        not_json = http.post("/v1/requests/batch", content="{}\nnope\n", headers=ndjson)
        text_plain = http.post(
            "/v1/requests/batch", content=text, headers={"Content-Type": "text/plain"}
        )
        empty = http.post("/v1/requests/batch", json=[])
        taken = [
            {"request_id": "lines-0", "body": job_body(job_name="another")},
            {"request_id": "fresh-1", "body": job_body()},
            {"request_id": "lines-2", "body": job_body(job_name="another")},
        ]
        conflict = http.post("/v1/requests/batch", json=taken)
    assert first.status_code == 200, first.text
    assert first.json()["results"] == [
        {"line": 1, "request_id": "lines-0", "created": True},
        {"line": 2, "request_id": "lines-1", "created": True},
        {"line": 4, "request_id": "lines-2", "created": True},  # line 3 is blank
    ]
    assert (first.json()["created"], first.json()["existing"]) == (3, 0)
    assert again.status_code == 200, again.text
    assert (again.json()["created"], again.json()["existing"]) == (0, 3)
    record = api.producer.get("lines-0")
    assert record is not None
    assert record.priority == "bulk"
    errors = problem(bad, 422)["errors"]
    assert {(e["line"], e["field"]) for e in errors} == {
        (2, "body.storage.input"),
        (2, "body.storage.output"),
        (3, "site_id"),
        (4, None),
    }
    assert api.producer.get("array-1") is None  # all or nothing
    assert problem(not_json, 400)["errors"][0]["line"] == 2
    problem(text_plain, 415)
    problem(empty, 422)
    named = problem(conflict, 409)
    assert [(e["line"], e["field"]) for e in named["errors"]] == [
        (1, "request_id"),
        (3, "request_id"),
    ]
    assert api.producer.get("fresh-1") is None


def test_pages_follow_each_other_to_the_end(api: Api):
    """limit per page, newest first, next until null: every request once; the Link header
    carries the filters; a cursor this server did not give is 422 naming it."""
    items = [{"request_id": f"page-{n:02}", "body": job_body()} for n in range(7)]
    with api.client() as http:
        assert http.post("/v1/requests/batch", json=items).status_code == 200
        api.store.records.get_many(["page-00"])
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 3, "since": "1h", "state": "accepted"}
            if cursor:
                params["cursor"] = cursor
            page = http.get("/v1/requests", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            seen += [r["request_id"] for r in body["requests"]]
            pages += 1
            cursor = body["next"]
            if cursor is None:
                assert "link" not in page.headers
                break
            assert 'rel="next"' in page.headers["link"]
            assert "state=accepted" in page.headers["link"]
        bad = http.get("/v1/requests", params={"cursor": "not-a-cursor"})
        wrong = http.get("/v1/requests", params={"state": "lost", "limit": "0", "since": "soon"})
    mine = [rid for rid in seen if rid.startswith("page-")]
    assert mine == [f"page-{n:02}" for n in reversed(range(7))]  # one batch: one time, by id
    assert len(seen) == len(set(seen))
    assert pages >= 3
    assert fields(problem(bad, 422)) == ["cursor"]
    assert set(fields(problem(wrong, 422))) == {"state", "limit", "since"}


def test_a_site_token_sees_and_submits_its_sites_only(api: Api):
    """Another site's request is not found (404, as one that does not exist), and its id
    cannot be used: 422, "unavailable", not the 409 of an id used by another body; a list holds
    only its sites; submitting for another site (or none: the default) is 403 naming site_id.
    A read-only token reads, and is refused every write (403)."""
    with api.client() as admin:
        made = admin.post("/v1/requests", json={"request_id": "tuto-1", "body": job_body()})
        assert made.status_code == 201
    with api.client("other") as other:
        hidden = other.get("/v1/requests/tuto-1")
        hidden_retry = other.post("/v1/requests/tuto-1/cancel")
        mine = other.post(
            "/v1/requests",
            json={"request_id": "other-1", "body": job_body(), "site_id": OTHER_SITE},
        )
        theirs = other.post("/v1/requests", json={"request_id": "x-1", "body": job_body()})
        squat = {"body": job_body(), "site_id": OTHER_SITE}
        taken = other.post("/v1/requests", json=squat, headers={"Idempotency-Key": "tuto-1"})
        taken_in_batch = other.post(
            "/v1/requests/batch", json=[squat, {**squat, "request_id": "tuto-1"}]
        )
        listed = other.get("/v1/requests", params={"limit": 500}).json()["requests"]
        asked = other.get("/v1/requests", params={"site": DEFAULT_SITE})
        batch = other.post(
            "/v1/requests/batch",
            json=[
                {"body": job_body(), "site_id": OTHER_SITE},
                {"body": job_body(), "site_id": DEFAULT_SITE},
            ],
        )
    with api.client("other") as other:
        never = problem(other.get("/v1/requests/never-was"), 404)
    assert problem(hidden, 404)["detail"] == never["detail"].replace("never-was", "tuto-1")
    problem(hidden_retry, 404)
    assert mine.status_code == 201, mine.text
    assert fields(problem(theirs, 403)) == ["site_id"]
    for refused in (taken, taken_in_batch):  # not a 409: nothing says tuto-1 exists
        body = problem(refused, 422)
        assert "another body" not in refused.text
        assert [e["field"] for e in body["errors"]] == ["request_id"]
        assert body["errors"][0]["message"].startswith("unavailable")
    assert problem(taken_in_batch, 422)["errors"][0]["line"] == 2
    assert {r.get("site_id") for r in listed} == {OTHER_SITE}
    assert fields(problem(asked, 403)) == ["site"]
    assert [(e["line"], e["field"]) for e in problem(batch, 403)["errors"]] == [(2, "site_id")]
    with api.client("reader") as reader:
        assert reader.get("/v1/requests/tuto-1").status_code == 200
        assert reader.get("/v1/requests/other-1").status_code == 200
        for path in ("/v1/requests", "/v1/requests/batch"):
            assert fields(problem(reader.post(path, json={"body": job_body()}), 403)) == [None]
        problem(reader.post("/v1/requests/tuto-1/retry"), 403)
        problem(reader.post("/v1/requests/tuto-1/cancel"), 403)


def test_without_a_token_that_is_one_nothing_is_answered(api: Api):
    """401 with WWW-Authenticate, without a token, with another scheme, or a made-up one; a
    route that does not exist is 404, a method 405, always as problems."""
    with api.client(None) as http:
        for headers in (
            {},
            {"Authorization": "Basic YWRtaW46YWRtaW4="},
            {"Authorization": "Bearer pph_x"},
        ):
            refused = http.get("/v1/requests", headers=headers)
            assert fields(problem(refused, 401)) == ["Authorization"]
            assert refused.headers["www-authenticate"].startswith("Bearer")
        problem(http.get("/v2/things"), 404)
    with api.client() as http:
        refused = http.delete("/v1/requests")
        problem(http.get("/v1/requests/batch/more"), 404)
    problem(refused, 405)
    assert refused.headers["allow"] == "GET, HEAD, POST"
    assert refused.headers["x-content-type-options"] == "nosniff"


def _fail(api: Api, request_id: str) -> None:
    """The request failed at PallyCon (WM900013), as a worker records it."""
    record = api.producer.get(request_id)
    assert record is not None
    now = time.time()
    failed = Fields(
        state=State.FAILED, error_stage="packaging", error_code="WM900013",
        error_message="input file not found", updated_at=now, finished_at=now,
    )  # fmt: skip
    said = event(EventType.FAILED, request_id, now, stage="packaging", code="WM900013")
    assert api.producer.records.apply([Change(record, failed, said, finish=True)]) == [True]


def test_retry_and_cancel_as_the_commands_do(api: Api):
    """A failed request is retried (once: then it is not failed, 409); an accepted one is
    cancelled (once: then it is finished, still 200); an unknown id is 404."""
    with api.client() as http:
        for rid in ("to-retry", "to-cancel"):
            created = http.post("/v1/requests", json={"request_id": rid, "body": job_body()})
            assert created.status_code == 201
        _fail(api, "to-retry")
        retried = http.post("/v1/requests/to-retry/retry")
        twice = http.post("/v1/requests/to-retry/retry")
        cancelled = http.post("/v1/requests/to-cancel/cancel", json={"reason": "not needed"})
        again = http.post("/v1/requests/to-cancel/cancel")
        unknown = http.post("/v1/requests/nothing-here/cancel")
        untyped = http.post("/v1/requests/to-retry/cancel", content=iter([b"garbage"]))
        bad_reason = http.post("/v1/requests/to-cancel/cancel", json={"why": "x"})
        shown = http.get("/v1/requests/to-retry").json()
    assert retried.status_code == 200, retried.text
    assert retried.json()["action"] == "resubmit"
    problem(twice, 409)
    assert cancelled.json() == {
        "request_id": "to-cancel",
        "outcome": "cancelled",
        "message": "cancelled before it was registered",
    }
    record = api.producer.get("to-cancel")
    assert record is not None
    assert "not needed" in record.error_message
    assert again.status_code == 200
    assert again.json()["outcome"] == "finished"
    problem(unknown, 404)
    problem(bad_reason, 422)
    problem(untyped, 415)  # a chunked body without a type: refused, nothing cancelled
    assert [e["type"] for e in shown["events"]] == ["accepted", "failed", "accepted"]
    assert shown["record"]["state"] == "accepted"


def test_health_and_the_contract_need_no_token(api: Api):
    with httpx.Client(base_url=api.url, timeout=10) as http:
        assert http.get("/health/live").json() == {"status": "ok"}
        assert http.get("/health/ready").json() == {"status": "ok"}
        assert http.get("/openapi.json").json() == json.loads(json.dumps(OPENAPI))


@pytest.fixture(scope="module")
def limited(api: Api) -> Iterator[str]:
    """The same app in this process on a real port, its limits low: 2 requests at once, one
    every 100 s; bodies of 2 KiB at most."""
    service = Service(Store.of(api.settings), Limits(rate=0.01, burst=2))
    server = asgi.make_server(
        create_app(service, max_body_bytes=2048, body_timeout=10),
        "127.0.0.1",
        0,
        settings_prefix="PALLYCON_HTTP",
    )
    with asgi.running(server) as url:
        yield url


def test_a_token_past_its_rate_waits_and_a_large_body_is_refused(api: Api, limited: str):
    """429 with Retry-After once the burst is spent, for that token only (another's bucket
    is its own); 413 for a body over the limit, declared or streamed."""
    headers = {"Authorization": f"Bearer {api.tokens['reader']}"}
    with httpx.Client(base_url=limited, headers=headers, timeout=10) as http:
        assert http.get("/v1/requests/none").status_code == 404
        assert http.get("/v1/requests/none").status_code == 404
        throttled = http.get("/v1/requests/none")
    assert int(problem(throttled, 429)["status"]) == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 100
    headers = {"Authorization": f"Bearer {api.tokens['admin']}"}
    big = {"body": job_body(), "metadata": {"pad": "x" * 4096}}
    with httpx.Client(base_url=limited, headers=headers, timeout=10) as http:
        problem(http.post("/v1/requests", json=big), 413)

        def chunks() -> Iterator[bytes]:
            yield json.dumps(big).encode()

        streamed = http.post(
            "/v1/requests", content=chunks(), headers={"Content-Type": "application/json"}
        )
    problem(streamed, 413)


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """What the server writes on ``sock`` before it closes it: (status, headers, body)."""
    sock.settimeout(30)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


def test_a_slow_body_is_408_and_connections_beyond_the_limit_503(api: Api):
    """A body not received whole within the deadline: 408 problem, the connection closed.
    With as many connections open as the server takes, one more is answered a 503 problem
    and closed."""
    service = Service(Store.of(api.settings), Limits(rate=100_000, burst=100_000))
    app = create_app(service, max_body_bytes=2048, body_timeout=0.5)
    server = asgi.make_server(
        app, "127.0.0.1", 0, settings_prefix="PALLYCON_HTTP", max_connections=2, busy=busy_answer()
    )
    token = api.tokens["admin"]
    with asgi.running(server) as url:
        address = (url.split("//")[1].split(":")[0], int(url.rsplit(":", 1)[1]))
        with socket.create_connection(address) as slow:
            slow.sendall(
                f"POST /v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
            )
            status, headers, body = _answer(slow)
        assert status == 408
        assert headers["content-type"] == PROBLEM
        assert json.loads(body)["type"].endswith(":request-timeout")
        with httpx.Client(base_url=url) as one, httpx.Client(base_url=url) as two:
            assert one.get("/health/live").status_code == 200  # both kept open
            assert two.get("/health/live").status_code == 200
            with socket.create_connection(address) as third:
                status, headers, body = _answer(third)
        assert status == 503
        assert headers["content-type"] == PROBLEM
        assert headers["retry-after"] == "1"
        assert "PALLYCON_HTTP_MAX_CONNECTIONS" in json.loads(body)["detail"]


def test_not_ready_while_redis_is_away(api: Api):
    """/health/ready is 503 (a problem naming Redis) when Redis does not answer; live is
    200; a /v1 route is 503, not a 500."""
    away = api.settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    service = Service(Store.of(away, deadline=1.0), Limits(rate=10, burst=10))
    server = asgi.make_server(
        create_app(service, max_body_bytes=2048, body_timeout=10),
        "127.0.0.1",
        0,
        settings_prefix="PALLYCON_HTTP",
    )
    with asgi.running(server) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/health/live").status_code == 200
        assert "Redis at" in problem(http.get("/health/ready"), 503)["detail"]
        problem(http.get("/v1/requests", headers={"Authorization": "Bearer x"}), 503)


class _Kept(logging.Handler):
    """The records of a logger, kept."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def http_log(monkeypatch: pytest.MonkeyPatch) -> _Kept:
    """What the HTTP API logs in this process, from debug up: its logger replaced by one of
    this test's own (a server another test runs in this process configures the real one)."""
    kept = _Kept()
    logger = logging.Logger("pallycon_pack.http", logging.DEBUG)
    logger.addHandler(kept)
    monkeypatch.setattr(http_app, "log", logger)
    return kept


def test_a_fault_of_the_server_is_a_500_problem_without_its_traceback(api: Api, http_log: _Kept):
    """An error no handler expects: 500, a problem saying it is logged (once), nothing of the
    error, and the connection still serves the next request. A client that leaves in the
    middle of its body is no error of the server: nothing logged as one."""

    class Broken(Service):
        def show(self, token: ApiToken, request_id: str) -> dict[str, Any]:
            raise RuntimeError("a fault with an internal detail")

    # Limits as high as the module's server's: the token's bucket is shared with the tests
    # that spend it (the limited app's)
    service = Broken(Store.of(api.settings), Limits(rate=100_000, burst=100_000))
    server = asgi.make_server(
        create_app(service, max_body_bytes=2048, body_timeout=10),
        "127.0.0.1",
        0,
        settings_prefix="PALLYCON_HTTP",
    )
    token = api.tokens["admin"]
    headers = {"Authorization": f"Bearer {token}"}
    with asgi.running(server) as url, httpx.Client(base_url=url, headers=headers) as http:
        failed = http.get("/v1/requests/anything")
        after = http.get("/v1/requests", params={"limit": 1})  # the same connection
        address = (url.split("//")[1].split(":")[0], int(url.rsplit(":", 1)[1]))
        with socket.create_connection(address) as leaving:
            leaving.sendall(
                f"POST /v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a'.encode()
            )
        eventually(
            lambda: [record.getMessage() for record in http_log.records],
            lambda said: any("before its body's end" in line for line in said),
            timeout=10,
        )
    body = problem(failed, 500)
    assert body["type"] == "urn:pallycon-pack:problem:internal-error"
    assert "internal detail" not in failed.text
    assert after.status_code == 200, after.text
    errors = [record for record in http_log.records if record.levelno >= logging.ERROR]
    assert [record.getMessage() for record in errors] == ["GET /v1/requests/anything failed"]


def test_tokens_are_shown_once_and_kept_as_hashes(api: Api, tmp_path: Path):
    """tokens add prints the token (and only then); list never shows it, Redis holds its
    SHA-256 only; remove refuses it at once; a name taken or unknown is exit 2."""
    env = clean_env(api.settings.environment())
    added = cli(
        "tokens", "add", "cms-1", "--site", OTHER_SITE, "--read-only", env=env, cwd=tmp_path
    )
    assert added.returncode == 0, added.stderr
    token = added.stdout.decode().strip()
    assert token.startswith("pph_")
    assert token.encode() not in added.stderr
    listed = cli("tokens", "list", "--json", env=env, cwd=tmp_path)
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["cms-1"]["sites"] == [OTHER_SITE]
    assert rows["cms-1"]["read_only"] is True
    assert token.encode() not in listed.stdout
    dump = dict(api.store.redis.hgetall(api.store.keys.http_tokens).items())
    assert token not in json.dumps(dump)
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.get("/v1/requests", params={"limit": 1}).status_code == 200
        taken = cli("tokens", "add", "cms-1", env=env, cwd=tmp_path)
        assert taken.returncode == 2
        assert b"exists" in taken.stderr
        assert cli("tokens", "remove", "cms-1", env=env, cwd=tmp_path).returncode == 0
        problem(http.get("/v1/requests"), 401)
    unknown = cli("tokens", "remove", "cms-1", env=env, cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.decode().startswith("Error: no token named")


def test_no_token_is_ever_logged(api: Api):
    """The server's log (its access log on) has a line per request, the path and status, and
    never a token, good or mistyped."""
    mistyped = api.tokens["admin"][:-1] + "x"
    with api.client() as http:
        assert http.get("/v1/requests/logged-1").status_code == 404
        problem(http.get("/v1/requests", headers={"Authorization": f"Bearer {mistyped}"}), 401)
    lines = eventually(
        lambda: api.log.read_text(), lambda text: "/v1/requests/logged-1" in text, timeout=10
    )
    assert '"status": 401' in lines
    for secret in (*api.tokens.values(), mistyped):
        assert secret not in lines


#: Checks Schemathesis runs on every response: no 5xx, and each status, content type, header
#: and body is one the contract declares.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Examples per operation and generation mode (positive, negative): bounded, deterministic.
EXAMPLES = 25
#: A valid body of the operations that take one (the contract's own example).
EXAMPLES_OF = {
    "POST /v1/requests": EXAMPLE,
    "POST /v1/requests/batch": [EXAMPLE, {**EXAMPLE, "request_id": "movie-2"}],
}


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """A JSON Lines body as Schemathesis generates one (a string), sent as it is."""
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


def test_schemathesis_finds_every_answer_in_the_contract(api: Api):
    """Every operation of /openapi.json, with valid and invalid inputs and a token that may
    do everything: no 5xx, every response as the contract declares it."""
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {api.tokens['admin']}"}
    ran = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        for mode in GenerationMode:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:  # no input that can be made invalid (a probe, a path's id)
                assert mode is GenerationMode.NEGATIVE, operation.label
                continue
            ran += 1
        example = EXAMPLES_OF.get(operation.label)
        if example is not None:  # a valid job too, which a generated body hardly ever is

            @given(case=operation.as_strategy(body=example, media_type="application/json"))
            @settings(max_examples=5, derandomize=True, database=None, deadline=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            def valid(case: Any) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS)

            valid()
            ran += 1
    assert ran >= 9 + 5 + 2  # every operation valid; most invalid; a valid job, one and many
    assert api.producer.get(EXAMPLE["request_id"]) is not None  # the example was recorded
