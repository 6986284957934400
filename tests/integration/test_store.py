"""The request store's Lua scripts against a real server: atomic, replay-safe, leased."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import redis

from pallycon_pack.redis_server import RedisServer
from worker.events import State
from worker.keys import Keys
from worker.store import Change, RequestStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_server: RedisServer) -> RequestStore:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    return RequestStore(client, Keys(f"s{os.urandom(4).hex()}"), result_maxlen=1000)


def _create(store: RequestStore, request_id: str = "r1", digest: str = "h1") -> str:
    fields = {"state": State.ACCEPTED.value, "body": "{}", "created_at": "1"}
    return store.create(
        request_id, digest, fields, {"event_id": f"{request_id}:1"}, submit_at=100.0
    )


def test_create_is_idempotent_by_id_and_refuses_another_body(store: RequestStore):
    """created, then duplicate (same body hash), then conflict (another one): one event."""
    assert _create(store) == "created"
    assert _create(store) == "duplicate"
    assert _create(store, digest="h2") == "conflict"
    assert store.redis.xlen(store.keys.results) == 1
    assert store.redis.zscore(store.keys.submit_schedule, "r1") == 100.0


def test_a_replayed_transition_changes_nothing(store: RequestStore):
    """A transition made from a stale version is refused: no field, no event, no schedule."""
    _create(store)
    record = store.get("r1")
    assert record is not None
    fields = {"state": State.SUBMITTED.value, "job_id": "7"}
    assert store.transition(
        record, fields, {"event_id": "r1:2"}, schedule="poll", at=5.0, index_job="7"
    )
    assert not store.transition(record, fields, {"event_id": "r1:2"}, schedule="poll", at=9.0)
    after = store.get("r1")
    assert after is not None
    assert (after.state, after.version) == (State.SUBMITTED, 2)
    assert store.redis.xlen(store.keys.results) == 2
    assert store.redis.zscore(store.keys.poll_schedule, "r1") == 5.0
    assert store.redis.zscore(store.keys.submit_schedule, "r1") is None
    assert store.request_for_job("7") == "r1"


def test_a_batch_of_changes_is_applied_each_on_its_own(store: RequestStore):
    """apply(): one round trip, yet each change is checked against its own version."""
    for n in range(3):
        _create(store, f"r{n}")
    records = store.get_many(["r0", "r1", "r2"])
    stale = records["r1"]
    assert store.transition(stale, {"note": "moved on"})
    changes = [
        Change(records[f"r{n}"], {"state": "submitted", "job_id": str(n)}, {"event_id": f"r{n}:2"},
               schedule="poll", at=float(n), index_job=str(n))
        for n in range(3)
    ]  # fmt: skip
    assert store.apply(changes) == [True, False, True]
    assert store.apply([]) == []
    after = store.get_many(["r0", "r1", "r2"])
    assert [after[f"r{n}"].state for n in range(3)] == [
        State.SUBMITTED,
        State.ACCEPTED,
        State.SUBMITTED,
    ]
    assert store.redis.xlen(store.keys.results) == 5  # 3 created, 2 submitted
    assert store.redis.zscore(store.keys.poll_schedule, "r1") is None
    assert [store.request_for_job(str(n)) for n in range(3)] == ["r0", None, "r2"]


def test_counters_of_many_records_are_bumped_at_once(store: RequestStore):
    for n in range(3):
        _create(store, f"r{n}")
    assert store.bump("r0", "deliveries") == 1
    assert store.bump_many(["r0", "r1", "r2"], "deliveries") == [2, 1, 1]
    assert store.bump_many([], "deliveries") == []


def test_finishing_unschedules_unindexes_and_expires(store: RequestStore):
    """A finished request leaves both schedules and the job index; its record expires."""
    _create(store)
    record = store.get("r1")
    assert record is not None
    store.transition(
        record, {"state": "submitted", "job_id": "8"}, schedule="poll", at=1.0, index_job="8"
    )
    record = store.get("r1")
    assert record is not None
    assert store.transition(record, {"state": "completed"}, {"event_id": "r1:3"}, finish=True)
    assert store.redis.zscore(store.keys.poll_schedule, "r1") is None
    assert store.request_for_job("8") is None
    assert 0 < store.redis.ttl(store.keys.request("r1")) <= store.record_ttl


def test_claims_are_exclusive_and_leased(store: RequestStore):
    """Due entries go to one claimer; they come back once the lease has passed."""
    store.redis.zadd(store.keys.poll_schedule, {f"r{n}": n for n in range(10)})
    first = store.claim("poll", now=4.5, lease=60, limit=100)
    second = store.claim("poll", now=4.5, lease=60, limit=100)
    assert sorted(first) == ["r0", "r1", "r2", "r3", "r4"]
    assert second == []
    assert sorted(store.claim("poll", now=70, lease=60, limit=100)) == [f"r{n}" for n in range(10)]


def test_the_token_bucket_is_shared_and_refills(store: RequestStore, redis_server: RedisServer):
    """Two workers (two clients) draw from one bucket of 5: together they get 5 at once, then
    either must wait about 1/rate s; after that wait, a token is there again."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    other = RequestStore(client, store.keys)
    takers = [store, other, store, other, store]
    waits = [taker.take_token(rate=2.0, burst=5, count_as="api test") for taker in takers]
    assert waits == [0, 0, 0, 0, 0]
    shared = other.take_token(rate=2.0, burst=5, count_as="api test")  # the 6th, by either
    assert 0 < shared <= 0.5
    time.sleep(shared + 0.02)
    assert store.take_token(rate=2.0, burst=5, count_as="api test") == 0  # refilled
    assert store.redis.hget(store.keys.counters, "api test") == "6"  # granted calls only


def test_events_are_json_with_the_given_id(store: RequestStore):
    """What the stream holds is the event JSON under the field 'event'."""
    _create(store)
    entries: Any = store.redis.xrange(store.keys.results)
    assert [json.loads(fields["event"]) for _, fields in entries] == [{"event_id": "r1:1"}]
