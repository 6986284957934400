"""The webhook outbox's scripts against a real Redis: fan-out (idempotent, acknowledging its
entries), the claim (endpoint by endpoint, each within its cap; leases that end come back),
each settle, the dead-letter list and its replay, and the overview the metrics read."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from pallycon_store.keys import WEBHOOK_GROUP
from pallycon_store.webhooks import deliveries as outbox_module
from pallycon_store.webhooks import rules
from pallycon_store.webhooks.deliveries import Attempted, Deliveries
from pallycon_store.webhooks.endpoints import Endpoints
from pallycon_store.webhooks.rules import AttemptKind, Decision, NewDelivery, Settle
from pallycon_store.webhooks.sealing import Sealer
from pallycon_store.webhooks.signing import Secret
from pallycon_store.wiring import Store
from support.queue import make_settings
from support.redis_server import RedisServer

pytestmark = pytest.mark.integration

NOW = 1_800_000_000.0
LEASE = 30.0
SEALER = Sealer.of("a-webhook-key-of-at-least-32-characters")


@pytest.fixture
def outbox(redis_server: RedisServer) -> Deliveries:
    store = Store.of(make_settings(redis_server.url, "http://127.0.0.1:9"))
    deliveries = Deliveries(store.redis, store.keys)
    deliveries.ensure_group()
    return deliveries


def add(outbox: Deliveries, name: str = "a") -> str:
    endpoints = Endpoints(outbox.redis, outbox.keys)
    url = f"https://{name}.example.com/hook"
    return endpoints.add(SEALER, url, Secret.generate(), NOW).id


def new(endpoint_id: str, n: int, at: float = NOW) -> NewDelivery:
    return NewDelivery(endpoint_id, f"req-{n}:2", "completed", f"req-{n}", at, b'{"n":%d}' % n)


def event_entries(outbox: Deliveries, count: int) -> list[str]:
    """``count`` result events written and read by the webhook group: their entry ids."""
    for n in range(count):
        outbox.redis.xadd(outbox.keys.results, {"event": json.dumps({"n": n})})
    reply = cast(
        list[tuple[str, list[tuple[str, Any]]]],
        outbox.redis.xreadgroup(WEBHOOK_GROUP, "c", {outbox.keys.results: ">"}),
    )
    return [entry_id for _, entries in reply for entry_id, _ in entries]


def ok(seconds: float = 0.01) -> Attempted:
    return Attempted(AttemptKind.HTTP_2XX, seconds)


def test_fan_out_creates_each_delivery_once_and_acknowledges_its_entries(outbox: Deliveries):
    ep = add(outbox)
    entries = event_entries(outbox, 3)
    made = [new(ep, n) for n in range(3)]
    assert outbox.fan_out(entries, made, NOW, cap=4) == 3
    assert outbox.redis.xpending(outbox.keys.results, WEBHOOK_GROUP)["pending"] == 0
    assert outbox.fan_out([], made, NOW, cap=4) == 0  # handled again: nothing twice
    claimed, _ = outbox.claim(NOW, LEASE, cap=10, limit=10)
    assert sorted(c.webhook_id for c in claimed) == ["req-0:2", "req-1:2", "req-2:2"]
    assert {c.body for c in claimed} == {b'{"n":0}', b'{"n":1}', b'{"n":2}'}


def test_the_claim_takes_each_endpoint_within_its_cap(outbox: Deliveries):
    """A busy endpoint's deliveries never take another's turn: each gets its cap."""
    slow, fast = add(outbox, "slow"), add(outbox, "fast")
    outbox.fan_out([], [new(slow, n) for n in range(10)], NOW, cap=2)
    outbox.fan_out([], [new(fast, n) for n in range(3)], NOW + 1, cap=2)
    claimed, _ = outbox.claim(NOW + 1, LEASE, cap=2, limit=100)
    per = [c.endpoint_id for c in claimed]
    assert per.count(slow) == 2
    assert per.count(fast) == 2
    again, next_at = outbox.claim(NOW + 2, LEASE, cap=2, limit=100)
    assert again == []  # both at their cap until a settle or a lease end
    assert next_at == NOW + 1 + LEASE
    fast_one = next(c for c in claimed if c.endpoint_id == fast)
    outbox.settle(fast_one, Decision(Settle.DELIVERED, "HTTP 204"), ok(), NOW + 2, cap=2)
    after, _ = outbox.claim(NOW + 2, LEASE, cap=2, limit=100)
    assert [c.endpoint_id for c in after] == [fast]


def test_a_lease_that_ends_unsettled_makes_its_delivery_due_again(outbox: Deliveries):
    ep = add(outbox)
    outbox.fan_out([], [new(ep, 1)], NOW, cap=4)
    (first,), _ = outbox.claim(NOW, LEASE, cap=4, limit=10)
    assert outbox.claim(NOW + LEASE - 1, LEASE, cap=4, limit=10)[0] == []
    (again,), _ = outbox.claim(NOW + LEASE, LEASE, cap=4, limit=10)
    assert again.delivery_id == first.delivery_id
    assert again.lost  # to settle as a failed attempt, not to send
    assert again.attempts == 1  # the lost attempt, counted at its claim
    # The first holder settles late: it no longer holds it, only the counters change.
    late = Decision(Settle.RETRY, "HTTP 500", NOW + 99)
    assert not outbox.settle(first, late, Attempted(AttemptKind.HTTP_5XX, 0.1), NOW + 31, 4)


def test_retry_dead_letter_and_replay(outbox: Deliveries):
    ep = add(outbox)
    outbox.fan_out([], [new(ep, 1)], NOW, cap=4)
    (c,), _ = outbox.claim(NOW, LEASE, cap=4, limit=10)
    failed = Attempted(AttemptKind.HTTP_5XX, 0.2, "HTTP 500")
    assert outbox.settle(c, Decision(Settle.RETRY, "HTTP 500", NOW + 5, NOW), failed, NOW, 4)
    assert outbox.claim(NOW + 4, LEASE, cap=4, limit=10)[0] == []
    (c,), _ = outbox.claim(NOW + 5, LEASE, cap=4, limit=10)
    assert c.attempts == 1
    assert c.failing_since == NOW
    outbox.settle(
        c, Decision(Settle.DEAD, "2 attempts failed (last: HTTP 500)"), failed, NOW + 6, 4
    )
    [letter] = outbox.failures([ep])
    assert (letter.webhook_id, letter.attempts, letter.type) == ("req-1:2", 2, "completed")
    assert letter.last_outcome == "HTTP 500"
    assert letter.dead_reason == "2 attempts failed (last: HTTP 500)"
    assert outbox.failures([ep], since=NOW + 7) == []
    assert outbox.replay([ep], NOW + 10, cap=4) == 1
    assert outbox.failures([ep]) == []
    (c,), _ = outbox.claim(NOW + 10, LEASE, cap=4, limit=10)
    assert c.attempts == 0
    assert outbox.settle(c, Decision(Settle.DELIVERED, "HTTP 200"), ok(), NOW + 11, 4)
    view = outbox.overview(NOW + 12)
    [health] = view.endpoints
    assert (health.pending, health.dead, health.last_success, health.failing_since) == (
        0,
        0,
        NOW + 11,
        None,
    )
    counts = view.counters
    assert counts.attempts["5xx"] == 2
    assert counts.attempts["2xx"] == 1
    assert (counts.delivered, counts.dead, counts.replayed) == (1, 1, 1)
    assert counts.latency.count == 3
    assert counts.latency.buckets["0.25"] == 2
    assert counts.lag.count == 1
    assert counts.lag.buckets["+Inf"] == 0


def test_disabling_buries_the_pending_deliveries_and_says_so(outbox: Deliveries):
    ep = add(outbox)
    outbox.fan_out([], [new(ep, n) for n in range(5)], NOW, cap=2)
    claimed, _ = outbox.claim(NOW, LEASE, cap=2, limit=10)
    gone = Decision(Settle.DISABLE, "HTTP 410 (Gone) at a delivery")
    outbox.disable_endpoint(claimed[0], gone, Attempted(AttemptKind.HTTP_410, 0.01), NOW + 1, 2)
    assert len(outbox.failures([ep])) == 1
    assert outbox.claim(NOW + 1, LEASE, cap=2, limit=10)[0] == []  # buries the others
    letters = outbox.failures([ep])
    # The delivery that disabled it says why as those buried after it do.
    assert {letter.dead_reason for letter in letters} == {
        "endpoint disabled: HTTP 410 (Gone) at a delivery"
    }
    assert len(letters) == 5
    assert outbox.claim(NOW + LEASE * 2, LEASE, cap=2, limit=10)[0] == []
    [event] = outbox.events()
    assert (event["type"], event["endpoint_id"]) == ("endpoint_disabled", ep)
    view = outbox.overview(NOW + 2)
    assert view.disabled_endpoints == 1
    assert view.endpoints[0].pending == 0
    assert view.counters.disabled == 1
    assert view.counters.dead == 5


def test_an_endpoint_disabled_by_hand_is_sent_nothing_and_a_removed_one_is_forgotten(
    outbox: Deliveries,
):
    kept, removed = add(outbox, "kept"), add(outbox, "removed")
    outbox.fan_out([], [new(kept, 1), new(removed, 1)], NOW, cap=4)
    outbox.endpoints.disable(kept, "by hand", NOW)
    outbox.endpoints.remove(removed)
    assert outbox.claim(NOW, LEASE, cap=4, limit=10)[0] == []
    [letter] = outbox.failures([kept])
    assert letter.dead_reason == "endpoint disabled: by hand"
    assert outbox.redis.exists(outbox.keys.webhook_delivery(f"{removed}/req-1:2")) == 0
    outbox.enable_endpoint(kept)
    assert outbox.replay([kept], NOW + 1, cap=4) == 1
    (c,), _ = outbox.claim(NOW + 1, LEASE, cap=4, limit=10)
    assert c.endpoint_id == kept


def test_the_overview_counts_pending_due_in_flight_and_lag(outbox: Deliveries):
    ep = add(outbox)
    outbox.fan_out([], [new(ep, n, at=NOW - 10 + n) for n in range(4)], NOW, cap=1)
    outbox.claim(NOW, LEASE, cap=1, limit=10)
    [health] = outbox.overview(NOW + 5).endpoints
    assert (health.pending, health.due_now, health.in_flight) == (4, 3, 1)
    assert health.oldest_pending_age == 15.0
    assert health.disabled is None
    assert health.last_success is None


def test_a_disabled_or_removed_endpoints_later_deliveries_are_seen_to_at_once(
    outbox: Deliveries,
):
    """A delivery due hours from now is buried (disabled) or dropped (removed) at the next
    claim, not when it comes due."""
    kept, removed = add(outbox, "later"), add(outbox, "gone")
    outbox.fan_out([], [new(kept, 1), new(removed, 1)], NOW, cap=4)
    claimed, _ = outbox.claim(NOW, LEASE, cap=4, limit=10)
    failed = Attempted(AttemptKind.HTTP_5XX, 0.1, "HTTP 500")
    for c in claimed:
        outbox.settle(c, Decision(Settle.RETRY, "HTTP 500", NOW + 36000), failed, NOW, 4)
    outbox.disable_by_hand(kept, "by hand", NOW + 1)
    outbox.remove_endpoint(removed)
    assert outbox.claim(NOW + 2, LEASE, cap=4, limit=10)[0] == []
    assert [letter.endpoint_id for letter in outbox.failures([kept])] == [kept]
    assert outbox.redis.exists(outbox.keys.webhook_due(removed)) == 0
    assert outbox.redis.zscore(outbox.keys.webhook_schedule, removed) is None


def failed_once(outbox: Deliveries, ep: str, n: int, at: float, failing_since: float) -> bool:
    """Delivery ``n`` made, claimed and failed at ``at`` (a retry; the streak as given)."""
    outbox.fan_out([], [new(ep, n)], at, cap=4)
    (c,), _ = outbox.claim(at, LEASE, cap=4, limit=10)
    decision = Decision(Settle.RETRY, "HTTP 500", at + 5, failing_since)
    return outbox.settle(c, decision, Attempted(AttemptKind.HTTP_5XX, 0.1, "HTTP 500"), at, 4)


def test_the_failing_streak_is_stored_by_a_settle_holding_its_lease_and_replay_ends_it(
    outbox: Deliveries,
):
    ep = add(outbox)
    assert failed_once(outbox, ep, 1, NOW, NOW)
    (c,), _ = outbox.claim(NOW + 5, LEASE, cap=4, limit=10)
    assert (c.failing_since, c.last_failure) == (NOW, NOW)
    # A settle whose lease was taken over changes no streak.
    (again,), _ = outbox.claim(NOW + 5 + LEASE, LEASE, cap=4, limit=10)
    stale = Decision(Settle.RETRY, "HTTP 500", NOW + 99, NOW + 50)
    assert not outbox.settle(c, stale, Attempted(AttemptKind.HTTP_5XX, 0.1), NOW + 50, 4)
    [health] = outbox.overview(NOW + 51).endpoints
    assert health.failing_since == NOW
    assert health.last_outcome  # the first failure's, kept with its streak
    assert outbox.redis.hget(outbox.keys.webhook_state, f"{ep} last_failure") == repr(NOW)
    # Dead-lettered, then replayed: the streak is forgotten.
    dead = Decision(Settle.DEAD, "dead", None, NOW)
    assert outbox.settle(again, dead, Attempted(AttemptKind.HTTP_5XX, 0.1), NOW + 52, 4)
    assert outbox.replay([ep], NOW + 70, cap=4) == 1
    [health] = outbox.overview(NOW + 71).endpoints
    assert health.failing_since is None
    assert health.last_outcome == ""
    (c,), _ = outbox.claim(NOW + 70, LEASE, cap=4, limit=10)
    assert (c.failing_since, c.last_failure) == (None, None)


def test_a_delivery_not_attempted_goes_back_uncounted_while_its_claim_holds_it(
    outbox: Deliveries,
):
    ep = add(outbox)
    outbox.fan_out([], [new(ep, 1)], NOW, cap=4)
    (c,), _ = outbox.claim(NOW, LEASE, cap=4, limit=10)
    assert outbox.release(c, NOW + 1, cap=4)
    assert outbox.claim(NOW + 0.5, LEASE, cap=4, limit=10)[0] == []
    (again,), _ = outbox.claim(NOW + 1, LEASE, cap=4, limit=10)
    assert again.attempts == c.attempts
    assert not outbox.release(c, NOW + 2, cap=4)  # its claim no longer holds it
    view = outbox.overview(NOW + 2)
    assert sum(view.counters.attempts.values()) == 0
    assert view.endpoints[0].failing_since is None
    assert view.endpoints[0].in_flight == 1


def test_a_delivery_that_kills_its_worker_every_time_ends_dead_lettered(outbox: Deliveries):
    """Each attempt is counted as it is claimed; a lease that ended unsettled is a failed
    attempt ("worker lost") on the schedule: two delays, three attempts, then dead."""
    ep = add(outbox)
    outbox.fan_out([], [new(ep, 1)], NOW, cap=4)
    lost = Attempted(AttemptKind.WORKER_LOST, None, rules.LOST)
    at, settled = NOW, []
    for _ in range(3):
        (sent,), _ = outbox.claim(at, LEASE, cap=4, limit=10)
        assert not sent.lost
        at += LEASE  # its worker dies: the lease ends unsettled
        (c,), _ = outbox.claim(at, LEASE, cap=4, limit=10)
        assert (c.lost, c.attempts) == (True, sent.attempts + 1)
        decision = rules.lost(c.attempts, at, (1.0, 1.0), lambda: 0.5)
        assert outbox.settle(c, decision, lost, at, 4)
        settled.append(decision.settle)
        at += 1
    assert settled == [Settle.RETRY, Settle.RETRY, Settle.DEAD]
    [letter] = outbox.failures([ep])
    assert letter.attempts == 3
    assert letter.dead_reason == f"3 attempts failed (last: {rules.LOST})"
    view = outbox.overview(at)
    assert view.counters.attempts["worker_lost"] == 3
    assert view.endpoints[0].failing_since is None  # a lost worker is not the endpoint's failure


def test_a_claim_leaves_the_endpoints_it_is_told_to_skip(outbox: Deliveries):
    """A worker whose key does not open an endpoint's secret skips it: its deliveries stay
    due, uncounted, for a worker whose key does."""
    unreadable, fine = add(outbox, "unreadable"), add(outbox, "fine")
    outbox.fan_out([], [new(unreadable, 1), new(fine, 1)], NOW, cap=4)
    claimed, _ = outbox.claim(NOW, LEASE, cap=4, limit=10, skip=[unreadable])
    assert [c.endpoint_id for c in claimed] == [fine]
    (other,), _ = outbox.claim(NOW, LEASE, cap=4, limit=10)
    assert (other.endpoint_id, other.attempts) == (unreadable, 0)


def test_burying_dropping_and_replaying_go_a_chunk_per_script(
    outbox: Deliveries, monkeypatch: pytest.MonkeyPatch
):
    """No script works through a whole list at once (it would block Redis): a disabled
    endpoint's deliveries are buried a chunk per claim, a removed one's dead-letter list
    dropped so, and a replay loops a chunk per call."""
    monkeypatch.setattr(outbox_module, "CHUNK", 3)
    ep, gone = add(outbox, "chunked"), add(outbox, "gone")
    outbox.fan_out([], [new(ep, n) for n in range(7)] + [new(gone, n) for n in range(4)], NOW, 4)
    outbox.disable_by_hand(ep, "by hand", NOW)
    outbox.disable_by_hand(gone, "by hand", NOW)
    found = []
    for _ in range(4):
        outbox.claim(NOW, LEASE, cap=4, limit=10)
        found.append(len(outbox.failures([ep, gone])))
    assert found == [3, 6, 9, 11]  # one endpoint's chunk per claim, then the next's
    assert outbox.redis.zscore(outbox.keys.webhook_schedule, ep) is None
    assert outbox.overview(NOW).counters.dead == 11
    outbox.remove_endpoint(gone)
    outbox.claim(NOW, LEASE, cap=4, limit=10)
    assert outbox.redis.zcard(outbox.keys.webhook_dead(gone)) == 1
    outbox.claim(NOW, LEASE, cap=4, limit=10)
    assert outbox.redis.zcard(outbox.keys.webhook_dead(gone)) == 0
    assert outbox.redis.exists(outbox.keys.webhook_delivery(f"{gone}/req-0:2")) == 0
    outbox.enable_endpoint(ep)
    assert outbox.replay([ep], NOW + 1, cap=4) == 7
    assert outbox.failures([ep]) == []


def test_a_dead_letter_list_keeps_its_newest(outbox: Deliveries):
    """Past the number kept (PALLYCON_WEBHOOK_DEAD_LETTERS), the oldest dead letters are
    dropped with their bodies, as new ones come: by a settle and by the claim that buries a
    disabled endpoint's deliveries."""
    kept = Deliveries(outbox.redis, outbox.keys, dead_letters=2)
    ep = add(outbox)
    kept.fan_out([], [new(ep, n) for n in range(5)], NOW, cap=4)
    for n, c in enumerate(kept.claim(NOW, LEASE, cap=4, limit=3)[0]):
        dead = Decision(Settle.DEAD, f"dead {n}", None, NOW)
        kept.settle(c, dead, Attempted(AttemptKind.HTTP_5XX, 0.1), NOW + n, 4)
    assert [letter.dead_reason for letter in kept.failures([ep])] == ["dead 2", "dead 1"]
    first = outbox.keys.webhook_delivery(f"{ep}/req-0:2")
    assert outbox.redis.exists(first) == 0  # its body is gone too
    kept.disable_by_hand(ep, "by hand", NOW + 5)
    kept.claim(NOW + 5, LEASE, cap=4, limit=10)
    assert len(kept.failures([ep])) == 2
    counts = kept.overview(NOW + 6).counters
    assert (counts.dead, counts.dead_dropped) == (5, 3)


def test_an_attempt_that_disables_its_endpoint_says_so_even_after_its_lease_ended(
    outbox: Deliveries,
):
    """A 410 settled after the lease ended still disables the endpoint with its event and
    count; a second attempt finding it disabled writes none."""
    ep = add(outbox)
    outbox.fan_out([], [new(ep, 1), new(ep, 2)], NOW, cap=4)
    first, second = outbox.claim(NOW, LEASE, cap=4, limit=10)[0]
    outbox.claim(NOW + LEASE, LEASE, cap=4, limit=10)  # both leases taken over
    gone = Decision(Settle.DISABLE, "HTTP 410 (Gone) at a delivery", None, NOW)
    attempted = Attempted(AttemptKind.HTTP_410, 0.01)
    outbox.disable_endpoint(first, gone, attempted, NOW + LEASE + 1, 4)
    outbox.disable_endpoint(second, gone, attempted, NOW + LEASE + 2, 4)
    [event] = outbox.events()
    assert (event["type"], event["endpoint_id"]) == ("endpoint_disabled", ep)
    assert outbox.overview(NOW + LEASE + 3).counters.disabled == 1
    outbox.claim(NOW + LEASE + 3, LEASE, cap=4, limit=10)
    assert len(outbox.failures([ep])) == 2  # buried by the claim


def test_a_removed_endpoints_health_goes_with_it(outbox: Deliveries):
    """Its state entries are dropped with its deliveries; a 2xx settled after that writes
    none back."""
    ep = add(outbox)
    outbox.fan_out([], [new(ep, 1), new(ep, 2)], NOW, cap=4)
    first, second = outbox.claim(NOW, LEASE, cap=4, limit=10)[0]
    failed = Attempted(AttemptKind.HTTP_5XX, 0.1, "HTTP 500")
    outbox.settle(first, Decision(Settle.RETRY, "HTTP 500", NOW + 5, NOW), failed, NOW, 4)
    outbox.remove_endpoint(ep)
    outbox.claim(NOW + 1, LEASE, cap=4, limit=10)
    outbox.settle(second, Decision(Settle.DELIVERED, "HTTP 200"), ok(), NOW + 2, 4)
    assert outbox.redis.hgetall(outbox.keys.webhook_state) == {}


def test_a_2xx_between_two_claims_ends_the_streak_the_later_failure_carried(outbox: Deliveries):
    """Two deliveries claimed together after a failure: the first gets a 2xx (the streak
    ends), the second then fails with the streak its claim read. The stored streak starts at
    that failure, not at the old one; and the streak read again is what the worker decides
    from."""
    ep = add(outbox)
    assert failed_once(outbox, ep, 1, NOW, NOW)
    outbox.fan_out([], [new(ep, 2), new(ep, 3)], NOW + 1, cap=4)
    claimed, _ = outbox.claim(NOW + 5, LEASE, cap=4, limit=10)
    assert len(claimed) == 3
    assert {(c.failing_since, c.last_failure) for c in claimed} == {(NOW, NOW)}
    first, second = claimed[0], claimed[1]
    assert outbox.settle(
        first, Decision(Settle.DELIVERED, "HTTP 204", None, None), ok(), NOW + 6, 4
    )
    assert outbox.streak(ep) == (None, None)  # the worker reads this, not its claim's copy
    stale = Decision(Settle.RETRY, "HTTP 500", NOW + 99, NOW)  # decided from the claim's copy
    assert outbox.settle(
        second, stale, Attempted(AttemptKind.HTTP_5XX, 0.1, "HTTP 500"), NOW + 7, 4
    )
    assert outbox.streak(ep) == (NOW + 7, NOW + 7)
    [health] = outbox.overview(NOW + 8).endpoints
    assert health.failing_since == NOW + 7
