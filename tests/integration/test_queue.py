"""The queue end to end: producers -> Redis -> real Celery worker processes -> emulator.

What a step decides (errors, timeouts, the submit deadline, the event fields, the stream
intake's outcomes) is pinned in-process by tests/integration/test_steps.py; the cases here are
those a worker process, the emulator or the store alone must show."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from pallycon.client import ClientOptions, PallyConClient
from pallycon.errors import InvalidRequest
from pallycon.models import JobListRequest
from pallycon_config import Settings
from pallycon_producers.api import Producer, RequestConflict
from support.processes import EmulatorProcess
from support.queue import events_of, make_settings, register_storage, wait_all
from support.redis_server import RedisServer
from support.samples import REGION, SAMPLE_SITE, body_for, job_body

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(redis_server: RedisServer, emulator: EmulatorProcess) -> Settings:
    return make_settings(redis_server.url, emulator.url)


@pytest.fixture
def producer(settings: Settings) -> Producer:
    return Producer.from_settings(settings)


@pytest.fixture
def storage_id(emulator: EmulatorProcess) -> str:
    return register_storage(emulator.url)


def remote_jobs(emulator: EmulatorProcess, marker: str) -> list[str]:
    """Job ids the emulator holds whose content id contains ``marker``: the witness."""
    query = JobListRequest(region=REGION, search_keyword=marker, search_keyword_type="cid")
    with PallyConClient(SAMPLE_SITE, ClientOptions(base_url=emulator.url)) as client:
        return [job.job_id for job in client.iter_jobs(query.model_copy(update={"page_unit": 500}))]


def test_twenty_requests_give_twenty_completed_events_and_twenty_jobs(
    settings, producer, storage_id, emulator, worker_factory
):
    """The headline: every request ends completed, each with exactly one remote job."""
    worker = worker_factory(settings)
    marker = f"bulk-{time.monotonic_ns()}"
    ids = [producer.submit(body_for(storage_id, f"{marker}-{n}")) for n in range(20)]
    records = wait_all(producer, ids)
    assert {r.state.value for r in records.values()} == {"completed"}
    completed = [e for e in events_of(producer) if e["type"] == "completed"]
    assert sorted(e["request_id"] for e in completed) == sorted(ids)
    assert len(remote_jobs(emulator, marker)) == 20
    assert sorted(r.job_id for r in records.values()) == sorted(remote_jobs(emulator, marker))
    for request_id in ids:
        kinds = [e["type"] for e in events_of(producer, request_id)]
        assert kinds[:2] == ["accepted", "submitted"]
        assert kinds[-1] == "completed"
        assert len({e["event_id"] for e in events_of(producer, request_id)}) == len(kinds)
    log = worker.log.read_text()
    assert SAMPLE_SITE.site_key.get_secret_value() not in log
    assert SAMPLE_SITE.access_key.get_secret_value() not in log
    assert "pallycon-apidata" not in log


def test_an_invalid_request_is_refused_and_nothing_is_enqueued(settings, producer):
    """The Python API raises naming the field; no record, no event, no schedule entry."""
    with pytest.raises(InvalidRequest) as caught:
        producer.submit(job_body(content_id="c" * 201), request_id="invalid-one")
    assert "content_id" in {e.field for e in caught.value.errors}
    keys = producer.redis.keys(f"{settings.key_prefix}:*")
    assert keys == []


def test_the_same_request_id_twice_gives_one_request_and_one_job(
    settings, producer, storage_id, emulator, worker_factory
):
    """Resubmitting the same body under the same id is a no-op; another body is refused. Once
    it completed, one registration was ever sent and nothing is left that could send another
    (no schedule entry whose lease could run out)."""
    posts = emulator.control("stats")["counts"].get("POST pack", 0)  # the shared emulator's
    worker_factory(settings)
    marker = f"dup-{time.monotonic_ns()}"
    body = body_for(storage_id, marker)
    first = producer.submit(body, request_id="cms-42")
    again = producer.submit(json.loads(json.dumps(body)), request_id="cms-42")
    assert first == again == "cms-42"
    with pytest.raises(RequestConflict):
        producer.submit(body_for(storage_id, marker + "-other"), request_id="cms-42")
    record = wait_all(producer, ["cms-42"])["cms-42"]
    assert record.state.value == "completed"
    assert record.attempts == 1  # one registration, ever
    assert producer.redis.zscore(producer.keys.submit_schedule, "cms-42") is None
    assert producer.redis.zscore(producer.keys.poll_schedule, "cms-42") is None
    assert emulator.control("stats")["counts"]["POST pack"] == posts + 1
    assert remote_jobs(emulator, marker) == [record.job_id]
    accepted = [e for e in events_of(producer, "cms-42") if e["type"] == "accepted"]
    assert len(accepted) == 1


def test_polls_survive_a_worker_killed_and_replaced(
    settings, producer, storage_id, emulator, worker_factory
):
    """SIGKILL every worker process while jobs run; a new worker (celery -A pallycon_worker) finishes them."""
    worker = worker_factory(settings)
    marker = f"restart-{time.monotonic_ns()}"
    ids = [producer.submit(body_for(storage_id, f"{marker}-{n}")) for n in range(5)]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = {r.state.value for r in producer.records.get_many(ids).values()}
        if states == {"submitted"}:
            break
        time.sleep(0.05)
    assert states == {"submitted"}
    worker.kill_all()
    assert producer.redis.zcard(producer.keys.poll_schedule) == 5
    worker_factory(settings, celery_cli=True)
    records = wait_all(producer, ids)
    assert {r.state.value for r in records.values()} == {"completed"}
    assert len(remote_jobs(emulator, marker)) == 5


def test_submit_wait_status_and_results_commands(
    settings, storage_id, worker_factory, tmp_path: Path
):
    """The CLI a person uses: submit --wait exits 0, status and results --json show it (in
    processes of their own: the queue family's smoke); a resubmission and a bad file say so."""
    from support.cli import run_cli
    from support.env import clean_env
    from support.processes import cli

    worker_factory(settings)
    env = clean_env(**settings.environment())
    path = tmp_path / "job.json"
    path.write_text(json.dumps(body_for(storage_id, f"cli-{time.monotonic_ns()}")))
    result = cli(
        "submit", str(path), "--request-id", "cli-1", "--wait", "--json", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "cli-1"
    assert json.loads(lines[-1])["type"] == "completed"
    status = cli("status", "cli-1", "--json", env=env, cwd=tmp_path)
    assert status.returncode == 0
    shown = json.loads(status.stdout)
    assert shown["state"] == "completed"
    assert shown["finished_at"].endswith("+00:00")  # ISO 8601 UTC, as in the events
    again = run_cli("submit", str(path), "--request-id", "cli-1", "--wait", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr.decode()
    assert "was submitted before (nothing new enqueued); it is completed" in again.stderr.decode()
    events = cli("results", "--json", env=env, cwd=tmp_path)
    kinds = [json.loads(line)["type"] for line in events.stdout.decode().splitlines()]
    assert kinds[0] == "accepted"
    assert kinds[-1] == "completed"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(job_body(protect_type=["drm"])))
    refused = run_cli("submit", str(bad), env=env, cwd=tmp_path)
    assert refused.returncode == 2
    assert "protect_type" in refused.stderr.decode()


def test_wait_uses_the_record_and_the_wake_up(settings, producer, storage_id, worker_factory):
    """Producer.wait returns the final record; it times out cleanly when nothing happens; and
    the wake-up alone ends it (with re-reads an hour apart, only pub/sub can end it early)."""
    request_id = producer.submit(body_for(storage_id, f"wait-{time.monotonic_ns()}"))
    with pytest.raises(TimeoutError, match="still accepted"):
        producer.wait(request_id, timeout=0.5)
    ended: list[Any] = []
    waiter = threading.Thread(
        target=lambda: ended.append(producer.wait(request_id, timeout=3600, recheck=3600)),
        daemon=True,
    )
    waiter.start()
    worker_factory(settings)
    waiter.join(60)  # a hang detector: the job takes about 2 s
    assert ended, "wait did not return: the wake-up did not reach it"
    assert ended[0].state.value == "completed"


def test_an_answer_lost_after_registration_is_reconciled_to_one_job(
    settings, producer, storage_id, emulator, worker_factory
):
    """Accept-then-drop: the job exists but the answer is lost; the lookup finds it, no re-POST."""
    worker_factory(settings)
    drops_before = emulator.control("stats")["counts"].get("fault drop", 0)  # shared emulator
    emulator.set_faults(drop_rate=1.0)
    marker = f"dropped-{time.monotonic_ns()}"
    request_id = producer.submit(body_for(storage_id, marker))
    deadline = time.monotonic() + 20
    while emulator.control("stats")["counts"].get("fault drop", 0) <= drops_before:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    emulator.set_faults()
    record = wait_all(producer, [request_id])[request_id]
    assert record.state.value == "completed"
    assert record.attempts == 1
    assert remote_jobs(emulator, marker) == [record.job_id]
    counters = producer.redis.hgetall(producer.keys.counters)
    assert int(counters["reconciliations"]) >= 1


def test_upstream_reads_results_with_a_consumer_group(
    settings, producer, storage_id, worker_factory
):
    """ResultGroup: each event once per group, pending until acknowledged (given again one at
    a time), claimable when stale."""
    from pallycon_producers.api import ResultGroup

    worker_factory(settings)
    request_id = producer.submit(body_for(storage_id, f"group-{time.monotonic_ns()}"))
    wait_all(producer, [request_id])
    stream = producer.keys.results
    first = ResultGroup(producer.redis, stream, "cms", "c1")
    got = first.read(count=1000, block_ms=100)
    assert got[0][1]["type"] == "accepted"
    assert got[-1][1]["type"] == "completed"
    other = ResultGroup(producer.redis, stream, "cms", "c2")
    assert other.read(block_ms=100) == []  # the group already delivered them to c1
    assert [e for _, e in other.claim_stale(min_idle_ms=0)] == [e for _, e in got][:100]
    first.ack(*(entry_id for entry_id, _ in got))
    assert producer.redis.xpending(stream, "cms")["pending"] == 0
    billing = ResultGroup(producer.redis, stream, "billing", "b1")
    assert len(billing.read(count=1000, block_ms=100)) == len(got)
    raw = redis.Redis.from_url(settings.redis_url)  # bytes: the documented example's client
    audit = ResultGroup(raw, stream, "audit", "a1")
    read = audit.read(count=1000, block_ms=100)
    assert [e for _, e in read] == [e for _, e in got]
    restarted = ResultGroup(raw, stream, "audit", "a1")  # unacknowledged: given again first
    again = []
    for _ in read:  # one at a time
        (event,) = restarted.read(count=1000, block_ms=100)
        again.append(event)
        restarted.ack(event[0])
    assert again == read
    assert restarted.read(block_ms=100) == []
    assert raw.xpending(stream, "audit")["pending"] == 0


def test_submit_many_enqueues_a_batch_or_nothing(settings, producer, storage_id):
    """One bad body refuses the whole batch, named, and nothing is written; a valid batch is
    recorded as single submissions are (each request accepted, one accepted event, on its
    submit lane, a sweeper woken; no task sent: the sweeper takes them by priority and site),
    which the headline test follows to one job each; a resubmission of one is a no-op. No
    worker runs."""
    marker = f"many-{time.monotonic_ns()}"
    with pytest.raises(InvalidRequest) as caught:
        producer.submit_many([body_for(storage_id, f"{marker}-ok"), job_body(content_id="")])
    assert [e.field for e in caught.value.errors] == ["[1].content_id"]
    assert producer.redis.keys(f"{settings.key_prefix}:*") == []
    ids = producer.submit_many([body_for(storage_id, f"{marker}-{n}") for n in range(120)])
    assert len(set(ids)) == 120
    records = producer.records.get_many(ids)
    assert {r.state.value for r in records.values()} == {"accepted"}
    assert len(records) == 120
    assert all(producer.redis.zscore(producer.keys.submit_schedule, i) for i in ids)
    assert sorted(e["request_id"] for e in events_of(producer) if e["type"] == "accepted") == (
        sorted(ids)
    )
    assert producer.redis.llen(producer.keys.submit_queue) == 0  # the sweeper sends them
    assert producer.redis.lrange(producer.keys.flow_kick, 0, -1) == ["1"]  # one wake-up
    resubmitted = producer.submit_many([records[ids[0]].parsed_body()], [ids[0]])
    assert resubmitted == [ids[0]]  # a resubmission
    assert len(events_of(producer, ids[0])) == 1
    assert producer.redis.zcard(producer.keys.submit_schedule) == 120


def test_an_id_twice_in_one_batch_is_one_request_or_refused(settings, producer, storage_id):
    """The same id with the same body twice in a batch: one request. With two bodies: refused,
    naming both places, and nothing recorded (the first body is never silently replaced)."""
    body = body_for(storage_id, f"twice-{time.monotonic_ns()}")
    assert producer.submit_many([body, body], ["twice-1", "twice-1"]) == ["twice-1", "twice-1"]
    assert [e["type"] for e in events_of(producer, "twice-1")] == ["accepted"]
    other = body_for(storage_id, "another")
    with pytest.raises(InvalidRequest) as caught:
        producer.submit_many([body, other], ["twice-2", "twice-2"])
    assert [(e.field, e.message) for e in caught.value.errors] == [
        ("[1].request_id", "also given at [0] with a different body")
    ]
    assert producer.get("twice-2") is None
    with pytest.raises(RequestConflict, match="twice-1"):
        producer.submit_many([other, body], ["twice-1", "twice-3"])
    assert producer.get("twice-3") is None  # all or nothing: the conflict recorded neither


def test_submit_batch_checks_every_line_then_records_them_all(
    settings, producer, storage_id, tmp_path: Path
):
    """submit --batch: bad lines named by number and nothing recorded; a good file recorded
    with each id printed and each line's metadata kept. status exits by state; a --wait that
    times out says so, a line per change meanwhile (no terminal). No worker runs; the commands
    run in this process."""
    from pallycon.errors import FieldError
    from pallycon_store.admission import refuse
    from support.cli import run_cli
    from support.env import clean_env

    env = clean_env(**settings.environment())
    body = body_for(storage_id, "batch")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join(
            [json.dumps({"body": body, "request_id": "b-1"}), "{not json", json.dumps({"body": {}}),
             json.dumps({"body": body, "metadata": ["x"]}),
             json.dumps({"body": {**body, "content_id": "other"}, "request_id": "b-1"})]
        )
    )  # fmt: skip
    refused = run_cli("submit", "--batch", str(bad), env=env, cwd=tmp_path)
    assert refused.returncode == 2
    errors = refused.stderr.decode().splitlines()
    assert [line.split(":")[0] for line in errors[:4]] == ["line 2", "line 3", "line 4", "line 5"]
    assert "metadata: must be a JSON object" in errors[2]
    assert errors[-1] == f"Error: 4 bad line(s) in {bad}; nothing was recorded"
    assert producer.redis.keys(f"{settings.key_prefix}:*") == []
    good = tmp_path / "good.jsonl"
    lines = [{"body": body_for(storage_id, f"batch-{n}"), "request_id": f"b-{n}",
              "metadata": {"row": n}} for n in range(1200)]  # fmt: skip
    good.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    recorded = run_cli("submit", "--batch", str(good), env=env, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr.decode()
    assert recorded.stdout.decode().split() == [f"b-{n}" for n in range(1200)]
    assert recorded.stderr.decode().splitlines()[-1].startswith("1200 requests from")
    assert json.loads(producer.get("b-1199").metadata) == {"row": 1199}
    status = run_cli("status", "b-7", "--json", env=env, cwd=tmp_path)
    assert status.returncode == 4  # in flight
    assert json.loads(status.stdout)["metadata"] == {"row": 7}
    waited = run_cli("submit", "-", "--metadata", '{"a": 1}', "--wait", "--timeout", "0.5",
                 env=env, cwd=tmp_path, stdin=json.dumps(body).encode())  # fmt: skip
    assert waited.returncode == 4
    request_id, accepted = waited.stdout.decode().splitlines()
    assert accepted.split()[1:3] == [request_id, "accepted"]
    assert 'metadata={"a": 1}' in accepted
    assert "timed out after 0.5 s of waiting; it is still accepted" in waited.stderr.decode()
    refuse(producer.records, "f-1", [FieldError("x", "bad")], time.time(), entry_id="1-0")
    failed = run_cli("status", "f-1", env=env, cwd=tmp_path)
    assert failed.returncode == 1
    assert "x: bad" in failed.stdout.decode()
