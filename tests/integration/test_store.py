"""The shared state's Lua scripts against a real server: atomic, replay-safe, leased."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import redis

from store.counters import Counters, Metric
from store.events import EventType, State, event
from store.keys import Keys
from store.ratelimit import TokenBucket
from store.record import Fields
from store.records import Change, NewRequest, Records
from store.schedules import Schedules
from support.redis_server import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url, decode_responses=True)


@pytest.fixture
def keys() -> Keys:
    return Keys(f"s{os.urandom(4).hex()}")


@pytest.fixture
def records(client: redis.Redis, keys: Keys) -> Records:
    return Records(client, keys, result_maxlen=1000)


def _new(request_id: str = "r1", digest: str = "h1") -> NewRequest:
    fields = Fields(state=State.ACCEPTED, body="{}", created_at=1.0)
    return NewRequest(request_id, digest, fields, event(EventType.ACCEPTED, request_id, 1.0))


def _events(records: Records) -> list[dict[str, Any]]:
    entries: Any = records.redis.xrange(records.keys.results)
    return [json.loads(fields["event"]) for _, fields in entries]


def test_create_is_idempotent_by_id_and_refuses_another_body(records: Records):
    """created, then duplicate (same body hash), then conflict (another one): one event."""
    assert records.create(_new(), submit_at=100.0) == "created"
    assert records.create(_new(), submit_at=100.0) == "duplicate"
    assert records.create(_new(digest="h2"), submit_at=100.0) == "conflict"
    assert records.redis.xlen(records.keys.results) == 1
    assert records.redis.zscore(records.keys.submit_schedule, "r1") == 100.0


def test_a_batch_is_created_whole_or_not_at_all(records: Records):
    """One conflict in a batch: nothing of it is written; a repeated id is refused."""
    records.create(_new("taken"), submit_at=None)
    batch = [_new("a"), _new("taken", digest="other"), _new("b")]
    assert records.create_many(batch, submit_at=None) == ["skipped", "conflict", "skipped"]
    assert records.get_many(["a", "b"]) == {}
    with pytest.raises(ValueError, match="given twice"):
        records.create_many([_new("a"), _new("a")], submit_at=None)


def test_the_record_reads_back_typed(records: Records):
    records.create(_new(), submit_at=None)
    record = records.get("r1")
    assert record is not None
    assert (record.state, record.version, record.created_at, record.attempts) == (
        State.ACCEPTED, 1, 1.0, 0,
    )  # fmt: skip
    assert record.body_hash == "h1"
    assert records.get("absent") is None


def test_the_script_stamps_each_event_id_from_the_version_it_writes(records: Records):
    """The first event is <id>:1, each change's event <id>:<its new version>."""
    records.create(_new(), submit_at=None)
    record = records.get("r1")
    assert record is not None
    assert records.apply([Change(record, Fields(last_seen="x"))]) == [True]  # no event: v2
    record = records.get("r1")
    assert record is not None
    progress = event(EventType.PROGRESS, "r1", 2.0, status="WM11")
    assert records.apply([Change(record, Fields(status="WM11"), progress)]) == [True]
    ids = [e["event_id"] for e in _events(records)]
    assert ids == ["r1:1", "r1:3"]
    assert _events(records)[1]["status"] == "WM11"


def test_a_replayed_transition_changes_nothing(records: Records):
    """A transition made from a stale version is refused: no field, no event, no schedule."""
    records.create(_new(), submit_at=None)
    record = records.get("r1")
    assert record is not None
    fields = Fields(state=State.SUBMITTED, job_id="7")
    submitted = event(EventType.SUBMITTED, "r1", 3.0, job_id="7")
    change = Change(record, fields, submitted, schedule="poll", at=5.0, index_job="7")
    assert records.apply([change]) == [True]
    assert records.apply([Change(record, fields, submitted, schedule="poll", at=9.0)]) == [False]
    after = records.get("r1")
    assert after is not None
    assert (after.state, after.version, after.job_id) == (State.SUBMITTED, 2, "7")
    assert records.redis.xlen(records.keys.results) == 2
    assert records.redis.zscore(records.keys.poll_schedule, "r1") == 5.0
    assert records.redis.zscore(records.keys.submit_schedule, "r1") is None
    assert records.request_for_job("7") == "r1"


def test_a_batch_of_changes_is_applied_each_on_its_own(records: Records):
    """apply(): one round trip, yet each change is checked against its own version."""
    records.create_many([_new(f"r{n}") for n in range(3)], submit_at=None)
    got = records.get_many(["r0", "r1", "r2"])
    assert records.apply([Change(got["r1"], Fields(last_seen="moved on"))]) == [True]
    changes = [
        Change(got[f"r{n}"], Fields(state=State.SUBMITTED, job_id=str(n)),
               event(EventType.SUBMITTED, f"r{n}", 1.0), schedule="poll", at=float(n), index_job=str(n))
        for n in range(3)
    ]  # fmt: skip
    assert records.apply(changes) == [True, False, True]
    assert records.apply([]) == []
    after = records.get_many(["r0", "r1", "r2"])
    assert [after[f"r{n}"].state for n in range(3)] == [
        State.SUBMITTED,
        State.ACCEPTED,
        State.SUBMITTED,
    ]
    assert records.redis.xlen(records.keys.results) == 5  # 3 created, 2 submitted
    assert records.redis.zscore(records.keys.poll_schedule, "r1") is None
    assert [records.request_for_job(str(n)) for n in range(3)] == ["r0", None, "r2"]


def test_deliveries_of_many_records_are_counted_at_once(records: Records):
    records.create_many([_new(f"r{n}") for n in range(3)], submit_at=None)
    assert records.count_deliveries(["r0"]) == [1]
    assert records.count_deliveries(["r0", "r1", "r2"]) == [2, 1, 1]
    assert records.count_deliveries([]) == []
    record = records.get("r0")
    assert record is not None
    assert record.deliveries == 2


def test_finishing_unschedules_unindexes_and_expires(records: Records):
    """A finished request leaves both schedules and the job index; its record expires."""
    records.create(_new(), submit_at=None)
    record = records.get("r1")
    assert record is not None
    fields = Fields(state=State.SUBMITTED, job_id="8")
    records.apply([Change(record, fields, schedule="poll", at=1.0, index_job="8")])
    record = records.get("r1")
    assert record is not None
    done = event(EventType.COMPLETED, "r1", 4.0)
    assert records.apply([Change(record, Fields(state=State.COMPLETED), done, finish=True)])
    assert records.redis.zscore(records.keys.poll_schedule, "r1") is None
    assert records.request_for_job("8") is None
    assert 0 < records.redis.ttl(records.keys.request("r1")) <= records.record_ttl


def test_claims_are_exclusive_and_leased(client: redis.Redis, keys: Keys):
    """Due entries go to one claimer; they come back once the lease has passed."""
    schedules = Schedules(client, keys)
    client.zadd(keys.poll_schedule, {f"r{n}": n for n in range(10)})
    first = schedules.claim("poll", now=4.5, lease=60, limit=100)
    second = schedules.claim("poll", now=4.5, lease=60, limit=100)
    assert sorted(first) == ["r0", "r1", "r2", "r3", "r4"]
    assert second == []
    again = schedules.claim("poll", now=70, lease=60, limit=100)
    assert sorted(again) == [f"r{n}" for n in range(10)]


def test_the_token_bucket_is_shared_and_refills(
    client: redis.Redis, keys: Keys, redis_server: RedisServer
):
    """Two workers (two clients) draw from one bucket of 5: together they get 5 at once, then
    either must wait about 1/rate s; after that wait, a token is there again."""
    other_client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    one = TokenBucket(client, keys, rate=2.0, burst=5)
    other = TokenBucket(other_client, keys, rate=2.0, burst=5)
    waits = [taker.take("api test") for taker in (one, other, one, other, one)]
    assert waits == [0, 0, 0, 0, 0]
    shared = other.take("api test")  # the 6th, by either
    assert 0 < shared <= 0.5
    time.sleep(shared + 0.02)
    assert one.take("api test") == 0  # refilled
    assert Counters(client, keys).read()["api test"] == 6  # granted calls only


def test_counters_are_named_metrics(client: redis.Redis, keys: Keys):
    counters = Counters(client, keys)
    counters.add(Metric.POLL_RETRIES)
    counters.add(Metric.POLL_RETRIES, 2)
    assert counters.read() == {"poll retries": 3}
