"""The callback receiver as a real process: a hint that ends jobs early, never the truth."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from config import Settings
from pallycon_pack.redis_server import RedisServer
from producers.api import Producer
from tests.conftest import EmulatorProcess, clean_env, make_settings, start_server
from tests.integration.test_queue import body_for, register_storage, wait_all

pytestmark = pytest.mark.integration

TOKEN = "test-callback-token-0123456789"
SLOW_POLLS = {"poll_interval": 120.0, "poll_busy_interval": 120.0, "poll_grid": 0.0}


@pytest.fixture
def receiver(
    redis_server: RedisServer, tmp_path: Path
) -> Iterator[tuple[EmulatorProcess, Settings]]:
    """`pallycon-pack callbacks --port 0` for a fresh key prefix (the API URL is set later)."""
    settings = make_settings(redis_server.url, "http://127.0.0.1:9", callback_token=TOKEN)
    server = start_server(
        "callbacks", "--port", "0", env=clean_env(**settings.environment()), cwd=tmp_path
    )
    yield server, settings
    server.stop()


def test_a_callback_ends_the_job_long_before_its_next_poll(
    receiver, emulator_factory, worker_factory
):
    """With polls two minutes apart, the callback's lookup completes the request in seconds."""
    server, settings = receiver
    emulator = emulator_factory(
        "--job-seconds", "2", "--callback-url", f"{server.url}/callback/{TOKEN}"
    )
    settings = settings.model_copy(update={"api_url": emulator.url, **SLOW_POLLS})
    storage_id = register_storage(emulator.url)
    worker_factory(settings)
    producer = Producer.from_settings(settings)
    started = time.monotonic()
    request_id = producer.submit(body_for(storage_id, f"callback-{time.monotonic_ns()}"))
    record = wait_all(producer, [request_id], timeout=30)[request_id]
    assert record.state.value == "completed"
    assert time.monotonic() - started < 20  # the first poll was due after 120 s
    counters = producer.store.redis.hgetall(producer.store.keys.counters)
    assert int(counters.get("callbacks used", 0)) == 1, counters


def _post(server: EmulatorProcess, path: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", timeout=5, **kwargs)


def _submitted(producer: Producer, storage_id: str, name: str) -> tuple[str, str]:
    """Submit a request and wait until its job is registered: (request id, job id)."""
    request_id = producer.submit(body_for(storage_id, f"{name}-{time.monotonic_ns()}"))
    deadline = time.monotonic() + 20
    while (record := producer.get(request_id)) is None or record.state.value != "submitted":
        assert time.monotonic() < deadline, "never submitted"
        time.sleep(0.1)
    return request_id, record.get("job_id")


def test_a_wrong_token_learns_nothing(receiver):
    """A wrong token is answered exactly like an unknown path."""
    server, _ = receiver
    wrong = _post(server, "/callback/not-the-token", json={"job_id": 1, "error_code": "0000"})
    unknown = _post(server, "/nowhere", json={})
    assert wrong.status_code == 404
    assert unknown.status_code == 404
    assert wrong.json() == {"error": "not found"}


def test_every_unknown_path_or_method_gets_the_same_404(receiver):
    """No redirect (built from the client's Host), no 405 that tells the route exists."""
    server, _ = receiver
    reference = _post(server, "/nowhere", json={})
    cases = [
        ("POST", f"/callback/{TOKEN}/"),
        ("POST", "/callback/not-the-token/"),
        ("GET", f"/callback/{TOKEN}"),
        ("PUT", f"/callback/{TOKEN}"),
        ("DELETE", f"/callback/{TOKEN}"),
        ("GET", "/callback/"),
        ("POST", "/callback"),
        ("POST", "/health/live"),
        ("GET", "/health/ready/"),
        ("GET", "/nowhere/"),
    ]
    for method, path in cases:
        response = httpx.request(
            method, f"{server.url}{path}", headers={"host": "evil.example"}, timeout=5
        )
        assert (response.status_code, response.content) == (404, reference.content), path
        assert "location" not in response.headers
        assert "allow" not in response.headers


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{not json", 400),
        (b'{"error_code": "0000"}', 400),
        (b"[]", 400),
        (b"[" * 60_000, 400),
        (b'{"job_id": ' + b"[" * 30_000, 400),
        (b"x" * (70 * 1024), 413),
    ],
    ids=[
        "not-json",
        "no-job-id",
        "not-an-object",
        "nested-too-deeply",
        "nested-field",
        "too-large",
    ],
)
def test_malformed_or_oversized_bodies_are_refused(receiver, content: bytes, status: int):
    """Bodies that are not the guide's callback get 400; more than 64 KiB gets 413."""
    server, _ = receiver
    response = _post(
        server, f"/callback/{TOKEN}", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    if status == 400:
        assert response.json() == {"error": "not a PallyCon callback body"}


def test_a_forged_success_for_a_running_job_completes_nothing(
    receiver, emulator_factory, worker_factory, figure
):
    """Right token, job still running, body claiming success: the lookup says WM0xx, not done."""
    server, settings = receiver
    emulator = emulator_factory("--job-seconds", "60")
    settings = settings.model_copy(update={"api_url": emulator.url, **SLOW_POLLS})
    storage_id = register_storage(emulator.url)
    worker_factory(settings)
    producer = Producer.from_settings(settings)
    request_id, job_id = _submitted(producer, storage_id, "forged")
    forged = {"job_id": int(job_id), "error_code": "0000", "error_message": "Success",
              "input_contents_path": ["in/episode-1.mp4"], "output_path": "out"}  # fmt: skip
    wrong = [_post(server, f"/callback/guess-{n}", json=forged).status_code for n in range(10)]
    claims = [_post(server, f"/callback/{TOKEN}", json=forged).status_code for _ in range(10)]
    unknown = [
        _post(server, f"/callback/{TOKEN}", json={**forged, "job_id": 99999990 + n}).status_code
        for n in range(10)
    ]
    assert set(wrong) == {404}
    assert set(claims) == set(unknown) == {200}
    deadline = time.monotonic() + 10
    while (record := producer.get(request_id)) and not record.get("status"):
        assert time.monotonic() < deadline, "the callback's lookup never happened"
        time.sleep(0.1)
    assert record is not None
    assert record.state.value == "submitted"
    assert record.get("status").startswith("WM0")
    counters = producer.store.redis.hgetall(producer.store.keys.counters)
    assert int(counters["callbacks unknown job"]) == 10
    completions = [e for _, e in producer.events() if e["type"] == "completed"]
    figure("7 forged callbacks", wrong_token=len(wrong), success_claims_for_running_job=len(claims),
           unknown_jobs=len(unknown), false_completions=len(completions),
           status_after=record.get("status"))  # fmt: skip
    assert completions == []
