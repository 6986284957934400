"""The shared state's Lua scripts against a real server: atomic, replay-safe, leased."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from pallycon_producers.api import Producer, SubmitUnconfirmed
from pallycon_store.counters import Counters, Metric
from pallycon_store.durability import MARK_TTL_MS, Durability
from pallycon_store.events import EventType, State, event
from pallycon_store.failures import FailureCode, explain
from pallycon_store.keys import Keys
from pallycon_store.overview import Overview
from pallycon_store.ratelimit import TokenBucket
from pallycon_store.record import Fields
from pallycon_store.records import Change, NewRequest, Records
from pallycon_store.schedules import Schedules
from support.queue import announce_sites, make_settings
from support.redis_server import RedisServer
from support.samples import SAMPLE_SITE, body_for

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url, decode_responses=True)


@pytest.fixture
def keys() -> Keys:
    return Keys(f"s{os.urandom(4).hex()}")


@pytest.fixture
def records(client: redis.Redis, keys: Keys) -> Records:
    return Records(client, keys, result_maxlen=1000, record_ttl=3600, default_site=None)


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
    schedules = Schedules(client, keys, default_site=None)
    client.zadd(keys.poll_schedule, {f"r{n}": n for n in range(10)})
    first = schedules.claim_polls(now=4.5, lease=60, limit=100)
    second = schedules.claim_polls(now=4.5, lease=60, limit=100)
    assert sorted(first) == ["r0", "r1", "r2", "r3", "r4"]
    assert second == []
    again = schedules.claim_polls(now=70, lease=60, limit=100)
    assert sorted(again) == [f"r{n}" for n in range(10)]


def test_the_token_bucket_is_shared_and_refills(
    client: redis.Redis, keys: Keys, redis_server: RedisServer
):
    """Two workers (two clients) draw from one bucket of 5: together they get 5 at once, then
    either must wait about 1/rate s; after that wait, a token is there again."""
    other_client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    one = TokenBucket(client, keys, rate=2.0, burst=5, site_id="")
    other = TokenBucket(other_client, keys, rate=2.0, burst=5, site_id="")
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


# --- The state indexes and the overview --------------------------------------------------------


def _move(records: Records, request_id: str, state: State, at: float, **fields: Any) -> None:
    record = records.get(request_id)
    assert record is not None
    change = Fields(state=state, updated_at=at, **fields)  # type: ignore[typeddict-item]
    kind = EventType.FAILED if state == State.FAILED else EventType.SUBMITTED
    assert records.apply(
        [Change(record, change, event(kind, request_id, at), finish=state.final)]
    ) == [True]


def test_each_request_is_in_the_index_of_its_state_scored_by_when_it_entered(records: Records):
    for n, name in enumerate(["a", "b", "c"]):
        assert records.create(_new(name, name), submit_at=None) == "created"
        _move(records, name, State.SUBMITTED, 10.0 + n)
    _move(records, "b", State.FAILED, 50.0, error_code="E1")
    index = records.keys.state_index
    assert records.redis.zrange(index(State.ACCEPTED), 0, -1) == []
    assert records.redis.zrange(index(State.SUBMITTED), 0, -1, withscores=True) == [
        ("a", 10.0),
        ("c", 12.0),
    ]
    assert records.redis.zrange(index(State.FAILED), 0, -1, withscores=True) == [("b", 50.0)]
    # A change that keeps the state leaves the index alone
    record = records.get("a")
    assert record is not None
    assert records.apply([Change(record, Fields(status="WM000", updated_at=99.0))]) == [True]
    assert records.redis.zscore(index(State.SUBMITTED), "a") == 10.0


def test_the_overview_lists_newest_first_counts_and_reads_a_history(records: Records):
    overview = Overview(records.redis, records.keys, default_site=None)
    for n in range(5):
        name = f"r{n}"
        records.create(_new(name, name), submit_at=None)
        _move(records, name, State.SUBMITTED, 10.0 + n)
    _move(records, "r1", State.FAILED, 20.0, error_code="E1")
    _move(records, "r3", State.FAILED, 21.0, error_code="E1")
    _move(records, "r4", State.FAILED, 22.0, error_code="E2")

    assert overview.counts() == {
        State.ACCEPTED: 0,
        State.SUBMITTING: 0,
        State.SUBMITTED: 2,
        State.COMPLETED: 0,
        State.FAILED: 3,
        State.CANCELLED: 0,
        State.STOPPED: 0,
    }
    assert [r.request_id for r in overview.list()] == ["r4", "r3", "r1", "r2", "r0"]
    assert [r.request_id for r in overview.list(State.FAILED, limit=2)] == ["r4", "r3"]
    assert [r.request_id for r in overview.list(since=12.0, until=21.0)] == ["r3", "r1", "r2"]
    assert overview.per_bucket(State.FAILED, 20.0, 23.0, 2.0) == [2, 1]
    assert overview.failures_by_code(since=0.0) == [("E1", "", 2), ("E2", "", 1)]
    assert [e["type"] for e in overview.timeline("r1")] == ["accepted", "submitted", "failed"]
    assert [e["event_id"] for e in overview.timeline("r1")] == ["r1:1", "r1:2", "r1:3"]
    assert overview.timeline("nobody") == []

    assert [
        r.request_id
        for r in overview.list(State.FAILED, where=lambda r: r.error_code == "E1", limit=1)
    ] == ["r3"]

    # A finished record that expired: skipped (a reader writes nothing); old entries trimmed
    records.redis.delete(records.keys.request("r3"))
    assert [r.request_id for r in overview.list(State.FAILED)] == ["r4", "r1"]
    assert overview.counts()[State.FAILED] == 3
    assert (
        overview.trim(now=121.5, record_ttl=100) == 2
    )  # r1 and r3 failed at 20.0 and 21.0, kept 100 s
    assert [r.request_id for r in overview.list(State.FAILED)] == ["r4"]

    # An entry in the wrong index (left by an older version) is not listed there; a record
    # this version cannot read is skipped and counted; reindex puts both right
    records.redis.zadd(records.keys.state_index(State.ACCEPTED), {"r4": 5.0, "old": 1.0})
    records.redis.hset(
        records.keys.request("old"),
        mapping={"state": "submitted", "version": "2", "updated_at": "9.0"},
    )
    records.redis.hset(records.keys.request("odd"), mapping={"state": "paused", "version": "1"})
    records.redis.zadd(records.keys.state_index(State.SUBMITTED), {"odd": 3.0})
    assert [r.request_id for r in overview.list(State.ACCEPTED)] == []
    assert [r.request_id for r in overview.list(State.SUBMITTED)] == ["r2", "r0"]
    assert overview.unreadable == 1
    # old into submitted, r1 back into failed (its record is still there); r4, old, odd out
    assert overview.reindex(batch=2) == (2, 3)
    assert records.redis.zrange(records.keys.state_index(State.SUBMITTED), 0, -1) == [
        "old",
        "r0",
        "r2",
    ]
    assert records.redis.zcard(records.keys.state_index(State.ACCEPTED)) == 0
    assert overview.reindex() == (0, 0)


def _walk(overview: Overview, sites: frozenset[str], limit: int, max_read: int | None) -> Any:
    """Every page of ``sites``' requests, following next: (the ids in order, pages read)."""
    seen: list[str] = []
    after = None
    for pages in range(1, 100):
        found, after = overview.page(limit=limit, after=after, sites=sites, max_read=max_read)
        seen += [record.request_id for record in found]
        if after is None:
            return seen, pages
    raise AssertionError("the pages never end")


def test_pages_of_several_sites_merge_their_indexes_and_read_a_bounded_number(records: Records):
    """Named sites: their own indexes, merged in the order of every page (newest first, ties
    by id), no other site's request read. The default site (no index of its own): every
    site's index, filtered, at most max_read records a page: shorter pages (even empty,
    with a next) until the end, each request once."""
    placed = {f"o{n}": ("OTHER", float(n)) for n in range(10)}
    placed |= {"t1": ("THIRD", 5.5), "t2": ("THIRD", 8.5), "t3": ("THIRD", 8.5), "d1": ("", 3.5)}
    for request_id, (site, at) in placed.items():
        fields = Fields(state=State.ACCEPTED, body="{}", created_at=at, site_id=site)
        new = NewRequest(request_id, request_id, fields, event(EventType.ACCEPTED, request_id, at))
        assert records.create(new, submit_at=None) == "created"
    overview = Overview(records.redis, records.keys, default_site=None)
    order = sorted(placed, key=lambda rid: (-placed[rid][1], [-b for b in rid.encode()]))
    named = frozenset({"OTHER", "THIRD"})
    seen, pages = _walk(overview, named, limit=4, max_read=None)
    assert seen == [rid for rid in order if rid != "d1"]
    assert pages == 4
    assert _walk(overview, named, limit=4, max_read=2)[0] == seen  # bounded, the same walk
    default, pages = _walk(overview, frozenset({""}), limit=10, max_read=3)
    assert default == ["d1"]
    assert pages == 5  # 14 requests read 3 at a time
    assert _walk(overview, frozenset({"", "THIRD"}), limit=2, max_read=None)[0] == [
        "t3", "t2", "t1", "d1"
    ]  # fmt: skip


def test_metadata_is_carried_in_every_event_of_its_request(records: Records):
    new = _new()
    new.fields["metadata"] = json.dumps({"cms_id": 7})
    records.create(new, submit_at=None)
    _move(records, "r1", State.SUBMITTED, 5.0)
    record = records.get("r1")
    assert record is not None
    assert record.public()["metadata"] == {"cms_id": 7}
    assert [e.get("metadata") for e in _events(records)][1:] == [{"cms_id": 7}]


# --- Durability: the waits before a change is relied on -----------------------------------------


def _durability(
    client: redis.Redis, keys: Keys, *, wait_ms: int, replicas: int = 0, replica_wait_ms: int = 2000
) -> Durability:
    return Durability(
        client,
        wait_ms=wait_ms,
        mark=keys.durability_mark,
        replicas=replicas,
        replica_wait_ms=replica_wait_ms,
    )


def test_the_waits_write_a_mark_that_expires_and_confirm_on_this_server(
    client: redis.Redis, keys: Keys
):
    durability = _durability(client, keys, wait_ms=2000)
    server = durability.server()
    assert server == client.info("server")["run_id"]
    durability.wait(server)
    assert 0 < client.pttl(keys.durability_mark) <= MARK_TTL_MS
    assert durability.server() == server  # asked once: then the one the last wait reached
    assert durability.unavailable == ""  # the test server runs with AOF on


def test_a_change_made_just_before_redis_ran_out_of_memory_is_still_confirmed(
    client: redis.Redis, keys: Keys
):
    """The change fills Redis to its limit: the mark's SET is refused (out of memory), so the
    mark is written by a script allowed to (it keeps no memory): the change is confirmed, not
    reported as refused while it is recorded (figure 11's "whole or nothing")."""
    durability = _durability(client, keys, wait_ms=2000)
    server = durability.server()
    client.set(f"{keys.prefix}:change", "x")
    client.config_set("maxmemory", 1)  # below what it uses: every plain write is refused
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set(keys.durability_mark, "1")
        durability.wait(server)
    finally:
        client.config_set("maxmemory", 0)
    assert 0 < client.pttl(keys.durability_mark) <= MARK_TTL_MS


def test_a_redis_that_cannot_run_the_mark_script_says_out_of_memory(
    client: redis.Redis, keys: Keys
):
    """Before Redis 7 a script's flags do not load (here: a flag no Redis knows): the wait
    raises the refusal of the mark, ``OutOfMemoryError`` (a Redis error the loops wait out),
    not the script's load error."""
    durability = _durability(client, keys, wait_ms=2000)
    durability._mark_script = client.register_script("#!lua flags=no-such-flag\nreturn 1")
    server = durability.server()
    client.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            durability.wait(server)
    finally:
        client.config_set("maxmemory", 0)


def test_too_few_replicas_in_time_is_a_timeout_naming_the_setting(client: redis.Redis, keys: Keys):
    durability = _durability(client, keys, wait_ms=0, replicas=1, replica_wait_ms=50)
    with pytest.raises(redis.TimeoutError, match=r"0 of 1 Redis replicas .* within 50 ms"):
        durability.wait(durability.server())


def test_no_aof_is_said_once_and_the_fsync_wait_skipped(
    client: redis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
):
    client.config_set("appendonly", "no")
    try:
        durability = _durability(client, keys, wait_ms=2000)
        durability.wait(durability.server())
        durability.wait(durability.server())
    finally:
        client.config_set("appendonly", "yes")
    assert durability.unavailable  # the server's own words
    warnings = [r for r in caplog.records if "not waiting for AOF fsync" in r.message]
    assert len(warnings) == 1


def test_a_restarted_server_does_not_confirm_a_change_made_before(tmp_path: Path):
    """The mark reaches whichever server the connection reaches now: after a restart (or a
    failover) that is not the one the change was made on, and the wait says so, even as the
    first wait of a process (a one-shot `submit`), and for each caller sharing the object."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        durability = _durability(client, Keys("pp"), wait_ms=2000)  # a new process: no wait yet
        first = durability.server()
        client.set("change-1", "x")
        second = durability.server()  # another thread's change, on the same server
        client.set("change-2", "x")
        server.kill()  # whether it kept them or not, the server now reached cannot say
        server.start()
        with pytest.raises(redis.ConnectionError, match="Redis changed"):
            durability.wait(first)
        # The object now knows the new server; the other caller's change is still not confirmed.
        with pytest.raises(redis.ConnectionError, match="Redis changed"):
            durability.wait(second)
        durability.wait(durability.server())  # from now on, this server is the one
        client.close()
    finally:
        server.stop()


def test_a_change_found_on_the_new_server_is_confirmed_there(tmp_path: Path):
    """After a restart (or a failover) the first change of a process is confirmed when the
    server the wait reached holds it (the wait's own mark came after it there); one it does
    not hold is still not confirmed."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        durability = _durability(client, Keys("pp"), wait_ms=2000)
        before = durability.server()
        server.kill()
        server.start()
        client.set("change-1", "x")  # reached the new server
        durability.wait(before, present=lambda: client.exists("change-1") == 1)
        with pytest.raises(redis.ConnectionError, match="Redis changed"):
            durability.wait(before, present=lambda: client.exists("change-2") == 1)
        client.close()
    finally:
        server.stop()


def _new_of(site: str, request_id: str) -> NewRequest:
    new = _new(request_id, request_id)
    if site:
        new.fields["site_id"] = site
    return new


def test_the_overview_counts_and_lists_each_site_apart(records: Records):
    """Two named sites beside the default one (TUTO, which some requests name and most do
    not): each named site from its own indexes, the default one as whatever is left."""
    records.redis.hset(
        records.keys.sites,
        mapping={
            "TUTO": json.dumps({"region": "RG001", "default": True}),
            "BRND": json.dumps({"region": "RG001", "default": False}),
            "OTHR": json.dumps({"region": "RG001", "default": False}),
        },
    )
    overview = Overview(records.redis, records.keys, default_site=None)
    placed = {"d1": "", "d2": "", "t1": "TUTO", "b1": "BRND", "b2": "BRND", "b3": "BRND"}
    for n, (name, site) in enumerate(placed.items()):
        assert records.create(_new_of(site, name), submit_at=None) == "created"
        _move(records, name, State.SUBMITTED, 10.0 + n)
    _move(records, "b2", State.FAILED, 30.0, error_code="E1")
    _move(records, "d2", State.FAILED, 31.0, error_code="E2")

    def nonzero(counts: dict[State, int]) -> dict[str, int]:
        return {state.value: n for state, n in counts.items() if n}

    assert nonzero(overview.counts()) == {"submitted": 4, "failed": 2}
    assert nonzero(overview.counts("BRND")) == {"submitted": 2, "failed": 1}
    assert nonzero(overview.counts("")) == {"submitted": 2, "failed": 1}
    assert overview.counts("TUTO") == overview.counts("")  # the default site, by its id
    assert nonzero(overview.counts("OTHR")) == {}
    by_site = overview.counts_by_site()
    assert {site: nonzero(counts) for site, counts in by_site.items()} == {
        None: {"submitted": 4, "failed": 2},
        "": {"submitted": 2, "failed": 1},
        "BRND": {"submitted": 2, "failed": 1},
        "OTHR": {},
    }
    # Told the default site: the same (a reader with PALLYCON_SITE_ID set)
    told = Overview(records.redis, records.keys, default_site="TUTO")
    assert told.counts_by_site() == by_site

    def ids(found: list[Any]) -> list[str]:
        return [r.request_id for r in found]

    assert ids(overview.list(site="BRND")) == ["b2", "b3", "b1"]
    assert ids(overview.list(State.SUBMITTED, site="")) == ["t1", "d1"]
    assert ids(overview.list(site="TUTO", limit=2)) == ["d2", "t1"]
    assert ids(overview.list(site="OTHR")) == []
    assert overview.failures_by_code(since=0.0, site="BRND") == [("E1", "", 1)]

    # The sweeper trims the sites' indexes of finished requests too
    assert (
        overview.trim(now=130.5, record_ttl=100) == 2
    )  # b2 (failed at 30.0, kept 100 s) from both indexes
    assert nonzero(overview.counts("BRND")) == {"submitted": 2}

    # reindex puts a site's entries back, and drops those of another site or state
    index = records.keys.site_state_index
    records.redis.delete(index("BRND", State.SUBMITTED))
    records.redis.zadd(index("OTHR", State.SUBMITTED), {"d1": 1.0, "b1": 1.0})
    # A site no longer announced, whose last record expired: its index entry dropped too
    records.redis.zadd(index("GONE", State.COMPLETED), {"expired": 1.0})
    assert overview.reindex(batch=2) == (4, 3)  # b1, b3 back, b2 (still there) in both
    assert records.redis.exists(index("GONE", State.COMPLETED)) == 0
    assert nonzero(overview.counts("BRND")) == {"submitted": 2, "failed": 1}
    assert nonzero(overview.counts("OTHR")) == {}
    assert overview.reindex() == (0, 0)


@pytest.mark.parametrize("site_id", [None, SAMPLE_SITE.site_id])
def test_a_submit_with_redis_away_is_unconfirmed_under_its_id(tmp_path, isolated_settings, site_id):
    """Redis gone before the sites' read: `submit` raises SubmitUnconfirmed carrying the id to
    submit again (a new one when none was given), never a bare Redis error."""
    with RedisServer(tmp_path / "redis") as server:
        producer = Producer.from_settings(make_settings(server.url, "http://127.0.0.1:9"))
        announce_sites(producer, SAMPLE_SITE.site_id)
    with pytest.raises(SubmitUnconfirmed) as given:
        producer.submit(body_for("storage", "away"), "away-1", site_id=site_id)
    assert given.value.request_ids == ["away-1"]
    with pytest.raises(SubmitUnconfirmed) as new:
        producer.submit_many([body_for("storage", "away")], site_ids=[site_id])
    [generated] = new.value.request_ids
    assert len(generated) == 32


def test_failures_by_code_say_what_each_code_means_at_its_stage(records: Records):
    """Our `error` (no registration before the deadline) and PallyCon's status word `error` (a
    packaging failure) are one code with two meanings: two rows, each explained at its stage."""
    overview = Overview(records.redis, records.keys, default_site=None)
    for name, stage in [("ours", "submit"), ("theirs", "packaging"), ("theirs2", "packaging")]:
        records.create(_new(name, name), submit_at=None)
        _move(records, name, State.FAILED, 30.0, error_code="error", error_stage=stage)
    [(code, packaging, two), (_, submit, one)] = overview.failures_by_code(since=0.0)
    assert (code, two, one) == ("error", 2, 1)
    assert packaging == explain("error", "packaging") != submit == FailureCode.ERROR.meaning
