"""Flow control's Redis side against a real server: lanes, the take, the gated mark (pause and
cap), the in-flight set, pauses and cancels (including a cancel racing the mark)."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import pytest
import redis

from pallycon_store.cancel import CancelOutcome, cancel
from pallycon_store.events import EventType, State, event
from pallycon_store.flow import EVERY_SITE, Flow, Priority
from pallycon_store.keys import Keys
from pallycon_store.record import Fields
from pallycon_store.records import Applied, Change, NewRequest, Records
from pallycon_worker.outcome import StepPolicy
from pallycon_worker.submit_rules import registered, submitting
from support.queue import make_settings
from support.redis_server import RedisServer

pytestmark = pytest.mark.integration

POLICY = StepPolicy.of(make_settings("redis://unused", "http://unused"))


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url, decode_responses=True)


@pytest.fixture
def keys() -> Keys:
    return Keys(f"f{os.urandom(4).hex()}")


@pytest.fixture
def records(client: redis.Redis, keys: Keys) -> Records:
    return Records(client, keys, result_maxlen=1000, record_ttl=3600, default_site=None)


@pytest.fixture
def flow(client: redis.Redis, keys: Keys) -> Flow:
    return Flow(client, keys)


def new(request_id: str, site: str = "", priority: str = "", at: float = 1.0) -> NewRequest:
    fields = Fields(state=State.ACCEPTED, body="{}", created_at=at, updated_at=at)
    if site:
        fields["site_id"] = site
    if priority:
        fields["priority"] = priority
    return NewRequest(request_id, request_id, fields, event(EventType.ACCEPTED, request_id, at))


def create(records: Records, *items: NewRequest, at: float = 1.0) -> None:
    assert set(records.create_many(list(items), submit_at=at)) == {"created"}


def mark(records: Records, request_id: str, cap: int = 0) -> Applied:
    record = records.get(request_id)
    assert record is not None
    (applied,) = records.apply_each([submitting(record, 10.0, POLICY, cap=cap)])
    return applied


def test_a_request_waits_on_the_lane_of_its_site_and_priority(records: Records, flow: Flow):
    """Recorded requests go on their (site, priority) lane, the lanes are listed, a sweeper
    is woken once; normal requests of the default site keep the old submit schedule key."""
    create(records, new("a"), new("b", priority="bulk"), new("c", site="BRND", priority="high"))
    keys = records.keys
    assert records.redis.zscore(keys.submit_schedule, "a") == 1.0
    assert records.redis.zscore(keys.submit_lane("", "bulk"), "b") == 1.0
    assert records.redis.zscore(keys.submit_lane("BRND", "high"), "c") == 1.0
    lanes = {(lane.site_id, lane.priority) for lane in flow.lanes()}
    assert lanes == {("", Priority.NORMAL), ("", Priority.BULK), ("BRND", Priority.HIGH)}
    assert records.redis.lrange(keys.flow_kick, 0, -1) == ["1"]
    assert flow.wait(0.1) is True
    assert flow.wait(0.1) is False  # consumed


def test_the_take_claims_the_oldest_due_and_counts_them_dispatched(records: Records, flow: Flow):
    """take() claims the oldest due requests of each lane for a lease, puts them on their
    site's dispatched set; started() takes them off; a past lease drops out of the count."""
    for n in range(5):
        create(records, new(f"r{n}", priority="bulk"), at=float(n))
    bulk = flow.lane("", Priority.BULK)
    before = flow.snapshot(10.0, [bulk])
    assert before.due == {bulk: 5}
    assert flow.take(10.0, 30.0, {bulk: 2}) == {"": ["r0", "r1"]}
    after = flow.snapshot(10.0, [bulk])
    assert (after.due[bulk], after.dispatched[""]) == (3, 2)
    flow.started({"": ["r0"]})
    assert flow.snapshot(10.0, [bulk]).dispatched[""] == 1
    assert flow.snapshot(21.0, [bulk]).dispatched[""] == 0  # r1 no longer counts after 10 s
    assert flow.snapshot(21.0, [bulk]).due[bulk] == 3  # but stays leased
    assert flow.snapshot(41.0, [bulk]).due[bulk] == 5  # until its lease ends


def test_the_take_looks_up_requests_in_flight_first_whatever_the_count(
    records: Records, flow: Flow
):
    """Two requests marked ``submitting`` at 10 fill a cap of 2, and their worker died: once
    their entries fall due (41), the take claims them with a count of 0 (the cap leaves no
    place; else nothing would free the site's places ever again), ahead of an older backlog,
    within the site's budget (shared by its lanes and with the counts), counted dispatched; not
    before they are due, nor without a budget, nor when no mark is old enough; each claimed
    once. A registered request in flight has no
    entry to take."""
    create(records, new("r1"), new("r2"), new("r3", priority="bulk"))
    for rid in ("r1", "r2", "r3"):
        assert mark(records, rid) is Applied.DONE
    r3 = records.get("r3")
    assert r3 is not None
    assert records.apply([registered(r3, "1003", 11.0, POLICY).change]) == [True]
    create(records, *(new(f"b{n}") for n in range(3)), at=2.0)  # due long before the lookups
    lane, bulk = flow.lane("", Priority.NORMAL), flow.lane("", Priority.BULK)
    assert flow.take(40.0, 30.0, {lane: 0, bulk: 0}, {"": 5}) == {}  # not due yet
    assert flow.take(41.0, 30.0, {lane: 0, bulk: 0}) == {}  # no budget
    assert flow.take(41.0, 30.0, {lane: 0}, {"": 5}, marked_before=9.0) == {}  # marked at 10
    first = flow.take(41.0, 30.0, {bulk: 0, lane: 0}, {"": 1})[""]  # one of the two
    assert len(first) == 1
    assert first[0] in {"r1", "r2"}
    # The budget bounds the lookups and the count together (the site's rate allowance)
    rest = flow.take(41.0, 30.0, {bulk: 0, lane: 3}, {"": 2})[""]
    assert rest == [*({"r1", "r2"} - set(first)), "b0"]  # the lookup first, then the oldest
    assert flow.snapshot(41.0, [lane]).dispatched[""] == 3
    assert flow.take(41.0, 30.0, {lane: 1}, {"": 0}) == {}  # no budget left: nothing
    assert flow.take(41.0, 30.0, {lane: 0}, {"": 5}) == {}  # each claimed once


def test_a_paused_site_registers_nothing_until_resumed(records: Records, flow: Flow):
    """The submitting mark is refused while its site (or every site) is paused, and the
    record is untouched; resumed, it is made. Each pause and resume is a flow event."""
    create(records, new("r1", site="BRND"), new("r2"))
    assert flow.pause("BRND", "maintenance window", 5.0) is True
    assert flow.pause("BRND", "still", 6.0) is False  # already paused: the reason updated
    assert mark(records, "r1") is Applied.PAUSED
    assert records.get("r1").state is State.ACCEPTED  # type: ignore[union-attr]
    assert mark(records, "r2") is Applied.DONE  # another site is not held
    assert flow.pauses()["BRND"].reason == "still"
    flow.pause(EVERY_SITE, "all", 7.0)
    assert flow.resume("BRND", 8.0) is not None
    assert mark(records, "r1") is Applied.PAUSED  # every site is still paused
    flow.resume(EVERY_SITE, 9.0)
    assert flow.resume(EVERY_SITE, 9.5) is None  # not paused any more
    assert mark(records, "r1") is Applied.DONE
    types = [(e["type"], e["site"]) for e in reversed(flow.events())]
    assert types == [
        ("paused", "BRND"),
        ("paused", "BRND"),
        ("paused", "*"),
        ("resumed", "BRND"),
        ("resumed", "*"),  # the second resume changed nothing: no event
    ]


def test_the_cap_holds_the_next_mark_until_a_job_finishes(records: Records, flow: Flow):
    """With a cap of 2, the third mark is refused (FULL); a request entering submitting is in
    its site's in-flight set, a registered one stays, a finished one leaves it (a place
    frees, a sweeper is woken) and the next mark is made."""
    create(records, new("r1"), new("r2"), new("r3"))
    assert mark(records, "r1", cap=2) is Applied.DONE
    assert mark(records, "r2", cap=2) is Applied.DONE
    assert mark(records, "r3", cap=2) is Applied.FULL
    assert flow.in_flight("") == 2
    r1 = records.get("r1")
    assert r1 is not None
    assert records.apply([registered(r1, "1001", 11.0, POLICY).change]) == [True]
    assert flow.in_flight("") == 2  # registered: still at PallyCon
    done = records.get("r1")
    assert done is not None
    finished = Change(done, Fields(state=State.COMPLETED, updated_at=12.0), finish=True)
    records.redis.delete(records.keys.flow_kick)
    assert records.apply([finished]) == [True]
    assert flow.in_flight("") == 1
    assert flow.wait(0.1) is True  # the place freed woke a sweeper
    assert mark(records, "r3", cap=2) is Applied.DONE


def test_a_mark_made_again_does_not_count_twice(records: Records, flow: Flow):
    """A request already in flight marked again (a registration sent again after a lookup)
    is not refused by the cap it already holds a place of."""
    create(records, new("r1"))
    assert mark(records, "r1", cap=1) is Applied.DONE
    assert mark(records, "r1", cap=1) is Applied.DONE
    assert flow.in_flight("") == 1


def _events_of(records: Records, request_id: str) -> list[dict[str, Any]]:
    entries: Any = records.redis.xrange(records.keys.results)
    found = [json.loads(fields["event"]) for _, fields in entries]
    return [e for e in found if e["request_id"] == request_id]


def test_a_cancelled_request_is_never_registered(records: Records, flow: Flow):
    """Cancelled while accepted: ends cancelled with an event saying it was not registered,
    off its lane; a worker's mark from the version it read before is refused."""
    create(records, new("r1", priority="bulk"))
    read_before = records.get("r1")
    assert read_before is not None
    done = cancel(records, "r1", 5.0, "wrong asset")
    assert done.outcome is CancelOutcome.CANCELLED
    assert records.get("r1").state is State.CANCELLED  # type: ignore[union-attr]
    assert records.redis.zscore(records.keys.submit_lane("", "bulk"), "r1") is None
    last = _events_of(records, "r1")[-1]
    assert (last["type"], last["registered"], last["reason"]) == ("cancelled", False, "wrong asset")
    (late,) = records.apply_each([submitting(read_before, 6.0, POLICY)])
    assert late is Applied.MOVED
    assert cancel(records, "r1", 7.0).outcome is CancelOutcome.FINISHED
    assert cancel(records, "nobody", 7.0).outcome is CancelOutcome.UNKNOWN


def test_a_registered_request_stops_being_tracked_and_frees_its_place(records: Records, flow: Flow):
    """Cancelled once registered: tracking stops, the event says its job may still run at
    PallyCon, and its place in flight is freed."""
    create(records, new("r1"))
    mark(records, "r1")
    r1 = records.get("r1")
    assert r1 is not None
    records.apply([registered(r1, "1001", 11.0, POLICY).change])
    done = cancel(records, "r1", 12.0)
    assert done.outcome is CancelOutcome.STOPPED_TRACKING
    assert "may still run at PallyCon" in done.message
    assert flow.in_flight("") == 0
    last = _events_of(records, "r1")[-1]
    assert (last["type"], last["registered"], last["job_id"]) == ("cancelled", True, "1001")
    assert records.redis.zscore(records.keys.poll_schedule, "r1") is None


def test_a_cancel_racing_workers_leaves_no_registration_behind(records: Records):
    """Many requests, each marked by a worker thread and cancelled by another at once: each
    ends either cancelled before any mark (never registered) or marked first and then
    cancelled as possibly registered; never both a successful mark and a 'never registered'
    cancel."""
    ids = [f"r{n}" for n in range(200)]
    create(records, *(new(i) for i in ids))
    before = records.get_many(ids)
    marked: dict[str, Applied] = {}
    cancelled: dict[str, CancelOutcome] = {}
    start = threading.Barrier(2)

    def marker() -> None:
        start.wait()
        for request_id in ids:
            (marked[request_id],) = records.apply_each(
                [submitting(before[request_id], 10.0, POLICY)]
            )

    def canceller() -> None:
        start.wait()
        for request_id in ids:
            cancelled[request_id] = cancel(records, request_id, 10.0).outcome

    threads = [threading.Thread(target=marker), threading.Thread(target=canceller)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for request_id in ids:
        if marked[request_id] is Applied.DONE:
            assert cancelled[request_id] is CancelOutcome.STOPPED_TRACKING, request_id
        else:
            assert marked[request_id] is Applied.MOVED
            assert cancelled[request_id] is CancelOutcome.CANCELLED, request_id
        assert records.get(request_id).state is State.CANCELLED  # type: ignore[union-attr]


def test_the_old_single_submit_schedule_is_sorted_into_lanes_once(records: Records, flow: Flow):
    """Entries a version before lanes left on the one submit schedule (every site's, every
    priority's) go to their own lanes with their scores; the default site's normal ones stay;
    an entry without a record is dropped; done once (a marker), then nothing to do."""
    create(records, new("mine"), new("theirs", site="BRND"), new("named", site="TUTO"))
    old = records.keys.submit_schedule
    brnd = records.keys.submit_lane("BRND", "normal")
    records.redis.zrem(brnd, "theirs")
    records.redis.zadd(old, {"theirs": 5.0, "gone": 6.0, "named": 7.0})
    assert flow.sort_old_schedule(default_site="TUTO") == 1
    assert records.redis.zscore(brnd, "theirs") == 5.0
    assert records.redis.zscore(old, "theirs") is None
    assert records.redis.zscore(old, "gone") is None
    assert records.redis.zscore(old, "mine") == 1.0  # the default site's normal lane
    assert records.redis.zscore(old, "named") == 7.0  # the default site named by its id
    assert brnd in records.redis.smembers(records.keys.submit_lanes)
    records.redis.zadd(old, {"theirs": 9.0})
    assert flow.sort_old_schedule(default_site="TUTO") == 0  # once
