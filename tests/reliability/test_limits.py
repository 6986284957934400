"""Figure 10: sizes past every limit, and requests no step can finish. Each ends in a clear
outcome: refused at intake naming the size and the limit, failed at once, dead-lettered, or
polled with smaller pages; never stuck."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from pallycon.errors import InvalidRequest
from pallycon.options import max_api_json_bytes
from pallycon_store.admission import remote_job_name
from pallycon_store.events import EventType, State, event
from pallycon_store.record import Fields
from pallycon_store.records import NewRequest
from support.env import clean_env
from support.processes import cli
from support.queue import events_of
from support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.heavy]


def _oversized(stack: Stack, content_id: str) -> dict[str, Any]:
    """A valid job whose 80 long input paths make its API JSON about 40 KB."""
    body = stack.body(content_id)
    body["storage"]["input"]["contents_path"] = [f"in/{n:03d}-{'x' * 480}.mp4" for n in range(80)]
    return body


def test_figure_10_an_oversized_request_is_refused_wherever_it_comes_in(
    stack_factory, worker_factory, tmp_path, figure
):
    """Python API, CLI and intake stream each refuse it naming its size and the limit."""
    stack = stack_factory()
    limit = max_api_json_bytes(stack.settings.api_url, "query", stack.settings.site_id)
    body = _oversized(stack, "too-big")
    with pytest.raises(InvalidRequest) as caught:
        stack.producer.submit(body, request_id="big-python")
    python_says = str(caught.value)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(body))
    env = clean_env(**stack.settings.environment())
    run = cli("submit", str(path), "--request-id", "big-cli", env=env, cwd=tmp_path)
    direct = cli("jobs", "register", str(path), env=env, cwd=tmp_path)  # no queue: the client
    worker_factory(stack.settings)
    store = stack.producer
    store.redis.xadd(store.keys.intake, {"request_id": "big-stream", "request": json.dumps(body)})
    record = stack.wait_final(["big-stream"], timeout=30)["big-stream"]
    stream_says = record.error_message
    figure("10 oversized request", limit_bytes=limit, python=python_says[:80],
           cli_exit=run.returncode, stream=record.error_stage)  # fmt: skip
    for said in (python_says, run.stderr.decode(), stream_says):
        assert "bytes of API JSON, over the limit of" in said
        assert f"{limit} bytes" in said
    assert run.returncode == 2
    assert "Traceback" not in run.stderr.decode()
    assert direct.returncode == 2, direct.stderr.decode()  # bad input, though the client found it
    assert f"over the limit of {limit} bytes" in direct.stderr.decode()
    assert stack.remote_jobs("too-big") == []
    assert store.get("big-python") is None
    assert store.get("big-cli") is None
    assert record.error_stage == "validation"


def _record_as_older_code(stack: Stack, request_id: str, body: dict[str, Any]) -> None:
    """A request recorded without today's checks (as by an older version), due at once."""
    now = time.time()
    name = remote_job_name(str(body.get("job_name", "job")), request_id)
    fields = Fields(
        state=State.ACCEPTED,
        body=json.dumps(body),
        job_name=name,
        content_id=str(body.get("content_id", "")),
        created_at=now,
        updated_at=now,
    )
    first = event(EventType.ACCEPTED, request_id, now, job_name=name)
    new = NewRequest(request_id, "old", fields, first)
    assert stack.producer.records.create(new, submit_at=now) == "created"


def test_a_recorded_request_too_large_to_send_fails_at_once(stack_factory, worker_factory):
    """Recorded before the limit existed, it fails as RequestNotBuilt: never stuck submitting."""
    stack = stack_factory()
    worker_factory(stack.settings)
    _record_as_older_code(stack, "big-old", _oversized(stack, "big-old"))
    record = stack.wait_final(["big-old"], timeout=30)["big-old"]
    assert record.state.value == "failed"
    assert (record.error_stage, record.error_code) == ("submit", "RequestNotBuilt")
    assert "over the limit" in record.error_message
    assert stack.remote_jobs("big-old") == []


def test_a_request_no_attempt_can_finish_is_dead_lettered(stack_factory, worker_factory, figure):
    """A record whose body this code cannot read fails every attempt; it ends as dead_letter
    after max_deliveries, with no remote job, instead of looping for ever."""
    stack = stack_factory(max_deliveries=3)
    worker = worker_factory(stack.settings)
    _record_as_older_code(stack, "unreadable", {"job_name": "old-shape", "content_id": "old"})
    started = time.monotonic()
    record = stack.wait_final(["unreadable"], timeout=90)["unreadable"]
    seconds = time.monotonic() - started
    figure("10 request no attempt can finish", outcome=record.error_stage,
           seconds=round(seconds, 1), attempts=record.attempts)  # fmt: skip
    assert (record.error_stage, record.error_code) == ("dead_letter", "dead_letter")
    assert "more than 3 times" in record.error_message
    assert stack.remote_jobs("old") == []
    kinds = [e["type"] for e in events_of(stack.producer, "unreadable")]
    assert kinds == ["accepted", "failed"]
    assert "registering request unreadable failed" in worker.log.read_text(errors="replace")


def test_figure_10_pages_too_large_are_halved_until_they_fit(stack_factory, worker_factory, figure):
    """With responses capped at 8 KiB, 40 jobs' list pages are too large: the worker halves
    the page size until they fit, and every request completes."""
    stack = stack_factory("--job-seconds", "2", max_response_bytes=8192)
    worker = worker_factory(stack.settings)
    ids = [stack.producer.submit(stack.body(f"pages-{n}")) for n in range(40)]
    records = stack.wait_final(ids, timeout=90)
    counters = stack.producer.redis.hgetall(stack.producer.keys.counters)
    log = worker.log.read_text(errors="replace")
    halvings = [line for line in log.splitlines() if "was too large" in line]
    figure("10 job-list pages too large", requests=len(ids),
           completed=sum(r.state.value == "completed" for r in records.values()),
           pages_too_large=int(counters.get("poll pages too large", 0)),
           pages=int(counters.get("poll pages", 0)),
           lookups=int(counters.get("poll lookups", 0)))  # fmt: skip
    assert {r.state.value for r in records.values()} == {"completed"}
    # Remembered: each of the 2 pool processes halves from 500 at most 6 times, once.
    assert 1 <= int(counters.get("poll pages too large", 0)) <= 12
    assert halvings
    assert int(counters.get("poll pages", 0)) > int(counters.get("poll pages too large", 0))


def test_a_request_just_under_the_limit_goes_through(stack_factory, worker_factory, figure):
    """The limit is the transport's real one: the largest request it allows is registered over
    HTTP (a URL of about 65,500 characters) and completes."""
    stack = stack_factory("--job-seconds", "1")
    worker_factory(stack.settings)
    body = _oversized(stack, "just-under")
    paths = body["storage"]["input"]["contents_path"]
    while True:  # drop paths until the request fits; the first that fits is the largest
        try:
            request_id = stack.producer.submit(body, request_id=f"under-{len(paths)}")
            break
        except InvalidRequest:
            paths.pop()
    record = stack.wait_final([request_id], timeout=30)[request_id]
    limit = max_api_json_bytes(stack.settings.api_url, "query", stack.settings.site_id)
    figure("10 largest request", limit_bytes=limit, input_paths=len(paths),
           outcome=record.state.value)  # fmt: skip
    assert record.state.value == "completed", record.error_message
    assert len(paths) >= 70
