"""Two PallyCon sites through one fleet: one Redis, one set of workers, one callback receiver.

The emulator serves both sites, each with its own job ids (both start at 1001), storages and
callback URL. Nothing may cross over: each request is registered and polled at its own site,
its events say which, each site has its own token bucket and callback path and token.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from pallycon.errors import InvalidRequest
from pallycon_producers.api import Producer
from support.env import clean_env
from support.processes import start_server
from support.queue import events_of, eventually, make_settings, register_storage, wait_all
from support.redis_server import RedisServer
from support.samples import OTHER_SITE, REGION, SAMPLE_SITE, body_for
from support.stack import write_sites_file

pytestmark = pytest.mark.integration

OTHER = OTHER_SITE
OTHER_TOKEN = "brand-callback-token-0123456789"
DEFAULT_TOKEN = "test-callback-token-0123456789"


def sites_file(tmp_path: Path, api_rate: float = 200, api_burst: int = 200) -> Path:
    """A sites file naming the second site, with a callback token (the default site comes
    from the settings)."""
    path = write_sites_file(tmp_path / "sites.toml", OTHER)
    with path.open("a") as file:
        file.write(
            f'api_rate = {api_rate}\napi_burst = {api_burst}\ncallback_token = "{OTHER_TOKEN}"\n'
        )
    return path


def emulator_sites(tmp_path: Path) -> str:
    """The emulator's file of its other site (keys in a file: a command line is public)."""
    path = tmp_path / "emulator-sites"
    keys = (OTHER.access_key.get_secret_value(), OTHER.site_key.get_secret_value())
    path.write_text(":".join((OTHER.site_id, *keys)) + "\n")
    return str(path)


@pytest.fixture
def two_sites(tmp_path, redis_server: RedisServer, emulator_factory, worker_factory):
    """An emulator serving both sites, the settings of a fleet serving both, a worker."""
    emulator = emulator_factory("--job-seconds", "1", "--sites-file", emulator_sites(tmp_path))
    settings = make_settings(
        redis_server.url,
        emulator.url,
        sites_path=sites_file(tmp_path),
        callback_token=DEFAULT_TOKEN,
    )
    worker = worker_factory(settings)
    return emulator, settings, worker


def test_two_sites_run_through_one_fleet_and_nothing_crosses_over(two_sites):
    emulator, settings, _ = two_sites
    producer = Producer.from_settings(settings)
    eventually(producer.sites, lambda sites: sites == ["BRND", "TUTO"])
    store_a = register_storage(emulator.url, SAMPLE_SITE)
    store_b = register_storage(emulator.url, OTHER)
    assert store_a == store_b  # storage ids are per site too: the same id, two storages
    ids_a = [producer.submit(body_for(store_a, f"a-{n}"), f"a-{n}") for n in range(4)]
    ids_b = [
        producer.submit(body_for(store_b, f"b-{n}"), f"b-{n}", site_id=OTHER.site_id)
        for n in range(4)
    ]
    records = wait_all(producer, ids_a + ids_b)
    assert {r.state.value for r in records.values()} == {"completed"}
    jobs_a = sorted(records[r].job_id for r in ids_a)
    jobs_b = sorted(records[r].job_id for r in ids_b)
    assert jobs_a == jobs_b == ["1001", "1002", "1003", "1004"]  # the same job ids, two sites
    for request_id in ids_b:
        record = records[request_id]
        assert record.site_id == OTHER.site_id
        assert record.content_id == f"b-{request_id[2:]}"
        assert {e.get("site_id") for e in events_of(producer, request_id)} == {"BRND"}
    for request_id in ids_a:
        assert records[request_id].site_id == ""
        assert all("site_id" not in e for e in events_of(producer, request_id))
    # each site's jobs are its own requests': job 1001 of each site holds its own content
    for site in (SAMPLE_SITE, OTHER):
        from pallycon.client import ClientOptions, PallyConClient
        from pallycon.models import JobListRequest

        with PallyConClient(site, ClientOptions(base_url=emulator.url)) as client:
            query = JobListRequest(
                region=REGION, search_keyword="1001", search_keyword_type="jobId"
            )
            (job,) = client.list_jobs(query).data
        prefix = "a-" if site is SAMPLE_SITE else "b-"
        assert (job.content_id or "").startswith(prefix)
    per_site = emulator.control("stats")["sites"]  # each site got its own calls, no more
    assert per_site["TUTO"]["POST pack"] == per_site["BRND"]["POST pack"] == 4
    # each site has its own token bucket in Redis
    keys = producer.keys
    assert producer.redis.exists(keys.rate_limit_of(""))
    assert producer.redis.exists(keys.rate_limit_of(OTHER.site_id))


def test_a_request_for_a_site_no_worker_serves_is_refused(two_sites):
    """By the producer (InvalidRequest naming site_id) and by the stream intake (a failed
    request naming site_id); a bad site id is refused for its shape."""
    _, settings, _ = two_sites
    producer = Producer.from_settings(settings)
    eventually(producer.sites, lambda sites: sites == ["BRND", "TUTO"])
    with pytest.raises(InvalidRequest) as caught:
        producer.submit(body_for("ST000001", "x"), "nowhere-1", site_id="NOPE")
    (error,) = caught.value.errors
    assert error.field == "site_id"
    assert "unknown site 'NOPE' (sites served: BRND, TUTO)" in error.message
    with pytest.raises(InvalidRequest) as caught:
        producer.submit(body_for("ST000001", "x"), "nowhere-2", site_id="no/pe")
    assert [e.field for e in caught.value.errors] == ["site_id"]
    assert producer.get("nowhere-1") is None
    assert producer.get("nowhere-2") is None
    body = json.dumps(body_for("ST000001", "x"))
    producer.redis.xadd(
        producer.keys.intake, {"request_id": "nowhere-3", "request": body, "site_id": "NOPE"}
    )
    record = wait_all(producer, ["nowhere-3"])["nowhere-3"]
    assert (record.state.value, record.error_stage) == ("failed", "validation")
    (failed,) = [e for e in events_of(producer, "nowhere-3") if e["type"] == "failed"]
    assert failed["fields"][0]["field"] == "site_id"
    assert "unknown site 'NOPE'" in failed["fields"][0]["message"]


def test_a_fleet_with_a_sites_file_logs_no_secret_of_any_site(two_sites):
    emulator, settings, worker = two_sites
    producer = Producer.from_settings(settings)
    eventually(producer.sites, lambda sites: sites == ["BRND", "TUTO"])
    store_b = register_storage(emulator.url, OTHER)
    request_id = producer.submit(body_for(store_b, "secret-check"), site_id=OTHER.site_id)
    wait_all(producer, [request_id])
    log = worker.log.read_text()
    for secret in (OTHER.site_key, OTHER.access_key, SAMPLE_SITE.site_key, SAMPLE_SITE.access_key):
        assert secret.get_secret_value() not in log
    assert OTHER_TOKEN not in log
    announced = producer.redis.hgetall(producer.keys.sites)
    assert json.loads(announced["BRND"]) == {"region": REGION, "default": False, "max_in_flight": 0}
    assert json.loads(announced["TUTO"]) == {"region": REGION, "default": True, "max_in_flight": 0}
    assert all(OTHER_TOKEN not in value for value in announced.values())


def test_callbacks_reach_each_sites_requests_by_their_own_path_and_token(
    tmp_path, redis_server: RedisServer, emulator_factory, worker_factory
):
    """Job 1001 exists at both sites; each site's callback comes to its own path with its own
    token and pulls forward the poll of its own site's request. Polls are a minute apart, so
    only the callbacks can finish the requests in time; site A's requests finish before site
    B's are sent, so a callback of B's job 1001 taken for A's would find nothing to poll."""
    slow = {"poll_interval": 60.0, "poll_busy_interval": 60.0, "callback_token": DEFAULT_TOKEN}
    base = make_settings(
        redis_server.url, "http://127.0.0.1:9", sites_path=sites_file(tmp_path), **slow
    )
    # The receiver as deployed: the sites' callback tokens only, no key of any site mounted.
    tokens_only = tmp_path / "receiver-sites.toml"
    tokens_only.write_text(
        f'[{OTHER.site_id}]\naccess_key_file = "not-mounted/access_key"\n'
        f'site_key_file = "not-mounted/site_key"\nregion = "{REGION}"\n'
        f'callback_token = "{OTHER_TOKEN}"\n'
    )
    env = base.environment() | {"PALLYCON_SITES": str(tokens_only)}
    for name in ("PALLYCON_ACCESS_KEY", "PALLYCON_SITE_KEY"):
        env.pop(name)
    receiver = start_server("callbacks", "--port", "0", env=clean_env(env), cwd=tmp_path)
    try:
        emulator = emulator_factory(  # callback URLs in the environment: a command line is public
            "--job-seconds", "1", "--sites-file", emulator_sites(tmp_path),
            PALLYCON_EMULATOR_CALLBACK_URL=f"{receiver.url}/callback/{DEFAULT_TOKEN}",
            PALLYCON_EMULATOR_CALLBACK_URLS=(
                f"{OTHER.site_id}={receiver.url}/callback/{OTHER.site_id}/{OTHER_TOKEN}"
            ),
        )  # fmt: skip
        settings = base.model_copy(update={"api_url": emulator.url})
        worker_factory(settings)
        producer = Producer.from_settings(settings)
        eventually(producer.sites, lambda sites: sites == ["BRND", "TUTO"])
        store_a = register_storage(emulator.url, SAMPLE_SITE)
        store_b = register_storage(emulator.url, OTHER)
        ids_a = [producer.submit(body_for(store_a, f"cb-a-{n}")) for n in range(2)]
        records = wait_all(producer, ids_a, timeout=30)
        ids_b = [
            producer.submit(body_for(store_b, f"cb-b-{n}"), site_id=OTHER.site_id) for n in range(2)
        ]
        records |= wait_all(producer, ids_b, timeout=30)
        assert {r.state.value for r in records.values()} == {"completed"}
        assert sorted(records[r].job_id for r in ids_a) == ["1001", "1002"]
        assert sorted(records[r].job_id for r in ids_b) == ["1001", "1002"]
        counters = producer.redis.hgetall(producer.keys.counters)
        assert int(counters.get("callbacks used", 0)) >= 4, counters
        assert int(counters.get("callbacks unknown job", 0)) == 0, counters
        per_site = emulator.control("stats")["sites"]
        assert per_site["TUTO"]["callbacks 200"] == 2
        assert per_site["BRND"]["callbacks 200"] == 2
        # a site's token does not open another site's path, nor the default path
        for path in (f"/callback/{OTHER.site_id}/{DEFAULT_TOKEN}", f"/callback/{OTHER_TOKEN}",
                     f"/callback/NOPE/{OTHER_TOKEN}"):  # fmt: skip
            answer = httpx.post(receiver.url + path, json={"job_id": "1001"}, timeout=10)
            assert answer.status_code == 404, path
    finally:
        receiver.stop()


def test_adding_a_sites_file_to_a_running_fleet_loses_nothing(
    tmp_path, redis_server: RedisServer, emulator_factory, worker_factory
):
    """The documented upgrade's step 2 (this version on both sides: the default site's keys
    are those of earlier versions): requests in flight under a single-site fleet's keys
    (registered and being polled, or still queued) finish after its workers are replaced by
    workers with a sites file, which then also serve the new site."""
    emulator = emulator_factory("--job-seconds", "4", "--sites-file", emulator_sites(tmp_path))
    single = make_settings(redis_server.url, emulator.url, callback_token=DEFAULT_TOKEN)
    old = worker_factory(single)
    producer = Producer.from_settings(single)
    store_a = register_storage(emulator.url, SAMPLE_SITE)
    in_flight = [producer.submit(body_for(store_a, f"up-{n}")) for n in range(6)]
    eventually(  # registered (and maybe finished already: the machine may be slow)
        lambda: [r.state.value for r in producer.records.get_many(in_flight[:3]).values()],
        lambda states: set(states) <= {"submitted", "completed"},
    )
    old.stop()  # warm shutdown, as a rolling update does
    queued = [producer.submit(body_for(store_a, f"up-q-{n}")) for n in range(3)]
    upgraded = single.model_copy(update={"sites_path": sites_file(tmp_path)})
    worker_factory(upgraded)
    eventually(producer.sites, lambda sites: sites == ["BRND", "TUTO"])
    store_b = register_storage(emulator.url, OTHER)
    new_site = producer.submit(body_for(store_b, "up-b"), site_id=OTHER.site_id)
    records = wait_all(producer, in_flight + queued + [new_site])
    assert {r.state.value for r in records.values()} == {"completed"}
    assert len({records[r].job_id for r in in_flight + queued}) == 9  # one job each
    assert records[new_site].job_id == "1001"  # the new site's first job
    per_site = emulator.control("stats")["sites"]
    assert per_site["TUTO"]["POST pack"] == 9
    assert per_site["BRND"]["POST pack"] == 1


def test_the_default_site_named_by_its_id_is_the_default_site(two_sites):
    """One spelling in Redis: a request naming the default site by its id (through the
    producer or the intake stream) is stored as one that names none, and is the same request
    as one submitted without a site."""
    emulator, settings, _ = two_sites
    producer = Producer.from_settings(settings)
    eventually(producer.sites, lambda sites: sites == ["BRND", "TUTO"])
    store_a = register_storage(emulator.url, SAMPLE_SITE)
    body = body_for(store_a, "named-default")
    named = producer.submit(body, "named-default", site_id=SAMPLE_SITE.site_id)
    assert producer.submit(body, "named-default") == named  # the same request, no conflict
    producer.redis.xadd(
        producer.keys.intake,
        {"request_id": "named-default-2", "request": json.dumps(body), "site_id": "TUTO"},
    )
    records = wait_all(producer, [named, "named-default-2"])
    for record in records.values():
        assert (record.state.value, record.site_id) == ("completed", "")
    assert all("site_id" not in e for e in events_of(producer, named))


def test_each_site_has_its_own_rate_limit(
    tmp_path, redis_server: RedisServer, emulator_factory, worker_factory
):
    """The second site may call the API once in 100 s (one call in its burst); the default
    site 200 times a second. The default site's requests all complete while the second
    site's have made one call: neither bucket is the other's."""
    emulator = emulator_factory("--job-seconds", "1", "--sites-file", emulator_sites(tmp_path))
    throttled = sites_file(tmp_path, api_rate=0.01, api_burst=1)
    settings = make_settings(
        redis_server.url, emulator.url, sites_path=throttled, callback_token=DEFAULT_TOKEN
    )
    worker_factory(settings)
    producer = Producer.from_settings(settings)
    eventually(producer.sites, lambda sites: sites == ["BRND", "TUTO"])
    store_a = register_storage(emulator.url, SAMPLE_SITE)
    store_b = register_storage(emulator.url, OTHER)
    slow = [
        producer.submit(body_for(store_b, f"rl-b-{n}"), site_id=OTHER.site_id) for n in range(3)
    ]
    fast = [producer.submit(body_for(store_a, f"rl-a-{n}")) for n in range(5)]
    records = wait_all(producer, fast)
    assert {r.state.value for r in records.values()} == {"completed"}
    per_site = emulator.control("stats")["sites"]
    worker_calls = ("POST pack", "GET ")  # registrations, job lists (not the test's storage)
    calls_b = sum(n for kind, n in per_site["BRND"].items() if kind.startswith(worker_calls))
    assert calls_b == 1, per_site["BRND"]
    states_b = {r.state.value for r in producer.records.get_many(slow).values()}
    assert "completed" not in states_b


def test_a_worker_without_the_site_leaves_its_requests_to_one_that_serves_it(
    two_sites, worker_factory
):
    """Mid-way through a rolling change: one worker has the sites file, one has not. Every
    request for the second site completes (the worker without it puts back what it picks up,
    registered or not), each with one job; nothing fails."""
    emulator, settings, _ = two_sites
    single = settings.model_copy(update={"sites_path": None})
    lone = worker_factory(single)
    producer = Producer.from_settings(settings)
    eventually(producer.sites, lambda sites: sites == ["BRND", "TUTO"])
    store_b = register_storage(emulator.url, OTHER)
    ids = [producer.submit(body_for(store_b, f"roll-{n}"), site_id=OTHER.site_id) for n in range(8)]
    records = wait_all(producer, ids, timeout=90)
    assert {r.state.value for r in records.values()} == {"completed"}
    assert sorted(int(r.job_id) for r in records.values()) == list(range(1001, 1009))
    assert emulator.control("stats")["sites"]["BRND"]["POST pack"] == 8
    assert "not served by this worker" in lone.log.read_text()  # it did pick some up
