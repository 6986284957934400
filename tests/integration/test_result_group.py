"""Result consumer groups on the real Redis server: redelivery, parking of poison events, and
the parked counts that ``stats`` and the exporter show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from pallycon_config import Settings
from pallycon_pack.web.exporter import FleetCollector
from pallycon_producers.api import ResultGroup, parked_counts
from pallycon_store.wiring import Store
from support.cli import run_cli
from support.env import clean_env
from support.queue import make_settings
from support.redis_server import RedisServer

pytestmark = pytest.mark.integration

MAX_DELIVERIES = 3


class Crash(Exception):
    """The consumer's process dies (its handler cannot get past an event)."""


@pytest.fixture
def settings(redis_server: RedisServer) -> Settings:
    return make_settings(redis_server.url, "http://127.0.0.1:9")


@pytest.fixture
def client(settings: Settings) -> Any:
    connection = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield connection
    stale = list(connection.scan_iter(f"{settings.key_prefix}:*"))
    if stale:
        connection.delete(*stale)
    connection.close()


def add_events(client: redis.Redis, stream: str, *names: str) -> dict[str, str]:
    """Events added to the result stream: their entry ids by name."""
    return {
        name: str(client.xadd(stream, {"event": json.dumps({"event_id": f"{name}:1", "n": name})}))
        for name in names
    }


def run_restarting(
    client: redis.Redis, stream: str, poison: str, until: set[str], lives: int = 20
) -> tuple[list[str], int]:
    """A consumer ``c1`` of the group ``cms`` that handles and acknowledges each event and
    crashes on ``poison``, restarted (a new ResultGroup, same name) after each crash until it
    has handled ``until``: the events handled in order, and the times it met the poison."""
    handled: list[str] = []
    met = 0
    for _ in range(lives):
        group = ResultGroup(client, stream, "cms", "c1", max_deliveries=MAX_DELIVERIES)
        try:
            while not until <= set(handled):
                for entry_id, event in group.read(block_ms=100):
                    if event["n"] == poison:
                        met += 1
                        raise Crash
                    handled.append(event["n"])
                    group.ack(entry_id)
            return handled, met
        except Crash:
            continue
    raise AssertionError(f"still stalled after {lives} lives: handled {handled}")


def test_a_poison_event_is_parked_after_max_deliveries_and_the_next_ones_are_delivered(
    settings: Settings, client: redis.Redis
):
    """A consumer that crashes on one event, restarted in a loop, meets it max_deliveries
    times; then it is parked (acknowledged, copied with the reason) and the events after it are
    delivered; another group reading the same events is unaffected."""
    stream = Store.of(settings).keys.results
    ids = add_events(client, stream, "e1", "poison", "e3")

    handled, met = run_restarting(client, stream, "poison", {"e1", "e3"})

    assert handled == ["e1", "e3"]
    assert met == MAX_DELIVERIES
    group = ResultGroup(client, stream, "cms", "c1")
    (parked,) = group.parked()
    assert (parked.entry_id, parked.event, parked.consumer, parked.deliveries) == (
        ids["poison"], {"event_id": "poison:1", "n": "poison"}, "c1", MAX_DELIVERIES + 1,
    )  # fmt: skip
    assert (
        parked.reason == "delivered 4 times without being acknowledged (more than max_deliveries=3)"
    )
    assert client.xpending(stream, "cms")["pending"] == 0
    assert group.read(block_ms=100) == []

    billing = ResultGroup(client, stream, "billing", "b1", max_deliveries=MAX_DELIVERIES)
    got = billing.read(block_ms=100)
    assert [event["n"] for _, event in got] == ["e1", "poison", "e3"]
    billing.ack(*(entry_id for entry_id, _ in got))
    assert billing.parked() == []
    assert parked_counts(client, stream) == {"billing": 0, "cms": 1}

    group.drop(parked.parked_id)
    assert group.parked() == []


def test_a_pending_event_is_given_again_alone_and_handled_below_the_limit(
    settings: Settings, client: redis.Redis
):
    """A consumer restarted with unacknowledged events gets them again one at a time, each
    handled once it goes through, and none is parked below max_deliveries."""
    stream = Store.of(settings).keys.results
    add_events(client, stream, "a", "b", "c")
    first = ResultGroup(client, stream, "cms", "c1", max_deliveries=2)
    assert len(first.read(block_ms=100)) == 3  # then it dies without acknowledging any
    restarted = ResultGroup(client, stream, "cms", "c1", max_deliveries=2)
    seen = []
    for _ in range(3):
        (delivered,) = restarted.read(block_ms=100)
        seen.append(delivered[1]["n"])
        restarted.ack(delivered[0])
    assert seen == ["a", "b", "c"]
    assert restarted.read(block_ms=100) == []
    assert restarted.parked() == []


def test_a_dead_consumers_event_delivered_too_often_is_parked_when_taken_over(
    settings: Settings, client: redis.Redis
):
    """claim_stale parks an event the takeover delivers more than max_deliveries times, and
    hands over the others."""
    stream = Store.of(settings).keys.results
    add_events(client, stream, "poison", "fine")
    dead = ResultGroup(client, stream, "cms", "dead", max_deliveries=2)
    assert len(dead.read(block_ms=100)) == 2
    assert [e["n"] for _, e in dead.read(block_ms=100)] == ["poison"]  # delivered twice
    heir = ResultGroup(client, stream, "cms", "heir", max_deliveries=2)
    assert [e["n"] for _, e in heir.claim_stale(min_idle_ms=0)] == ["fine"]
    assert [p.event["n"] for p in heir.parked()] == ["poison"]


def test_stats_and_the_exporter_count_each_groups_parked_events(
    settings: Settings, client: redis.Redis, tmp_path: Path
):
    """``stats`` (text and JSON) and ``pallycon_pack_result_parked{group}`` show the events
    each result consumer group parked, 0 for a group that parked none."""
    store = Store.of(settings)
    stream = store.keys.results
    add_events(client, stream, "poison", "e2")
    run_restarting(client, stream, "poison", {"e2"})
    ResultGroup(client, stream, "billing", "b1")
    env = clean_env(settings.environment())

    result = run_cli("stats", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result_parked"] == {"billing": 0, "cms": 1}
    result = run_cli("stats", env=env, cwd=tmp_path)
    assert result.stdout.decode().splitlines()[-1] == "result parked   billing=0  cms=1"

    (family,) = [m for m in FleetCollector(store).collect() if m.name.endswith("result_parked")]
    assert {s.labels["group"]: s.value for s in family.samples} == {"billing": 0, "cms": 1}
