"""What a step could not write because Redis went away is kept and written once Redis is back,
by the process itself (a real Redis server killed and restarted on its AOF)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pallycon_store.connect import REDIS_AWAY
from pallycon_store.events import State
from pallycon_worker.outcome import Outcome
from pallycon_worker.runtime import Runtime
from pallycon_worker.submit_rules import registered, submitting
from support.queue import make_settings
from support.redis_server import RedisServer
from support.samples import body_for
from support.world import producer_on

pytestmark = pytest.mark.integration


def test_an_outcome_redis_could_not_take_is_written_once_it_is_back(tmp_path: Path):
    """A registration's outcome (its job id) met a Redis that was gone: it is kept, the step
    ends, and the process writes it once the restarted Redis answers, without any other step
    of its own: the request is submitted, not left marked to wait out the hard time limit."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        rt = Runtime.build(make_settings(server.url, "http://127.0.0.1:9", redis_fsync_wait_ms=0))
        (request_id,) = producer_on(rt).submit_many([body_for("st", "kept-1")])
        record = rt.shared.records.get(request_id)
        assert record is not None
        assert rt.shared.records.apply([submitting(record, 10.0, rt.policy)]) == [True]
        fsynced = rt.shared.redis.execute_command("WAITAOF", 1, 0, 5000)  # type: ignore[no-untyped-call]
        assert fsynced[0] == 1  # the mark is on disk
        marked = rt.shared.records.get(request_id)
        assert marked is not None
        server.kill()

        outcome: Outcome = registered(marked, "1001", 11.0, rt.policy)
        with pytest.raises(REDIS_AWAY):
            rt.commit_or_keep([outcome])
        assert len(rt.unsettled) == 1

        server.start()
        deadline = time.monotonic() + 30
        while len(rt.unsettled) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(rt.unsettled) == 0
        after = rt.shared.records.get(request_id)
        assert after is not None
        assert (after.state, after.job_id) == (State.SUBMITTED, "1001")
    finally:
        server.stop()


def test_a_worker_with_a_fast_clock_schedules_by_redis_time(tmp_path: Path):
    """A worker whose clock is an hour fast reads Redis's TIME with its records: its now is
    Redis's, so what it schedules is due when the others expect, and a request recorded just
    now is due for it at once (not an hour early for the others, nor late for it)."""
    import redis as redis_py

    from pallycon_store.clock import ServerClock

    server = RedisServer(tmp_path / "redis").start()
    try:
        settings = make_settings(server.url, "http://127.0.0.1:9", redis_fsync_wait_ms=0)
        rt = Runtime.build(settings)
        assert rt.server_clock is not None
        fast = ServerClock(lambda: time.time() + 3600)
        rt.clock = rt.server_clock = fast
        (request_id,) = submit_one(rt)
        rt.shared.records.get_many([request_id], rt.server_clock)
        seconds, micros = redis_py.Redis.from_url(server.url).time()
        assert abs(rt.clock() - (seconds + micros / 1e6)) < 5  # it was an hour fast
        lane = rt.shared.redis.zscore(rt.shared.keys.submit_schedule, request_id)
        assert lane is not None
        assert lane <= rt.clock()  # due now by the one clock
    finally:
        server.stop()


def submit_one(rt: Runtime) -> list[str]:
    """One request recorded by a producer on ``rt``'s Redis, scheduled by Redis's clock."""
    from pallycon_producers.api import Producer

    producer = Producer(
        rt.shared.records,
        rt.shared.durability,
        max_api_json=rt.settings.max_api_json_bytes,
    )
    return producer.submit_many([body_for("st", "clock-1")])


def test_a_poll_cut_short_is_due_again_once_redis_answers(tmp_path: Path):
    """A poll that Redis's going away cut short is made due again as soon as it answers, by
    the process itself, not after the claim's lease."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        rt = Runtime.build(make_settings(server.url, "http://127.0.0.1:9", redis_fsync_wait_ms=0))
        (request_id,) = submit_one(rt)
        record = rt.shared.records.get(request_id)
        assert record is not None
        assert rt.shared.records.apply([registered(record, "1001", time.time(), rt.policy).change])
        claimed = rt.shared.schedules.claim_polls(time.time() + 60, lease=60, limit=10)
        assert claimed == [request_id]  # leased for a minute
        server.kill()
        rt.unsettled.keep_polls([request_id])
        server.start()
        deadline = time.monotonic() + 30
        while len(rt.unsettled) and time.monotonic() < deadline:
            time.sleep(0.1)
        due = rt.shared.redis.zscore(rt.shared.keys.poll_schedule, request_id)
        assert due is not None
        assert due <= rt.clock()  # due now, not at the lease's end
    finally:
        server.stop()


def test_a_job_id_is_kept_even_when_redis_lost_the_mark(tmp_path: Path):
    """A registration's outcome written after a restart that lost the mark (the record is back
    to accepted): the job exists, so the request is recorded as submitted with it, not
    registered a second time."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        rt = Runtime.build(make_settings(server.url, "http://127.0.0.1:9", redis_fsync_wait_ms=0))
        (request_id,) = submit_one(rt)
        accepted = rt.shared.records.get(request_id)
        assert accepted is not None
        marked = accepted.moved(submitting(accepted, 10.0, rt.policy).fields)  # never written
        rt.unsettled.keep([registered(marked, "1001", 11.0, rt.policy)])
        rt.unsettled.settle()
        after = rt.shared.records.get(request_id)
        assert after is not None
        assert (after.state, after.job_id) == (State.SUBMITTED, "1001")
    finally:
        server.stop()
