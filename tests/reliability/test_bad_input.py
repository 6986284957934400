"""Figure 5: 20,000 generated malformed requests; each refused naming its fields, none lost."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pallycon.errors import InvalidRequest
from pallycon.models import JobRegisterRequest, validate_request
from pallycon_producers.api import Producer
from support.queue import make_settings
from support.redis_server import RedisServer
from support.samples import job_body

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

EXAMPLES = 10_000
PATHS = [
    "job_name", "content_id", "storage", "storage.input", "storage.output",
    "storage.input.storage_id", "storage.input.contents_path", "storage.output.storage_id",
    "storage.output.path", "streaming_format", "protect_type", "dash_option",
    "dash_option.min_buffer_time", "drm_option", "drm_option.max_sd_height", "subtitles",
]  # fmt: skip
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.text(min_size=201, max_size=260),
    st.lists(st.one_of(st.integers(), st.text(max_size=4), st.none()), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=3),
    st.sampled_from(["", " ", "\x00\n", "é" * 101, "x" * 513, "DASH", "smooth", "drm"]),
)


def _apply(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target: Any = body
    for key in parents:
        if not isinstance(target, dict) or not isinstance(target.get(key), dict):
            return
        target = target[key]
    if value is _DELETE:
        target.pop(last, None)
    else:
        target[last] = value


_DELETE = object()


@st.composite
def malformed(draw: st.DrawFn) -> Any:
    """A body that breaks at least one rule: mutations of a valid one, or not an object."""
    if draw(st.integers(0, 19)) == 0:
        return draw(
            st.one_of(
                st.lists(st.integers(), max_size=3), st.text(max_size=10), st.none(), st.integers()
            )
        )
    body = copy.deepcopy(
        job_body(dash_option={"min_buffer_time": 2}, drm_option={"max_sd_height": 480})
    )
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from([*PATHS, "unknown_key", "storage.input.extra"]))
        value = _DELETE if draw(st.booleans()) and path in PATHS else draw(JUNK)
        _apply(body, path, value)
    assume(not _valid(body))  # a draw that happened to stay valid is discarded
    return body


def _valid(body: Any) -> bool:
    try:
        validate_request(JobRegisterRequest, body)
    except InvalidRequest:
        return False
    return True


@pytest.fixture(scope="module")
def producer(redis_server: RedisServer) -> Producer:
    return Producer.from_settings(make_settings(redis_server.url, "http://127.0.0.1:9"))


def test_figure_5_python_api_refuses_every_malformed_request(producer: Producer, figure):
    """10,000 malformed bodies: each raises InvalidRequest naming fields; Redis stays empty."""
    seen = {"count": 0, "fields": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])  # fmt: skip
    @given(malformed())
    def check(body: Any) -> None:
        with pytest.raises(InvalidRequest) as caught:
            producer.submit(body)
        errors = caught.value.errors
        assert errors
        assert all(error.field and error.message for error in errors)
        seen["count"] += 1
        seen["fields"] += len(errors)

    check()
    assert seen["count"] >= EXAMPLES
    written = producer.redis.keys(f"{producer.keys.prefix}:*")
    figure("5 bad input, Python API", refused=seen["count"], field_errors=seen["fields"],
           keys_written=len(written))  # fmt: skip
    assert written == []


def test_figure_5_stream_intake_fails_every_malformed_request(redis_server, worker_factory, figure):
    """10,000 malformed stream entries: each a failed event naming fields; no crash, none stuck."""
    config = make_settings(redis_server.url, "http://127.0.0.1:9")
    producer = Producer.from_settings(config)
    intake = producer.keys.intake
    bodies: list[Any] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])  # fmt: skip
    @given(malformed())
    def collect(body: Any) -> None:
        bodies.append(body)

    collect()
    assert len(bodies) >= EXAMPLES
    pipe = producer.redis.pipeline(transaction=False)
    ids = []
    for n, body in enumerate(bodies):
        request_id = f"bad-{n}"
        ids.append(request_id)
        raw = json.dumps(body) if n % 50 else "{not json at all"
        pipe.xadd(intake, {"request_id": request_id, "request": raw})
    pipe.execute()
    worker = worker_factory(config)
    started = time.monotonic()
    deadline = started + 180
    while time.monotonic() < deadline:
        records = producer.records.get_many(ids)
        if len(records) == len(ids):
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    stages = {r.error_stage for r in records.values()}
    failed_events = [e for _, e in producer.events(count=1_000_000) if e["type"] == "failed"]
    with_fields = sum(
        bool(e.get("fields")) and all(f["field"] for f in e["fields"]) for e in failed_events
    )
    pending = producer.redis.xpending(intake, "pallycon-pack")["pending"]
    scheduled = producer.redis.zcard(producer.keys.submit_schedule)
    log = worker.log.read_text(errors="replace")
    figure("5 bad input, stream intake", entries=len(ids), failed_results=len(records),
           events_naming_fields=with_fields, seconds=round(elapsed, 1), pending=pending,
           scheduled=scheduled, worker_restarts=log.count(" ready.") - 1)  # fmt: skip
    assert len(records) == len(ids)
    assert stages == {"validation"}
    assert with_fields == len(ids)
    assert (pending, scheduled) == (0, 0)
    assert worker.process is not None
    assert worker.process.poll() is None
    assert "Traceback" not in log
