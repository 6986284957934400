"""The store's objects as the commands and the worker build them from the settings, on the
real Redis server: every setting reaches them, in process (no worker, no subprocess)."""

from __future__ import annotations

import threading
import time

import pytest
from click.testing import CliRunner

from pallycon_pack.cli.main import main
from pallycon_producers.api import Producer
from pallycon_store import heartbeats
from pallycon_store.events import State
from pallycon_store.record import Fields
from pallycon_store.records import Change
from pallycon_store.wiring import Store
from pallycon_worker.loops import LoopHealth
from pallycon_worker.runtime import Runtime
from pallycon_worker.sweeper import sweep_forever
from support.queue import announce_sites, eventually, make_settings
from support.samples import SAMPLE_SITE, body_for

pytestmark = pytest.mark.integration

RESULT_MAXLEN = 1000
#: valkey's and Redis's stream-node-max-entries: an approximate trim keeps whole nodes.
NODE = 100


def test_retry_trims_the_result_stream_to_the_setting(
    redis_server, isolated_settings, monkeypatch: pytest.MonkeyPatch
):
    """`retry` writes its event with PALLYCON_RESULT_MAXLEN, as every other writer does: the
    stream is trimmed to about that many entries (it used to be to a million)."""
    settings = make_settings(redis_server.url, "http://127.0.0.1:9", result_maxlen=RESULT_MAXLEN)
    producer = Producer.from_settings(settings)
    announce_sites(producer, SAMPLE_SITE.site_id)
    request_id = producer.submit(body_for("storage", "retried"))
    record = producer.get(request_id)
    assert record is not None
    now = time.time()
    failed = Fields(
        state=State.FAILED,
        error_stage="timeout",
        error_code="timeout",
        updated_at=now,
        finished_at=now,
    )
    assert producer.records.apply([Change(record, failed, finish=True)]) == [True]
    results = producer.keys.results
    pipe = producer.redis.pipeline(transaction=False)
    for _ in range(3 * RESULT_MAXLEN):
        pipe.xadd(results, {"event": "{}"})  # another writer's events, untrimmed
    pipe.execute()
    assert producer.redis.xlen(results) > 3 * RESULT_MAXLEN
    for name, value in settings.environment().items():
        monkeypatch.setenv(name, value)

    retried = CliRunner().invoke(main, ["retry", request_id])

    assert retried.exit_code == 0, retried.output
    assert "resubmit" in retried.output or "resume" in retried.output
    assert producer.redis.xlen(results) <= RESULT_MAXLEN + NODE


def test_the_sweeper_drops_the_heartbeats_of_workers_gone_away(redis_server, isolated_settings):
    """A worker's sweeper, at its periodic trim, removes heartbeats not written for
    GONE_AFTER; recent ones stay, failing or not, and so does a value it cannot read."""
    settings = make_settings(redis_server.url, "http://127.0.0.1:9")
    rt = Runtime.build(settings)
    store = rt.shared
    now = time.time()
    stored = {
        "gone@a/sweeper": {"ok_at": now - heartbeats.GONE_AFTER - 60},
        "gone@b/intake": {"ok_at": 0.0, "error_at": now - heartbeats.GONE_AFTER - 1},
        "quiet@c/intake": {"ok_at": now - heartbeats.GONE_AFTER + 600},
        "failing@d/sweeper": {"ok_at": 0.0, "error_at": now - 5, "failing": True},
    }
    fields = {name: heartbeats.encode(state) for name, state in stored.items()}
    for name, value in {**fields, "odd/loop": "not json"}.items():
        store.redis.hset(store.keys.heartbeats, name, value)
    stop = threading.Event()
    health = LoopHealth(store.redis, store.keys, "self@e")
    sweeper = threading.Thread(target=sweep_forever, args=(rt, store.sender(), stop, health))
    sweeper.start()
    try:
        left = eventually(
            lambda: set(store.redis.hkeys(store.keys.heartbeats)),
            lambda names: "self@e/sweeper" in names,
        )
    finally:
        stop.set()
        sweeper.join(10)
    assert left == {"quiet@c/intake", "failing@d/sweeper", "odd/loop", "self@e/sweeper"}
    shown = {(h.node, h.loop) for h in heartbeats.read(store.redis, store.keys, time.time())}
    assert shown == {("quiet@c", "intake"), ("failing@d", "sweeper"), ("self@e", "sweeper")}


def test_a_store_reaches_the_settings_keys(redis_server, isolated_settings):
    """Store.of on the settings' Redis: its records, overview and fleet read what a producer
    of the same settings wrote."""
    settings = make_settings(redis_server.url, "http://127.0.0.1:9")
    producer = Producer.from_settings(settings)
    announce_sites(producer, SAMPLE_SITE.site_id)
    request_id = producer.submit(body_for("storage", "read-back"))
    store = Store.of(settings)
    assert store.records.get(request_id) == producer.get(request_id)
    assert store.overview().counts()[State.ACCEPTED] == 1
    assert store.fleet().snapshot(time.time()).schedules["submit"].depth == 1
