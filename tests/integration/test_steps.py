"""The submit and poll steps in-process: a real Redis, the PallyCon API faked.

The middle tier between the pure step rules (tests/unit/test_step_rules.py) and the worker
processes (tests/integration/test_queue.py): each test runs ``submit_batch`` or ``poll`` as a
task would, against the session's Redis server, with the API answered by an
``httpx.MockTransport`` that opens each signed request, and a fake clock and seeded random
generator, so that every record field, event, schedule entry, counter and API call is exact.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import redis

from pallycon.errors import RequestNotSent
from pallycon.models import JobInfo
from pallycon.signing import decode_envelope, format_timestamp, open_envelope
from pallycon_config import Settings
from pallycon_store.admission import remote_job_name
from pallycon_store.events import State, iso
from pallycon_store.keys import INTAKE_GROUP
from pallycon_store.record import Record
from pallycon_store.records import Records
from pallycon_worker import poll_rules, submit_rules
from pallycon_worker.intake_stream import Delivery, Intake
from pallycon_worker.loops import LoopHealth
from pallycon_worker.poll import poll
from pallycon_worker.runtime import Runtime
from pallycon_worker.submit import submit_batch
from support.redis_server import RedisServer
from support.samples import REGION, SAMPLE_SITE, job_body
from support.world import producer_on

pytestmark = pytest.mark.integration

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
SEED = 7
LEASE = 60.0
GRACE = 10.0
INTERVAL = 10.0  # queued, preparing, uploading
BUSY = 30.0  # downloading, watermarking, DRM
GRID = 5.0
MARGIN = 600.0
MAX_DELIVERIES = 3
RECORD_TTL = 3600
PAGE = "/api/v2/pack/TUTO"


def settings_for(redis_url: str, **overrides: Any) -> Settings:
    """Every value the steps read, given explicitly (nothing from the environment)."""
    values: dict[str, Any] = {
        "site_id": SAMPLE_SITE.site_id,
        "access_key": SAMPLE_SITE.access_key,
        "site_key": SAMPLE_SITE.site_key,
        "region": REGION,
        "api_url": "http://api.test",
        "redis_url": redis_url,
        "key_prefix": f"steps{os.urandom(4).hex()}",
        "redis_fsync_wait_ms": 0,
        "record_ttl": RECORD_TTL,
        "api_rate": 10_000.0,
        "api_burst": 10_000,
        "lease_seconds": LEASE,
        "visibility_timeout": 300,  # task_time_limit 240
        "submit_concurrency": 4,
        "max_deliveries": MAX_DELIVERIES,
        "retry_base": 1.0,
        "retry_cap": 60.0,
        "submit_deadline": 3600.0,
        "reconcile_grace": GRACE,
        "read_timeout": 30.0,
        "poll_interval": INTERVAL,
        "poll_busy_interval": BUSY,
        "poll_grid": GRID,
        "poll_page_unit": 500,
        "poll_coalesce": True,
        "poll_window_margin": MARGIN,
        "job_timeout": 6 * 3600.0,
        "max_response_bytes": 8 * 1024 * 1024,
    }
    return Settings(_env_file=None, **(values | overrides))


class Clock:
    """The runtime's clock: it moves only when a test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def at(self, moment: float) -> float:
        self.now = moment
        return moment


# --- The fake API -----------------------------------------------------------------------------

Answer = httpx.Response | Exception


@dataclass(frozen=True)
class Post:
    """How the fake answers one job registration: ``answer`` (``None``: success with the new
    job's id), after creating the job or not."""

    answer: Answer | None = None
    creates: bool = True


@dataclass
class FakeJob:
    job_id: str
    job_name: str
    content_id: str
    status: str = "WM000"
    error_code: str = ""  # with WM999, as the emulator adds it


@dataclass
class FakeApi:
    """The job APIs, answered as the emulator shapes them; every call is recorded as
    (method, the API JSON it carried, decrypted)."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    posts: list[Post] = field(default_factory=list)  # the next registrations' answers
    failing_lookups: set[str] = field(default_factory=set)  # job ids whose lookup answers 500
    list_answers: list[Answer] = field(default_factory=list)  # the next job lists' answers
    padding: int = 0  # bytes added to each job list entry
    on_post: Callable[[], None] | None = None  # called as each registration arrives
    _next_id: int = 1001
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == PAGE
        value = parse_qs(request.url.query.decode("ascii"))["pallycon-apidata"][0]
        body = json.loads(open_envelope(decode_envelope(value), SAMPLE_SITE))
        with self._lock:
            self.calls.append((request.method, body))
            if request.method == "POST":
                return self._register(body)
            return self._list(body)

    def _register(self, body: dict[str, Any]) -> httpx.Response:
        if self.on_post is not None:
            self.on_post()
        post = self.posts.pop(0) if self.posts else Post()
        job_id = ""
        if post.creates:
            job_id = str(self._next_id)
            self._next_id += 1
            self.jobs[job_id] = FakeJob(job_id, body["job_name"], body["content_id"])
        return _answer(post.answer) if post.answer is not None else _ok(job_id=int(job_id))

    def _list(self, body: dict[str, Any]) -> httpx.Response:
        if self.list_answers:
            return _answer(self.list_answers.pop(0))
        kind, keyword = body.get("search_keyword_type"), body.get("search_keyword")
        if kind == "jobId" and keyword in self.failing_lookups:
            return httpx.Response(500, text="lookup failed")
        newest_first = sorted(self.jobs.values(), key=lambda job: int(job.job_id), reverse=True)
        found = [
            job
            for job in newest_first
            if kind is None or keyword == (job.job_id if kind == "jobId" else job.job_name)
        ]
        unit, index = body.get("page_unit", 25), body.get("page_index", 1)
        chosen = found[(index - 1) * unit : index * unit]
        entries = [self._entry(job) for job in chosen]
        return _ok(total_count=str(len(found)), time_zone="00:00", data=entries)

    def _entry(self, job: FakeJob) -> dict[str, Any]:
        entry = {
            "job_id": job.job_id,
            "job_name": job.job_name,
            "content_id": job.content_id,
            "status": job.status,
            "reg_date": "2027-01-15 08:00:00",
            "note": "x" * self.padding,
        }
        if job.error_code:
            entry |= {"error_code": job.error_code, "error_message": "input missing"}
        return entry


def _ok(**fields: Any) -> httpx.Response:
    return httpx.Response(200, json={"error_code": "0000", "error_message": "Success", **fields})


def _answer(answer: Answer) -> httpx.Response:
    if isinstance(answer, Exception):
        raise answer
    return answer


# --- One test's world: a runtime on the real Redis, the fake API, the clock -------------------


@dataclass
class World:
    rt: Runtime
    api: FakeApi
    clock: Clock
    isolated: list[str] = field(default_factory=list)

    @property
    def redis(self) -> redis.Redis:
        return self.rt.shared.redis

    @property
    def run(self) -> str:
        """The identity of the Redis server (what a mark records)."""
        return self.rt.shared.durability.identity()

    def accept(
        self, request_id: str, content_id: str = "episode-1", site_id: str | None = None
    ) -> Record:
        """A new request, accepted at the clock's time by the Python API's path (on its
        lane: no task is sent): its record (version 1)."""
        producer = producer_on(self.rt)
        producer.submit(job_body(content_id=content_id), request_id, site_id=site_id)
        return self.record(request_id)

    def submitted(self, *request_ids: str) -> dict[str, str]:
        """Requests accepted and registered now, in one batch: their job ids (calls forgotten)."""
        for request_id in request_ids:
            self.accept(request_id, content_id=f"ep-{request_id}")
        self.submit(*request_ids)
        self.api.calls.clear()
        jobs = {request_id: self.record(request_id).job_id for request_id in request_ids}
        assert all(jobs.values())
        return jobs

    def submit(self, *request_ids: str) -> None:
        submit_batch(self.rt, list(request_ids), isolate=self.isolated.append)

    def poll(self, *request_ids: str) -> None:
        poll(self.rt, list(request_ids), isolate=self.isolated.append)

    def record(self, request_id: str) -> Record:
        """The request's record, its ``events`` checked against the stream (and then left out,
        so that tests compare the rest exactly)."""
        found = self.rt.shared.records.get(request_id)
        assert found is not None
        entries: Any = self.redis.xrange(self.rt.shared.keys.results)
        ids = [
            entry for entry, fields in entries if f'"request_id": "{request_id}"' in fields["event"]
        ]
        assert found.events.split() == ids
        return dataclasses.replace(found, events="")

    def events(self, request_id: str | None = None) -> list[dict[str, Any]]:
        entries: Any = self.redis.xrange(self.rt.shared.keys.results)
        events = [json.loads(fields["event"]) for _, fields in entries]
        return [e for e in events if request_id in (None, e["request_id"])]

    def submit_at(self, request_id: str) -> float | None:
        return self.redis.zscore(self.rt.shared.keys.submit_schedule, request_id)

    def poll_at(self, request_id: str) -> float | None:
        return self.redis.zscore(self.rt.shared.keys.poll_schedule, request_id)

    def ttl(self, request_id: str) -> int:
        return int(self.redis.ttl(self.rt.shared.keys.request(request_id)))

    def job_index(self, job_id: str) -> str | None:
        return self.rt.shared.records.request_for_job(job_id)

    def counters(self) -> dict[str, int]:
        return self.rt.shared.counters.read()

    def delivered(self, request_id: str, times: int) -> None:
        """Deliveries of the request that never finished (their workers died)."""
        for _ in range(times):
            self.rt.shared.records.count_deliveries([request_id])


@pytest.fixture
def make_world(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., World]]:
    """Worlds with these settings overridden; each torn down (and its keys deleted) after."""
    for name in list(os.environ):
        if name.startswith("PALLYCON_"):
            monkeypatch.delenv(name)
    made: list[World] = []

    def make(**overrides: Any) -> World:
        api = FakeApi()
        rt = Runtime.build(
            settings_for(redis_server.url, **overrides), transport=httpx.MockTransport(api.handle)
        )
        clock = Clock(NOW)
        rt.clock, rt.rng = clock, random.Random(SEED)
        rt.announce()  # as a worker does at start-up: the sites requests are checked against
        made.append(World(rt, api, clock))
        return made[-1]

    yield make
    for world in made:
        for site in world.rt.sites.values():
            site.api.close()
        if world.rt._senders is not None:
            world.rt._senders.shutdown()
        stale = list(world.redis.scan_iter(f"{world.rt.settings.key_prefix}:*"))
        if stale:
            world.redis.delete(*stale)
        world.redis.close()


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()


def accepted_event(request_id: str, content_id: str = "episode-1") -> dict[str, Any]:
    return {
        "event_id": f"{request_id}:1",
        "schema": 2,
        "type": "accepted",
        "request_id": request_id,
        "ts": iso(NOW),
        "content_id": content_id,
        "job_name": remote_job_name("episode-1", request_id),
    }


def registration(request_id: str) -> tuple[str, dict[str, Any]]:
    """The one API call that registers a request's job (the default body)."""
    return ("POST", job_body(job_name=remote_job_name("episode-1", request_id)))


def lookup_by_name(request_id: str) -> tuple[str, dict[str, Any]]:
    """The job list call that reconciles a request: its job searched by its unique name."""
    name = remote_job_name("episode-1", request_id)
    query = {"search_keyword": name, "search_keyword_type": "jobName", "page_index": 1}
    return ("GET", {"region": REGION, **query})


def lookup_by_id(job_id: str) -> tuple[str, dict[str, Any]]:
    return ("GET", {"region": REGION, "search_keyword": job_id, "search_keyword_type": "jobId"})


def page_of(unit: int, index: int, oldest: float = NOW) -> tuple[str, dict[str, Any]]:
    since = format_timestamp(datetime.fromtimestamp(oldest - MARGIN, UTC))
    return ("GET", {"region": REGION, "from": since, "page_unit": unit, "page_index": index})


def first_jitter(ceiling: float, draws: int = 1) -> float:
    """The backoff of a runtime seeded with SEED, at its ``draws``-th random draw."""
    rng = random.Random(SEED)
    value = 0.0
    for _ in range(draws):
        value = rng.random()
    return ceiling / 2 + ceiling / 2 * value


# --- Submit -----------------------------------------------------------------------------------


def test_an_accepted_request_is_registered_once_and_tracked_by_its_job_id(world: World):
    """accepted (:1) -> one POST -> submitted with the job id; the submitting mark (:2) wrote
    no event, the submitted event is :3; off the submit schedule, onto the poll schedule."""
    before = world.accept("r1")
    assert world.submit_at("r1") == NOW  # due at once: a sweeper takes it in its turn
    t = world.clock.at(NOW + 2)

    world.submit("r1")

    assert world.api.calls == [registration("r1")]
    assert world.record("r1") == dataclasses.replace(
        before,
        state=State.SUBMITTED,
        version=3,
        attempts=1,
        submitting_at=t,
        mark_run=world.run,
        sent_at=t,
        updated_at=t,
        job_id="1001",
        submitted_at=t,
    )
    assert world.events("r1") == [
        accepted_event("r1"),
        {
            "event_id": "r1:3",
            "schema": 2,
            "type": "submitted",
            "request_id": "r1",
            "ts": iso(t),
            "job_id": "1001",
            "job_name": remote_job_name("episode-1", "r1"),
            "attempts": 1,
        },
    ]
    assert world.poll_at("r1") == t + INTERVAL
    assert world.submit_at("r1") is None
    assert world.job_index("1001") == "r1"
    assert world.ttl("r1") == -1  # in flight: kept
    assert world.counters() == {"api POST pack": 1}
    assert world.isolated == []


def test_the_default_site_named_by_its_id_runs_as_a_request_naming_none(world: World):
    """Accepted by the Python API's path with site_id TUTO (the default site's id): stored
    without a site, the same body hash, registered and tracked under the bare job id, the
    default site's bucket, the same events as a request naming none."""
    plain = world.accept("r1")
    named = world.accept("r2", site_id=SAMPLE_SITE.site_id)
    assert named.site_id == plain.site_id == ""
    assert named.body_hash == plain.body_hash
    assert world.submit_at("r1") == world.submit_at("r2") == NOW  # both on the default's lane
    world.submit("r1", "r2")
    for request_id in ("r1", "r2"):
        job_id = world.record(request_id).job_id
        assert job_id.isdigit()  # the bare job id: the default site's job field
        assert world.job_index(job_id) == request_id
    keys = world.rt.shared.keys
    assert world.redis.exists(keys.rate_limit_of(""))
    assert not world.redis.exists(keys.rate_limit_of(SAMPLE_SITE.site_id))
    assert [e["type"] for e in world.events("r2")] == [e["type"] for e in world.events("r1")]
    assert all("site_id" not in e for e in world.events("r2"))


def test_a_mark_redis_does_not_confirm_is_taken_back_and_nothing_is_sent(world: World):
    """WAIT for a replica this Redis does not have: no POST, the request is accepted again
    and due after the retry base (not after the hard time limit a standing mark costs)."""
    before = world.accept("r1")
    durability = world.rt.shared.durability
    durability.replicas, durability.replica_wait_ms = 1, 50
    t = world.clock.at(NOW + 2)

    with pytest.raises(redis.TimeoutError, match="0 of 1 Redis replicas"):
        world.submit("r1")

    assert world.api.calls == []
    assert world.record("r1") == dataclasses.replace(before, version=3, updated_at=t)
    assert world.submit_at("r1") == t + 1.0  # retry_base
    assert world.events("r1") == [accepted_event("r1")]

    durability.replicas = 0  # the replica is back
    world.clock.at(t + 1.0)
    world.submit("r1")
    assert world.api.calls == [registration("r1")]
    assert world.record("r1").state is State.SUBMITTED


@pytest.mark.parametrize(
    ("answer", "code", "error", "delay"),
    [
        (
            httpx.ConnectError("connection refused"),
            "RequestNotSent",
            "API at http://api.test: ConnectError: connection refused",
            first_jitter(1.0),  # backoff of attempt 1: 0.5 + up to 0.5, seeded
        ),
        (
            httpx.Response(429, headers={"Retry-After": "7"}, text="slow down"),
            "HTTP429",
            "HTTP 429: slow down",
            7.0,  # Retry-After beats the backoff
        ),
    ],
    ids=["connect-error", "429"],
)
def test_a_registration_refused_before_anything_was_made_is_resent_after_a_backoff(
    world: World, answer: Answer, code: str, error: str, delay: float
):
    before = world.accept("r1")
    world.api.posts.append(Post(answer, creates=False))
    t = world.clock.at(NOW + 2)

    world.submit("r1")

    assert world.api.calls == [registration("r1")]
    assert world.record("r1") == dataclasses.replace(
        before,
        state=State.ACCEPTED,
        version=3,
        attempts=1,
        submitting_at=t,
        mark_run=world.run,
        sent_at=t,
        attempt_ended_at=t,
        updated_at=t,
        last_error=error,
        last_code=code,
    )
    assert world.events("r1") == [accepted_event("r1")]
    assert world.submit_at("r1") == t + delay
    assert world.poll_at("r1") is None
    assert world.counters() == {"api POST pack": 1, "submit resend": 1}

    later = world.clock.at(t + delay)
    world.submit("r1")  # resent: safe, nothing was made

    assert world.api.calls == [registration("r1"), registration("r1")]
    after = world.record("r1")
    assert (after.state, after.version, after.attempts, after.job_id) == (
        State.SUBMITTED, 5, 2, "1001",
    )  # fmt: skip
    assert (after.last_code, after.last_error, after.submitted_at) == ("", "", later)
    assert [e["event_id"] for e in world.events("r1")] == ["r1:1", "r1:5"]
    assert world.events("r1")[-1]["attempts"] == 2


@pytest.mark.parametrize(
    ("answer", "code", "error"),
    [
        (httpx.Response(500, text="internal error"), "HTTP500", "HTTP 500: internal error"),
        (httpx.Response(503, text="unavailable"), "HTTP503", "HTTP 503: unavailable"),
        (httpx.ReadTimeout("timed out"), "OutcomeUnknown", "ReadTimeout: timed out"),
    ],
    ids=["500", "503", "read-timeout"],
)
def test_a_registration_whose_outcome_is_unknown_stays_submitting_until_reconciled(
    world: World, answer: Answer, code: str, error: str
):
    """5xx and timeouts after sending: the job may exist, so no resend; a lookup after the
    grace decides."""
    before = world.accept("r1")
    world.api.posts.append(Post(answer, creates=True))
    t = world.clock.at(NOW + 2)

    world.submit("r1")

    assert world.api.calls == [registration("r1")]
    assert world.record("r1") == dataclasses.replace(
        before,
        state=State.SUBMITTING,
        version=3,
        attempts=1,
        submitting_at=t,
        mark_run=world.run,
        sent_at=t,
        attempt_ended_at=t,
        updated_at=t,
        last_error=error,
        last_code=code,
    )
    assert world.events("r1") == [accepted_event("r1")]
    assert world.submit_at("r1") == t + GRACE
    assert world.counters() == {"api POST pack": 1, "submit reconcile": 1}


def _lost_answer(world: World, *, created: bool) -> Record:
    """r1 registered at NOW with a 500 answer (its job made or not): its record, submitting."""
    world.accept("r1")
    world.api.posts.append(Post(httpx.Response(500, text="internal error"), creates=created))
    world.submit("r1")
    world.api.calls.clear()
    lost = world.record("r1")
    assert (lost.state, lost.version, lost.attempt_ended_at) == (State.SUBMITTING, 3, NOW)
    return lost


def test_reconcile_finds_the_job_by_its_name_and_tracks_it_without_a_second_post(world: World):
    lost = _lost_answer(world, created=True)
    t = world.clock.at(NOW + GRACE)

    world.submit("r1")

    assert world.api.calls == [lookup_by_name("r1")]  # no POST
    assert world.record("r1") == dataclasses.replace(
        lost,
        state=State.SUBMITTED,
        version=4,
        job_id="1001",
        submitted_at=t,
        updated_at=t,
        last_error="",
        last_code="",
    )
    assert world.events("r1")[1:] == [
        {
            "event_id": "r1:4",
            "schema": 2,
            "type": "submitted",
            "request_id": "r1",
            "ts": iso(t),
            "job_id": "1001",
            "job_name": remote_job_name("episode-1", "r1"),
            "attempts": 1,
        }
    ]
    assert world.poll_at("r1") == t + INTERVAL
    assert world.submit_at("r1") is None
    assert world.job_index("1001") == "r1"
    assert world.counters() == {
        "api POST pack": 1,
        "api GET pack": 1,
        "submit reconcile": 1,
        "reconciliations": 1,
    }


def test_reconcile_before_the_settle_time_waits_for_it_with_deliveries_restored(world: World):
    """Absent from the list, but the grace has not passed: look again then. The delivery is
    not counted as a failure: the count goes back to what it was (1: an earlier one died)."""
    lost = _lost_answer(world, created=False)
    world.delivered("r1", 1)
    world.clock.at(NOW + GRACE - 3)

    world.submit("r1")

    assert world.api.calls == [lookup_by_name("r1")]
    assert world.record("r1") == dataclasses.replace(lost, version=4, deliveries=1)
    assert world.submit_at("r1") == NOW + GRACE  # the settle time
    assert len(world.events("r1")) == 1
    assert world.counters()["reconciliations"] == 1


def test_reconcile_after_the_settle_time_registers_again_exactly_once(world: World):
    lost = _lost_answer(world, created=False)
    t = world.clock.at(NOW + GRACE)

    world.submit("r1")

    assert world.api.calls == [lookup_by_name("r1"), registration("r1")]
    assert world.record("r1") == dataclasses.replace(
        lost,
        state=State.SUBMITTED,
        version=6,  # 4 accepted again, 5 submitting, 6 submitted
        attempts=2,
        submitting_at=t,
        mark_run=world.run,
        sent_at=t,
        updated_at=t,
        job_id="1001",
        submitted_at=t,
        last_error="",
        last_code="",
    )
    assert [(e["event_id"], e["type"]) for e in world.events("r1")] == [
        ("r1:1", "accepted"),
        ("r1:6", "submitted"),
    ]
    assert world.events("r1")[-1]["attempts"] == 2
    assert world.poll_at("r1") == t + INTERVAL
    assert world.counters() == {
        "api POST pack": 2,
        "api GET pack": 1,
        "submit reconcile": 1,
        "reconciliations": 1,
    }


def test_reconcile_after_a_crash_mid_post_waits_out_the_hard_time_limit(world: World):
    """The worker died between its mark and the POST's answer (no attempt end recorded): the
    POST may still be under way until Celery's hard limit kills it, so an absent job is
    registered again only after that limit and the grace."""
    record = world.accept("r1")
    mark = submit_rules.submitting(record, NOW, world.rt.policy)
    assert world.rt.shared.records.apply([mark]) == [True]  # ... and then the worker died
    assert world.submit_at("r1") == NOW + GRACE + 30.0  # + read_timeout
    world.clock.at(NOW + GRACE + 30.0)

    world.submit("r1")  # swept again: absent, too early to tell

    assert world.api.calls == [lookup_by_name("r1")]
    settled = NOW + 240 + GRACE  # task_time_limit: 80 % of the visibility timeout
    assert world.submit_at("r1") == settled
    marked = world.record("r1")
    assert (marked.state, marked.version, marked.deliveries) == (State.SUBMITTING, 3, 0)
    t = world.clock.at(settled)

    world.submit("r1")

    assert world.api.calls == [lookup_by_name("r1"), lookup_by_name("r1"), registration("r1")]
    after = world.record("r1")
    assert (after.state, after.attempts, after.job_id, after.submitted_at) == (
        State.SUBMITTED, 2, "1001", t,
    )  # fmt: skip


def test_a_mark_that_never_left_is_registered_again_at_its_lookup(world: World):
    """The worker died after its mark and before it said the POST leaves (no sent_at), and
    the record is read from the very Redis server it was marked on: nothing can have left, so
    the lookup registers it again at once, not after the hard time limit."""
    record = world.accept("r1")
    mark = submit_rules.submitting(record, NOW, world.rt.policy, run=world.run)
    assert world.rt.shared.records.apply([mark]) == [True]  # ... and then the worker died
    t = world.clock.at(NOW + GRACE + 30.0)  # its lookup is due

    world.submit("r1")

    assert world.api.calls == [lookup_by_name("r1"), registration("r1")]
    after = world.record("r1")
    assert (after.state, after.attempts, after.submitted_at) == (State.SUBMITTED, 2, t)


def test_a_mark_that_may_have_left_waits_only_for_the_clients_timeouts(world: World):
    """The worker died after it said the POST leaves (sent_at) and no job shows: the POST can
    land until the client's own timeouts have passed (connect + write + read), then the grace;
    not the hard time limit."""
    record = world.accept("r1")
    mark = submit_rules.submitting(record, NOW, world.rt.policy, run=world.run)
    assert world.rt.shared.records.apply([mark]) == [True]
    marked = world.record("r1")
    assert world.rt.shared.records.leaving([marked], NOW + 1) == [True]  # ... then it died
    world.clock.at(NOW + GRACE + 30.0)

    world.submit("r1")  # absent, too early to tell

    settled = NOW + 1 + world.rt.policy.post_bound + GRACE
    assert settled < NOW + 240  # the hard time limit
    assert world.api.calls == [lookup_by_name("r1")]
    assert world.submit_at("r1") == settled
    world.clock.at(settled)

    world.submit("r1")

    assert world.api.calls == [lookup_by_name("r1"), lookup_by_name("r1"), registration("r1")]
    assert world.record("r1").state is State.SUBMITTED


def test_a_late_sender_and_a_reconciler_cannot_both_go(world: World):
    """A live but slow sender and a reconciler that found its mark never left: whichever
    writes first wins, the other is refused (no second registration)."""
    records = world.rt.shared.records
    for request_id, sender_first in (("r1", True), ("r2", False)):
        record = world.accept(request_id)
        mark = submit_rules.submitting(record, NOW, world.rt.policy, run=world.run)
        assert records.apply([mark]) == [True]
        marked = world.record(request_id)  # what both the sender and the reconciler read
        again = submit_rules.after_lookup(
            marked, [], NOW + 1, world.rt.policy, final=False, run=world.run
        )
        assert again.register
        if sender_first:
            assert records.leaving([marked], NOW + 1) == [True]
            assert records.apply([again.outcome.change]) == [False]  # refused: it may leave
        else:
            assert records.apply([again.outcome.change]) == [True]
            assert records.leaving([marked], NOW + 1) == [False]  # refused: do not send


def test_a_failed_reconcile_lookup_keeps_the_request_submitting_and_retries(world: World):
    """The job list cannot be read: whether the job exists stays unknown, so no POST."""
    lost = _lost_answer(world, created=False)
    world.api.list_answers.append(httpx.Response(503, text="busy"))
    t = world.clock.at(NOW + GRACE)

    world.submit("r1")

    assert world.api.calls == [lookup_by_name("r1")]
    assert world.record("r1") == dataclasses.replace(
        lost,
        version=4,
        lookup_failures=1,
        last_error="HTTP 503: busy",
        last_code="HTTP503",
        updated_at=t,
    )
    assert world.submit_at("r1") == t + first_jitter(1.0)  # the rng's first draw
    counters = world.counters()
    assert (counters["reconciliations"], counters["reconcile lookup retry"]) == (1, 1)


def _unknown_code_answered(world: World) -> Record:
    """r1 registered at NOW + 1 and answered with an API code nobody knows, no job made."""
    before = world.accept("r1")
    unknown = httpx.Response(200, json={"error_code": "Z9999", "error_message": "no table"})
    world.api.posts.append(Post(unknown, creates=False))
    t1 = world.clock.at(NOW + 1)

    world.submit("r1")

    answered = world.record("r1")
    assert answered == dataclasses.replace(
        before,
        state=State.SUBMITTING,  # the job may exist: reconcile, never POST blind
        version=3,
        attempts=1,
        submitting_at=t1,
        mark_run=world.run,
        sent_at=t1,
        attempt_ended_at=t1,
        updated_at=t1,
        last_error="Z9999: no table",
        last_code="Z9999",
        unknown_code="Z9999",
        unknown_message="Z9999: no table",
    )
    assert world.submit_at("r1") == t1 + GRACE
    assert world.counters() == {"api POST pack": 1, "submit reconcile": 1}
    return answered


def test_an_unknown_api_code_then_no_job_fails_with_that_code_without_a_second_post(
    world: World,
):
    answered = _unknown_code_answered(world)
    t2 = world.clock.at(NOW + 1 + GRACE)

    world.submit("r1")

    assert world.api.calls == [registration("r1"), lookup_by_name("r1")]
    assert world.record("r1") == dataclasses.replace(
        answered,
        state=State.FAILED,
        version=4,
        updated_at=t2,
        finished_at=t2,
        deliveries=1,  # this delivery, counted; the end keeps it
        error_stage="submit",
        error_code="Z9999",
        error_message="Z9999: no table",
    )
    assert world.events("r1")[1:] == [
        {
            "event_id": "r1:4",
            "schema": 2,
            "type": "failed",
            "request_id": "r1",
            "ts": iso(t2),
            "stage": "submit",
            "code": "Z9999",
            "message": "Z9999: no table",
        }
    ]
    assert (world.submit_at("r1"), world.poll_at("r1")) == (None, None)
    assert 0 < world.ttl("r1") <= RECORD_TTL


def test_an_unknown_api_code_is_kept_through_failed_lookups(world: World):
    """A failed lookup in between overwrites last_code; the request still fails with Z9999."""
    _unknown_code_answered(world)
    world.api.list_answers.append(httpx.Response(503, text="busy"))
    t2 = world.clock.at(NOW + 1 + GRACE)
    world.submit("r1")
    assert world.record("r1").last_code == "HTTP503"
    t3 = world.clock.at(t2 + first_jitter(1.0))

    world.submit("r1")

    assert world.api.calls == [registration("r1"), lookup_by_name("r1"), lookup_by_name("r1")]
    failed = world.record("r1")
    assert (failed.state, failed.error_code, failed.error_message, failed.finished_at) == (
        State.FAILED, "Z9999", "Z9999: no table", t3,
    )  # fmt: skip
    assert [e["type"] for e in world.events("r1")] == ["accepted", "failed"]


def test_a_request_delivered_before_is_isolated_from_its_batch(world: World):
    """b's earlier delivery never finished: it is handed to isolate, not run with a."""
    world.accept("a")
    b = world.accept("b")
    world.delivered("b", 1)

    world.submit("a", "b")

    assert world.isolated == ["b"]
    assert world.api.calls == [registration("a")]
    assert world.record("a").state == State.SUBMITTED
    assert world.record("b") == dataclasses.replace(b, deliveries=1)  # untouched

    world.submit("b")  # alone now: run

    assert world.isolated == ["b"]
    assert world.api.calls == [registration("a"), registration("b")]
    assert world.record("b").state == State.SUBMITTED


def test_a_request_delivered_more_than_max_deliveries_is_dead_lettered(world: World):
    before = world.accept("r1")
    world.delivered("r1", MAX_DELIVERIES)
    t = world.clock.at(NOW + 5)

    world.submit("r1")

    assert world.api.calls == []
    message = f"delivered more than {MAX_DELIVERIES} times without finishing"
    assert world.record("r1") == dataclasses.replace(
        before,
        state=State.FAILED,
        version=2,
        deliveries=MAX_DELIVERIES + 1,
        updated_at=t,
        finished_at=t,
        error_stage="dead_letter",
        error_code="dead_letter",
        error_message=message,
    )
    assert world.events("r1")[1:] == [
        {
            "event_id": "r1:2",
            "schema": 2,
            "type": "failed",
            "request_id": "r1",
            "ts": iso(t),
            "stage": "dead_letter",
            "code": "dead_letter",
            "message": message,
        }
    ]
    assert world.submit_at("r1") is None
    assert 0 < world.ttl("r1") <= RECORD_TTL


def test_late_messages_for_requests_already_moved_on_do_nothing(world: World):
    """A submit task for a submitted request, a poll for an accepted or unknown one."""
    world.submitted("s")
    world.accept("a")
    before = world.rt.shared.records.get_many(["s", "a"])
    events = world.events()

    world.submit("s", "unknown")
    world.poll("a", "unknown")

    assert world.api.calls == []
    assert world.rt.shared.records.get_many(["s", "a"]) == before
    assert world.events() == events
    assert world.isolated == []


# --- Poll -------------------------------------------------------------------------------------


def test_one_page_polls_many_jobs_and_records_each_change(world: World):
    """Three jobs, one list call: one progresses (progress event, busy interval), one
    completes (completed event, finished), one is unchanged (no event, next grid point)."""
    jobs = world.submitted("a", "b", "c")
    t1 = world.clock.at(NOW + INTERVAL)
    world.poll("a", "b", "c")  # all three seen at WM000: progress events
    assert world.api.calls == [page_of(500, 1)]
    assert [e["status"] for e in world.events() if e["type"] == "progress"] == ["WM000"] * 3
    world.api.calls.clear()
    polled = {name: world.record(name) for name in ("a", "b", "c")}
    world.api.jobs[jobs["a"]].status = "WM021100"
    world.api.jobs[jobs["b"]].status = "WM030"
    t2 = world.clock.at(NOW + 21.5)  # off the grid

    world.poll("a", "b", "c")

    assert world.api.calls == [page_of(500, 1)]
    assert world.record("a") == dataclasses.replace(
        polled["a"], version=5, status="WM021100", status_meaning="File downloading", updated_at=t2
    )
    assert world.poll_at("a") == NOW + 55.0  # t2 + 30 s, up to the 5 s grid
    assert world.record("b") == dataclasses.replace(
        polled["b"],
        state=State.COMPLETED,
        version=5,
        status="WM030",
        status_meaning="Packaging complete",
        output_path="out",
        updated_at=t2,
        finished_at=t2,
        deliveries=1,  # this delivery, counted; the end keeps it
    )
    assert world.poll_at("b") is None
    assert world.job_index(jobs["b"]) is None
    assert 0 < world.ttl("b") <= RECORD_TTL
    assert world.record("c") == dataclasses.replace(polled["c"], version=5)  # updated_at: t1
    assert world.record("c").updated_at == t1
    assert world.poll_at("c") == NOW + 35.0  # t2 + 10 s, up to the grid
    assert [e for e in world.events() if e["ts"] == iso(t2)] == [
        {
            "event_id": "a:5",
            "schema": 2,
            "type": "progress",
            "request_id": "a",
            "ts": iso(t2),
            "job_id": jobs["a"],
            "status": "WM021100",
            "meaning": "File downloading",
            "stage": "downloading",
        },
        {
            "event_id": "b:5",
            "schema": 2,
            "type": "completed",
            "request_id": "b",
            "ts": iso(t2),
            "job_id": jobs["b"],
            "content_id": "ep-b",
            "output_path": "out",
            "output_prefix": "out/ep-b/",
            "status": "WM030",
        },
    ]
    assert world.counters() == {"api POST pack": 3, "api GET pack": 2, "poll pages": 2}


def test_two_jobs_are_looked_up_by_id_instead_of_read_from_pages(world: World):
    jobs = world.submitted("a", "b")
    world.clock.at(NOW + INTERVAL)

    world.poll("a", "b")

    assert world.api.calls == [lookup_by_id(job) for job in sorted(jobs.values())]
    assert [world.record(r).status for r in ("a", "b")] == ["WM000", "WM000"]
    assert world.counters() == {"api POST pack": 2, "api GET pack": 2, "poll lookups": 2}


def test_a_failed_job_fails_its_request_and_a_missing_one_is_polled_again(world: World):
    jobs = world.submitted("x", "y")
    world.api.jobs[jobs["x"]].status = "WM999"
    world.api.jobs[jobs["x"]].error_code = "WM900013"
    del world.api.jobs[jobs["y"]]
    y = world.record("y")
    t = world.clock.at(NOW + INTERVAL + 1)

    world.poll("x", "y")

    x = world.record("x")
    assert (x.state, x.status, x.error_stage, x.error_code, x.error_message) == (
        State.FAILED, "WM999", "packaging", "WM900013", "input missing",
    )  # fmt: skip
    assert world.events("x")[-1] == {
        "event_id": "x:4",
        "schema": 2,
        "type": "failed",
        "request_id": "x",
        "ts": iso(t),
        "stage": "packaging",
        "code": "WM900013",
        "message": "input missing",
        "job_id": jobs["x"],
        "status": "WM999",
    }
    assert world.poll_at("x") is None
    assert world.record("y") == dataclasses.replace(y, version=4, last_seen="missing")
    assert world.poll_at("y") == NOW + 25.0  # t + 10 s, up to the grid
    assert len(world.events("y")) == 2  # accepted, submitted: nothing new


def test_a_page_too_large_halves_the_page_unit_and_still_finds_every_job(
    make_world: Callable[..., World],
):
    """Pages of 8 are over 1 KiB, pages of 4 are not: two pages of 4 find all six."""
    world = make_world(max_response_bytes=1024, poll_page_unit=8)
    world.api.padding = 60  # about 190 bytes an entry: 4 are 0.85 KiB, 6 are 1.2 KiB
    ids = ["r0", "r1", "r2", "r3", "r4", "r5"]
    world.submitted(*ids)
    t = world.clock.at(NOW + INTERVAL)

    world.poll(*ids)

    assert world.api.calls == [page_of(8, 1), page_of(4, 1), page_of(4, 2)]
    assert {r: world.record(r).status for r in ids} == dict.fromkeys(ids, "WM000")
    assert {r: world.poll_at(r) for r in ids} == dict.fromkeys(ids, t + INTERVAL)
    assert world.rt.page_unit() == 4  # kept for the next polls
    counters = world.counters()
    assert (counters["poll pages too large"], counters["poll pages"]) == (1, 2)
    assert "poll lookups" not in counters


def test_a_failed_lookup_retries_only_its_own_job(world: World):
    jobs = world.submitted("x", "y")
    world.api.failing_lookups.add(jobs["x"])
    x = world.record("x")
    t1 = world.clock.at(NOW + INTERVAL)

    world.poll("x", "y")

    assert world.api.calls == [lookup_by_id(job) for job in sorted(jobs.values())]
    assert world.record("x") == dataclasses.replace(x, version=4, poll_failures=1)
    assert world.poll_at("x") == t1 + 1.0  # the backoff (<= 1 s), at least retry_base
    assert world.record("y").status == "WM000"
    assert world.poll_at("y") == NOW + 20.0
    assert [e["request_id"] for e in world.events() if e["type"] == "progress"] == ["y"]
    assert world.counters()["poll retries"] == 1

    t2 = world.clock.at(t1 + 1.0)
    world.poll("x")  # fails again: the second backoff, 1 s + up to 1 s, seeded

    assert world.record("x").poll_failures == 2
    assert world.poll_at("x") == t2 + first_jitter(2.0, draws=2)
    assert world.counters()["poll retries"] == 2


def test_a_failed_page_retries_every_job_of_the_round(world: World):
    world.submitted("a", "b", "c")
    world.api.list_answers.append(httpx.Response(503, text="busy"))
    t = world.clock.at(NOW + INTERVAL)

    world.poll("a", "b", "c")

    assert world.api.calls == [page_of(500, 1)]
    for request_id in ("a", "b", "c"):
        record = world.record(request_id)
        assert (record.version, record.poll_failures, record.deliveries) == (4, 1, 0)
        assert world.poll_at(request_id) == t + 1.0
    assert world.counters()["poll retries"] == 1


def test_a_poll_isolates_a_redelivered_request_and_dead_letters_one_delivered_too_often(
    world: World,
):
    jobs = world.submitted("a", "b")
    world.delivered("b", 1)
    world.clock.at(NOW + INTERVAL)

    world.poll("a", "b")

    assert world.isolated == ["b"]
    assert world.api.calls == [lookup_by_id(jobs["a"])]
    world.delivered("b", MAX_DELIVERIES - 1)  # its lone polls died too
    t = world.clock.at(NOW + 20)

    world.poll("b")

    assert world.api.calls == [lookup_by_id(jobs["a"])]  # b's job was not looked up
    record = world.record("b")
    message = f"polled more than {MAX_DELIVERIES} times without finishing"
    assert (record.state, record.error_stage, record.error_message) == (
        State.FAILED, "dead_letter", message,
    )  # fmt: skip
    assert world.events("b")[-1] == {
        "event_id": "b:4",
        "schema": 2,
        "type": "failed",
        "request_id": "b",
        "ts": iso(t),
        "stage": "dead_letter",
        "code": "dead_letter",
        "message": message,
        "job_id": jobs["b"],
    }
    assert world.poll_at("b") is None
    assert world.job_index(jobs["b"]) is None


# --- Replays ----------------------------------------------------------------------------------


def test_a_replayed_commit_changes_nothing_the_second_time(world: World):
    """The same outcome committed twice (a retried task that read the same record): applied
    once, one event, one schedule change."""
    jobs = world.submitted("r1")
    record = world.record("r1")
    job = JobInfo.model_validate({"job_id": jobs["r1"], "status": "WM030"})
    completed = poll_rules.after_poll(record, job, world.clock.at(NOW + 30), world.rt.policy)

    assert world.rt.commit([completed]) == [True]
    done = world.record("r1")
    events = world.events()
    assert world.rt.commit([completed]) == [False]

    assert world.record("r1") == done
    assert world.events() == events
    assert [e["type"] for e in events] == ["accepted", "submitted", "completed"]


def test_a_replayed_commit_counts_nothing_the_second_time(world: World):
    record = world.accept("r1")
    error = RequestNotSent("ConnectError: refused")
    resend = submit_rules.after_post_error(
        record, error, world.clock(), world.rt.policy, world.rt.rng
    )

    assert world.rt.commit([resend, resend]) == [True, False]
    assert world.rt.commit([resend]) == [False]

    assert world.record("r1").version == 2
    assert world.counters() == {"submit resend": 1}


def test_a_slow_batch_keeps_sweepers_off_the_requests_it_has_not_sent_yet(make_world):
    """One registration at a time, each taking 40 % of the time after which a marked request
    is looked up: the batch takes longer than that, yet no request is due on the submit
    schedule (where a sweeper would claim it and look it up) before its own registration."""
    world = make_world(submit_concurrency=1)
    ids = ["r1", "r2", "r3", "r4", "r5"]
    for request_id in ids:
        world.accept(request_id, content_id=f"ep-{request_id}")
    safety = world.rt.policy.reconcile_grace + world.rt.policy.read_timeout
    due_while_sending: list[list[str]] = []

    def slow() -> None:
        world.clock.at(world.clock() + 0.4 * safety)
        waiting = [r for r in ids if world.rt.shared.records.get(r).state == State.SUBMITTING]
        due_while_sending.append([r for r in waiting if world.submit_at(r) <= world.clock()])

    world.api.on_post = slow
    world.submit(*ids)

    assert due_while_sending == [[]] * len(ids)
    assert [world.record(r).state for r in ids] == [State.SUBMITTED] * len(ids)
    assert [body["content_id"] for _, body in world.api.calls] == [f"ep-{r}" for r in ids]


class Interrupted(BaseException):
    """The task cut short under way, as by the soft time limit."""


def test_a_batch_cut_short_takes_back_the_marks_of_what_it_did_not_send(make_world):
    """The batch is interrupted during its second registration: the first is recorded, the
    second is left to the lookup (it may have been sent), and the ones after it, never sent,
    are accepted again and due soon instead of waiting out the hard time limit."""
    world = make_world(submit_concurrency=1)
    ids = ["r1", "r2", "r3", "r4"]
    for request_id in ids:
        world.accept(request_id, content_id=f"ep-{request_id}")
    arrived = []

    def second_breaks() -> None:
        arrived.append(1)
        if len(arrived) == 2:
            raise Interrupted

    world.api.on_post = second_breaks
    with pytest.raises(Interrupted):
        world.submit(*ids)

    states = [world.record(r).state for r in ids]
    assert states == [State.SUBMITTED, State.SUBMITTING, State.ACCEPTED, State.ACCEPTED]
    for request_id in ("r3", "r4"):
        assert world.record(request_id).attempts == 0
        assert world.submit_at(request_id) == NOW + world.rt.policy.retry.base


def test_a_permanent_api_error_fails_the_request_after_one_post_with_its_code(world: World):
    """A1000 (a parameter the API refuses, here an unknown storage) ends the request at the
    first answer: failed at the submit stage with the API's code and message, no lookup, no
    second POST, nothing left scheduled."""
    world.accept("r1")
    message = "Invalid parameter: storage.input.storage_id"
    refused = httpx.Response(200, json={"error_code": "A1000", "error_message": message})
    world.api.posts.append(Post(refused, creates=False))
    world.clock.at(NOW + 1)

    world.submit("r1")

    assert world.api.calls == [registration("r1")]
    failed = world.record("r1")
    assert (failed.state, failed.error_stage, failed.error_code) == (
        State.FAILED, "submit", "A1000",
    )  # fmt: skip
    assert "storage.input.storage_id" in failed.error_message
    event = world.events("r1")[-1]
    assert (event["type"], event["stage"], event["code"]) == ("failed", "submit", "A1000")
    assert (world.submit_at("r1"), world.poll_at("r1")) == (None, None)
    assert world.counters()["api POST pack"] == 1


def test_a_job_unfinished_past_the_job_timeout_fails_with_its_last_status(make_world):
    """A job still running (WM0xx) when a poll finds it older than job_timeout ends the request
    as failed (stage and code ``timeout``) with the last status seen, in the event and the
    message; nothing is left scheduled."""
    world = make_world(job_timeout=60.0)
    jobs = world.submitted("r1")
    world.clock.at(NOW + INTERVAL)
    world.poll("r1")  # seen at WM000
    world.api.jobs[jobs["r1"]].status = "WM021100"
    t = world.clock.at(NOW + 61)

    world.poll("r1")

    failed = world.record("r1")
    assert (failed.state, failed.error_stage, failed.error_code) == (
        State.FAILED, "timeout", "timeout",
    )  # fmt: skip
    assert failed.error_message == "not finished within 60 s (last status: WM000)"
    assert world.events("r1")[-1] == {
        "event_id": "r1:5",
        "schema": 2,
        "type": "failed",
        "request_id": "r1",
        "ts": iso(t),
        "stage": "timeout",
        "code": "timeout",
        "message": "not finished within 60 s (last status: WM000)",
        "job_id": jobs["r1"],
        "status": "WM000",
    }
    assert (world.submit_at("r1"), world.poll_at("r1")) == (None, None)


def test_a_request_never_accepted_by_the_api_fails_at_the_submit_deadline(make_world):
    """Every call answered 503 (the registration and each lookup after it): the request stays
    submitting, looked up again, until submit_deadline has passed; then it fails at the submit
    stage with the last error's code, the message naming the deadline. One POST only: the job
    might exist, so nothing is sent twice."""
    world = make_world(submit_deadline=3.0)
    world.accept("r1")
    unavailable = httpx.Response(503, text="unavailable")
    world.api.posts.append(Post(unavailable, creates=False))
    world.api.list_answers.extend([unavailable] * 10)
    world.clock.at(NOW + 1)
    world.submit("r1")
    assert world.record("r1").state == State.SUBMITTING

    while (due := world.submit_at("r1")) is not None:
        assert len(world.api.calls) < 10, world.api.calls
        world.clock.at(due)
        world.submit("r1")

    failed = world.record("r1")
    assert (failed.state, failed.error_stage, failed.error_code) == (
        State.FAILED, "submit", "HTTP503",
    )  # fmt: skip
    assert "not submitted within 3 s" in failed.error_message
    assert [method for method, _ in world.api.calls].count("POST") == 1
    assert world.events("r1")[-1]["type"] == "failed"
    assert world.poll_at("r1") is None


# --- The stream intake ------------------------------------------------------------------------


def intake_of(world: World) -> Intake:
    """The world's intake consumer, as a worker runs it (it records requests on their lanes;
    no sweeper runs: the tests run the steps themselves)."""
    shared = world.rt.shared
    health = LoopHealth(shared.redis, shared.keys, "steps")
    intake = Intake(world.rt, "steps", health)
    intake.ensure_group()
    return intake


def take_in(intake: Intake) -> None:
    """One read of the new intake entries, each handled (none may fail)."""
    assert intake.handle_all(intake.read(">"), Delivery.NEW) == 0


def test_an_invalid_stream_message_ends_as_a_failed_event_naming_the_field(world: World):
    """The stream intake never drops a message: a bad one becomes a failed result, and every
    entry is acknowledged once its request is written (the last, valid one too)."""
    intake = intake_of(world)
    stream = world.rt.shared.keys.intake
    world.redis.xadd(
        stream, {"request_id": "bad-1", "request": json.dumps(job_body(streaming_format=[]))}
    )
    world.redis.xadd(stream, {"request_id": "bad-2", "request": "{not json"})
    world.redis.xadd(stream, {"request": json.dumps(job_body())})  # valid: accepted

    take_in(intake)

    assert world.record("bad-1").error_stage == "validation"
    failed = world.events("bad-1")[-1]
    assert failed["type"] == "failed"
    assert failed["stage"] == "validation"
    assert failed["fields"][0]["field"] == "streaming_format"
    assert world.record("bad-2").state == State.FAILED
    assert "not JSON" in world.events("bad-2")[-1]["message"]
    accepted = [e for e in world.events() if e["type"] == "accepted"]
    assert len(accepted) == 1
    assert world.redis.xpending(stream, INTAKE_GROUP)["pending"] == 0
    assert world.redis.xlen(stream) == 0


def test_a_valid_stream_message_is_packaged_with_its_metadata_in_every_event(world: World):
    """A JSON request added to the intake stream by any language is recorded with its
    metadata, registered, polled and completed, the metadata in each of its events; a
    metadata that is not an object fails its entry, named."""
    intake = intake_of(world)
    stream = world.rt.shared.keys.intake
    body = json.dumps(job_body())
    world.redis.xadd(
        stream, {"request_id": "from-stream", "request": body, "metadata": '{"cms": 7}'}
    )
    world.redis.xadd(stream, {"request_id": "bad-meta", "request": body, "metadata": "[7]"})
    take_in(intake)
    world.submit("from-stream")  # as the submit task the intake sent does
    job_id = world.record("from-stream").job_id
    world.api.jobs[job_id].status = "WM030"
    world.clock.at(NOW + INTERVAL)

    world.poll("from-stream")

    record = world.record("from-stream")
    assert record.state == State.COMPLETED
    assert json.loads(record.metadata) == {"cms": 7}
    events = world.events("from-stream")
    assert [e["type"] for e in events] == ["accepted", "submitted", "completed"]
    assert [e["metadata"] for e in events] == [{"cms": 7}] * len(events)
    assert world.record("bad-meta").error_message == "metadata: must be a JSON object, not a list"


class Flaky(redis.Redis):
    """A Redis client whose first ``failures`` script calls raise ConnectionError, as when the
    server fails over or restarts in the middle of a write; every other call goes through."""

    def __init__(self, client: redis.Redis, failures: int) -> None:
        super().__init__(connection_pool=client.connection_pool)
        self.failures = failures

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if args[0] == "EVALSHA" and self.failures > 0:
            self.failures -= 1
            raise redis.ConnectionError("Connection closed by server.")
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


def test_redis_errors_are_not_redeliveries_but_failed_handlings_are(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
):
    """An intake entry whose handling meets more Redis errors than PALLYCON_MAX_DELIVERIES is
    read again after each and handled once Redis answers, not dead-lettered; an entry whose
    handling fails every time is dead-lettered after max_deliveries + 1 attempts."""
    world = make_world(max_deliveries=1)
    shared = world.rt.shared
    keys = shared.keys
    intake = intake_of(world)
    blips = 1 + 1  # max_deliveries + 1
    flaky = Flaky(shared.redis, blips)
    intake.records = Records(
        flaky,
        keys,
        result_maxlen=shared.records.result_maxlen,
        record_ttl=shared.records.record_ttl,
        default_site=shared.records.default_site,
    )
    world.redis.set(keys.request("poison"), "not a hash")  # its handling fails every time
    body = json.dumps(job_body())
    world.redis.xadd(keys.intake, {"request_id": "blipped", "request": body})
    poison = world.redis.xadd(keys.intake, {"request_id": "poison", "request": body})
    stop = threading.Event()
    loop = threading.Thread(target=intake.run, args=(stop,), daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 30
        while world.redis.xlen(keys.intake) > 0:
            assert time.monotonic() < deadline, world.redis.xrange(keys.intake)
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(timeout=10)
    assert flaky.failures == 0
    assert world.record("blipped").state == State.ACCEPTED
    assert [e["type"] for e in world.events("blipped")] == ["accepted"]
    (dead,) = world.events("poison")
    assert (dead["type"], dead["code"], dead["entry_id"]) == ("rejected", "dead_letter", poison)
    assert dead["message"].startswith("delivered more than 1 times")
    assert world.redis.get(keys.request("poison")) == "not a hash"
    assert world.redis.hlen(keys.intake_failures) == 0
    attempts = [r for r in caplog.records if "could not be handled" in r.getMessage()]
    assert len(attempts) == 1 + 1  # the poison's: max_deliveries + 1


def test_entries_left_by_the_consumers_previous_life_are_counted_once(world: World):
    """An intake entry pending with this consumer when it starts (its previous life died with
    it) counts one delivery, and reading it again counts nothing."""
    intake = intake_of(world)
    keys = world.rt.shared.keys
    entry_id = world.redis.xadd(keys.intake, {"request": json.dumps(job_body())})
    assert len(intake.read(">")) == 1  # delivered, then the process dies
    intake.inherit()
    intake.inherit()  # again: a Redis error made the loop start over
    assert world.redis.hget(keys.intake_failures, entry_id) == "1"
    assert intake.handle_all(intake.read("0"), Delivery.READ_AGAIN) == 0
    assert world.redis.xlen(keys.intake) == 0
    assert world.redis.hlen(keys.intake_failures) == 0
