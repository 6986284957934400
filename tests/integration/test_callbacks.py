"""The callback receiver as a real process: a hint that ends jobs early, never the truth."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from pallycon_config import Settings
from pallycon_pack.web import asgi, callbacks
from pallycon_pack.web.callbacks import COALESCE_SECONDS, READY_TIMEOUT, REDIS_TIMEOUT
from pallycon_producers.api import Producer
from pallycon_store.keys import Keys
from pallycon_store.messages import send_poll, send_submit, sender
from support.env import clean_env
from support.processes import EmulatorProcess, start_server
from support.queue import make_settings, register_storage, wait_all
from support.redis_server import RedisServer
from support.samples import body_for

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


def _queue_behind(
    settings: Settings, emulator: EmulatorProcess, worker_factory
) -> tuple[Producer, str]:
    """A worker for the receiver's key prefix, against ``emulator``, polls minutes apart: the
    producer and a registered storage id."""
    settings = settings.model_copy(update={"api_url": emulator.url, **SLOW_POLLS})
    storage_id = register_storage(emulator.url)
    worker_factory(settings)
    return Producer.from_settings(settings), storage_id


def test_a_callback_ends_the_job_long_before_its_next_poll(
    receiver, emulator_factory, worker_factory
):
    """With polls two minutes apart, the callback's lookup completes the request in seconds."""
    server, settings = receiver
    emulator = emulator_factory(
        "--job-seconds", "2", "--callback-url", f"{server.url}/callback/{TOKEN}"
    )
    producer, storage_id = _queue_behind(settings, emulator, worker_factory)
    started = time.monotonic()
    request_id = producer.submit(body_for(storage_id, f"callback-{time.monotonic_ns()}"))
    record = wait_all(producer, [request_id], timeout=30)[request_id]
    assert record.state.value == "completed"
    assert time.monotonic() - started < 20  # the first poll was due after 120 s
    counters = producer.redis.hgetall(producer.keys.counters)
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
    return request_id, record.job_id


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


def test_a_body_that_trickles_in_is_cut_off(redis_server: RedisServer):
    """Headers in time, then the body too slowly: 408 and the connection closed (in-process,
    for a short deadline; the product's is BODY_TIMEOUT)."""
    app = callbacks.create_callback_app(
        callbacks.connect(redis_server.url), Keys(f"t{os.urandom(4).hex()}"), SecretStr(TOKEN),
        lambda _: None, lease_seconds=5, body_timeout=0.5,
    )  # fmt: skip
    server = asgi.make_server(app, "127.0.0.1", 0, settings_prefix="PALLYCON_CALLBACK")
    with asgi.running(server) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.settimeout(10)  # a connection left open fails the test instead of hanging it
            head = f"POST /callback/{TOKEN} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n"
            sock.sendall(head.encode() + b'{"job_id": ')
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in answer


def test_a_forged_success_for_a_running_job_completes_nothing(
    receiver, emulator_factory, worker_factory, figure
):
    """Right token, job still running, body claiming success: the lookup says WM0xx, not done."""
    server, settings = receiver
    emulator = emulator_factory("--job-seconds", "60")
    producer, storage_id = _queue_behind(settings, emulator, worker_factory)
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
    while (record := producer.get(request_id)) and not record.status:
        assert time.monotonic() < deadline, "the callback's lookup never happened"
        time.sleep(0.1)
    assert record is not None
    assert record.state.value == "submitted"
    assert record.status.startswith("WM0")
    counters = producer.redis.hgetall(producer.keys.counters)
    assert int(counters["callbacks unknown job"]) == 10
    completions = [e for _, e in producer.events() if e["type"] == "completed"]
    figure("7 forged callbacks", wrong_token=len(wrong), success_claims_for_running_job=len(claims),
           unknown_jobs=len(unknown), false_completions=len(completions),
           status_after=record.status)  # fmt: skip
    assert completions == []


# --- Flood and stall ---------------------------------------------------------------------------


def test_a_flood_of_callbacks_for_one_job_costs_a_handful_of_polls(
    receiver, emulator_factory, worker_factory, figure
):
    """1,000 callbacks at once for a running job: one poll per coalescing window, and the job's
    own callback at its end still completes the request."""
    server, settings = receiver
    emulator = emulator_factory(  # a process: this one is busy posting while it is measured
        "--job-seconds", "15", "--callback-url", f"{server.url}/callback/{TOKEN}", process=True
    )
    producer, storage_id = _queue_behind(settings, emulator, worker_factory)
    request_id, job_id = _submitted(producer, storage_id, "flood")
    lists_before = emulator.control("stats")["counts"].get("GET pack", 0)
    body = {"job_id": int(job_id), "error_code": "0000", "error_message": "Success"}
    limits = httpx.Limits(max_connections=50)
    with httpx.Client(base_url=server.url, timeout=30, limits=limits) as client:

        def post(_: int) -> int:
            return client.post(f"/callback/{TOKEN}", json=body).status_code

        with ThreadPoolExecutor(50) as pool:
            started = time.monotonic()
            statuses = list(pool.map(post, range(1000)))
            elapsed = time.monotonic() - started
    assert set(statuses) == {200}
    counters = producer.redis.hgetall(producer.keys.counters)
    used = int(counters.get("callbacks used", 0))
    coalesced = int(counters.get("callbacks coalesced", 0))
    assert used + coalesced == 1000
    assert 1 <= used <= math.ceil(elapsed / COALESCE_SECONDS) + 1, (used, elapsed)
    deadline = time.monotonic() + 20
    while int(producer.redis.hget(producer.keys.counters, "poll lookups") or 0) < used:
        assert time.monotonic() < deadline, "the callbacks' polls did not all run"
        time.sleep(0.1)
    api_calls = emulator.control("stats")["counts"]["GET pack"] - lists_before
    figure("callback flood", callbacks=1000, seconds=round(elapsed, 1), polls=used,
           api_calls=api_calls)  # fmt: skip
    assert api_calls <= used  # one lookup per poll of one job
    deadline = time.monotonic() + 40  # the job ends 15 s after its registration
    while (record := producer.get(request_id)) is None or not record.state.final:
        assert time.monotonic() < deadline, (
            record and record.public(),
            producer.redis.hgetall(producer.keys.counters),
            emulator.control("stats")["counts"],
        )
        time.sleep(0.1)
    assert record.state.value == "completed"
    completions = [e for e in _events(producer) if e["type"] == "completed"]
    assert len(completions) == 1


def _events(producer: Producer) -> list[dict[str, Any]]:
    return [event for _, event in producer.events(count=100_000)]


@contextmanager
def _logged_receiver(settings: Settings, directory: Path) -> Iterator[tuple[str, Path]]:
    """`pallycon-pack callbacks --port 0` with its output kept in a file: (URL, log)."""
    log = directory / "receiver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pallycon_pack", "callbacks", "--port", "0"],
            stdout=out, stderr=subprocess.STDOUT, env=clean_env(**settings.environment()),
            cwd=directory,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not (found := re.search(r"listening on (http://[\w.:-]+)", log.read_text())):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield found.group(1), log
    finally:
        process.terminate()
        process.wait(10)


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_a_stalled_redis_never_hangs_the_receiver(tmp_path: Path, figure):
    """Redis frozen (SIGSTOP): liveness still answers at once, readiness says 503 within its
    deadline, a callback is answered 503 (no traceback) within the Redis deadline; all 200 after."""
    with RedisServer(tmp_path / "redis") as frozen:  # private: this test freezes it
        settings = make_settings(frozen.url, "http://127.0.0.1:9", callback_token=TOKEN)
        callback = {"job_id": 424242, "error_code": "0000"}
        with (
            _logged_receiver(settings, tmp_path) as (url, log),
            httpx.Client(base_url=url, timeout=15) as client,
            ThreadPoolExecutor(2) as pool,
        ):

            def post() -> httpx.Response:
                return client.post(f"/callback/{TOKEN}", json=callback)

            def ready() -> httpx.Response:
                return client.get("/health/ready")

            assert (post().status_code, ready().status_code) == (200, 200)
            assert frozen.process is not None
            os.kill(frozen.process.pid, signal.SIGSTOP)
            try:
                stalled_post = pool.submit(_timed, post)
                stalled_ready = pool.submit(_timed, ready)
                time.sleep(0.3)  # both are now waiting for Redis
                live, live_s = _timed(lambda: client.get("/health/live"))
                (refused, post_s), (not_ready, ready_s) = (
                    stalled_post.result(),
                    stalled_ready.result(),
                )
            finally:
                os.kill(frozen.process.pid, signal.SIGCONT)
            after = [post(), ready(), client.get("/health"), client.get("/health/live")]
        output = log.read_text()
    figure("callback receiver, Redis stalled", live_s=round(live_s, 3), ready_s=round(ready_s, 2),
           callback_s=round(post_s, 2))  # fmt: skip
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert live_s < 1.0
    assert not_ready.status_code == 503
    assert not_ready.json()["status"] == "unavailable"
    assert ready_s < READY_TIMEOUT + 1.5
    assert refused.status_code == 503
    assert set(refused.json()) == {"error"}
    assert post_s < REDIS_TIMEOUT + 2
    assert [response.status_code for response in after] == [200] * 4
    assert "Traceback" not in output
    assert "callback not recorded: Redis unavailable" in output


def test_wrong_tokens_are_counted_and_logged_once_a_minute(redis_server: RedisServer, tmp_path):
    """300 probes with wrong tokens (and unknown sites): each answered 404 and counted in the
    counters hash (pallycon_pack_callbacks_refused_total{reason="wrong_token"}), one log line
    for them all within the minute; a body refused with the right token is logged and counted."""
    settings = make_settings(redis_server.url, "http://127.0.0.1:9", callback_token=TOKEN)
    counters = Keys(settings.key_prefix).counters
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    with _logged_receiver(settings, tmp_path) as (url, log), httpx.Client(base_url=url) as http:
        paths = [f"/callback/guess-{n}" for n in range(200)]
        paths += [f"/callback/nosite/guess-{n}" for n in range(100)]
        answers = [http.post(path, json={"job_id": 1, "error_code": "0000"}) for path in paths]
        bad = http.post(f"/callback/{TOKEN}", content=b"not json")
        deadline = time.monotonic() + 30
        while client.hget(counters, "callbacks refused wrong token") != "300":
            assert time.monotonic() < deadline, client.hgetall(counters)
            time.sleep(0.1)
        output = log.read_text()
    assert {a.status_code for a in answers} == {404}
    assert bad.status_code == 400
    assert output.count("callback refused: wrong token") == 1, output[-2000:]
    assert output.count("callback refused: not a PallyCon callback body") == 1
    assert "guess-" not in output
    assert client.hget(counters, "callbacks refused not a callback") == "1"


# --- Polls before registrations ----------------------------------------------------------------


def _poll_tasks(producer: Producer) -> list[list[str]]:
    """The request ids of each poll task waiting in the queue (Celery's message bodies)."""
    tasks = []
    for raw in producer.redis.lrange(producer.keys.poll_queue, 0, -1):
        message = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        tasks.append(args[0])
    return tasks


def test_callbacks_for_many_jobs_at_once_go_out_as_few_poll_tasks(
    receiver, emulator_factory, worker_factory, figure
):
    """30 callbacks for 30 different jobs at once: each job's poll claimed once, and all of
    them in fewer poll tasks than callbacks (one job-list pass for many jobs, not a task and an
    API call each). No worker runs while they are counted: the tasks wait in the queue."""
    server, settings = receiver
    emulator = emulator_factory("--job-seconds", "60")
    settings = settings.model_copy(update={"api_url": emulator.url, **SLOW_POLLS})
    producer, storage_id = Producer.from_settings(settings), register_storage(emulator.url)
    worker = worker_factory(settings)
    jobs = dict(_submitted(producer, storage_id, f"many-{n}") for n in range(30))
    worker.stop()
    producer.redis.delete(producer.keys.poll_queue)
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def post(job_id: str) -> int:
            body = {"job_id": int(job_id), "error_code": "0000"}
            return client.post(f"/callback/{TOKEN}", json=body).status_code

        with ThreadPoolExecutor(30) as pool:
            statuses = list(pool.map(post, jobs.values()))
    assert set(statuses) == {200}
    deadline = time.monotonic() + 10
    while sum(map(len, tasks := _poll_tasks(producer))) < len(jobs):
        assert time.monotonic() < deadline, tasks
        time.sleep(0.05)
    figure("callback polls coalesced", callbacks=len(jobs), poll_tasks=len(tasks))
    assert sorted(rid for task in tasks for rid in task) == sorted(jobs)
    assert len(tasks) < len(jobs)


def test_a_worker_takes_waiting_polls_before_any_registration(
    emulator_factory, worker_factory, redis_server: RedisServer
):
    """Three one-job poll tasks queued behind six submit tasks: a worker (one process) runs
    all three polls, and completes their requests, before it registers any of the six."""
    emulator = emulator_factory("--job-seconds", "0")
    settings = make_settings(redis_server.url, emulator.url, **SLOW_POLLS)
    producer, storage_id = Producer.from_settings(settings), register_storage(emulator.url)
    first = worker_factory(settings, concurrency=1)
    done = [_submitted(producer, storage_id, f"done-{n}")[0] for n in range(3)]
    first.stop()
    waiting = producer.submit_many([body_for(storage_id, f"waiting-{n}") for n in range(6)])
    app = sender(settings.redis, producer.keys)
    send_submit(app, waiting, chunk=1)
    for request_id in done:  # as callbacks sent them: one task per job, behind the submits
        send_poll(app, [request_id])
    worker_factory(settings, concurrency=1)
    wait_all(producer, done)
    deadline = time.monotonic() + 60
    while not all(r.job_id for r in producer.records.get_many(waiting).values()):
        assert time.monotonic() < deadline, "the six were never registered"
        time.sleep(0.1)
    order = [(e["type"], e["request_id"]) for e in _events(producer)]
    completed = [order.index(("completed", rid)) for rid in done]
    registered = [order.index(("submitted", rid)) for rid in waiting]
    assert max(completed) < min(registered), order
