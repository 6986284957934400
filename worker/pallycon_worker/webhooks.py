"""The webhooks loop: every worker's main process fans the result events out to the endpoints
and sends the deliveries due (docs/WEBHOOKS.md).

Each round: take due deliveries (:meth:`Deliveries.claim`, endpoint by endpoint, each within
its cap of deliveries in flight) as far as the send threads have room, hand them to the
threads, then read the next result events (the consumer group ``pallycon-webhooks``) and
create their deliveries with the acknowledgement of their entries, in one script. Entries a
dead worker left unacknowledged are taken over after :data:`RECLAIM_IDLE_MS`. Each send
thread signs and POSTs one delivery (:mod:`pallycon_worker.webhook_send`), decides
(:func:`pallycon_store.webhooks.rules.decide`) and settles it in one script. An attempt is
counted as it is claimed: a delivery whose worker dies comes back when its lease ends, to the
next claim, which settles it as a failed attempt (:func:`rules.lost`) on its schedule.

Without ``PALLYCON_WEBHOOK_KEY`` a worker still fans out, but sends nothing (it cannot sign):
the deliveries wait for a worker that can, and the loop's health says so. With a key that does
not open an endpoint's secret (another key sealed it), a worker claims nothing of that
endpoint: it is the worker's fault, not the endpoint's (no attempt counted, no streak), and the
loop's health names the endpoint.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import redis

from pallycon_config.rules import ConfigError
from pallycon_store.connect import REDIS_AWAY, describe
from pallycon_store.events import iso
from pallycon_store.keys import WEBHOOK_GROUP
from pallycon_store.webhooks import rules
from pallycon_store.webhooks.deliveries import Attempted, Claimed, Deliveries
from pallycon_store.webhooks.endpoints import Endpoint
from pallycon_store.webhooks.errors import UnknownEndpoint, UnreadableSecret, WebhookError
from pallycon_store.webhooks.outcome import Verdict, no_response
from pallycon_store.webhooks.rules import AttemptKind, Decision, Settle
from pallycon_store.webhooks.sealing import Sealer
from pallycon_store.webhooks.signing import Secret
from pallycon_worker.loops import TRANSIENT, LoopHealth, next_pause
from pallycon_worker.runtime import Runtime
from pallycon_worker.webhook_send import (
    Clients,
    Sent,
    attempt_deadline,
    attempt_limit,
    new_client,
    send,
)

log = logging.getLogger("pallycon_pack.webhooks")

LOOP = rules.LOOP
#: Result events read at once.
BATCH = 200
#: The longest a read waits for new events when nothing else is to be done, in milliseconds.
BLOCK_MS = 500
#: The shortest time between two rounds woken while sends are in flight, in seconds.
MIN_ROUND = 0.01
#: How long a listener for new events waits before it subscribes again after Redis went away,
#: in seconds.
LISTEN_RETRY = 1.0
#: An entry pending this long with a consumer that does not acknowledge it is taken over.
RECLAIM_IDLE_MS = 5_000
#: How often a worker looks for entries to take over, in seconds.
RECLAIM_EVERY = 5.0
#: A consumer (a worker's name) idle this long with nothing pending is removed from the group.
FORGET_CONSUMER_MS = 3_600_000
#: How often a worker without the key says again in its health that it does not deliver.
NO_KEY_EVERY = 60.0


#: How long after a delivery not attempted (no connection free) it is due again, in seconds.
RELEASE_DELAY = 1.0


def lease_of(timeout: float) -> float:
    """How long a claimed delivery is leased: longer than any attempt can take
    (:func:`attempt_limit`: twice the timeout, a deadline) and its settle (twice more, and a
    margin), so that only a dead worker's deliveries come back."""
    return 2 * attempt_limit(timeout) + 5.0


class Webhooks:
    """One worker's part in delivering webhooks."""

    def __init__(self, rt: Runtime, consumer: str, health: LoopHealth) -> None:
        s = rt.settings
        self.rt, self.consumer, self.health = rt, consumer, health
        self.deliveries = Deliveries(rt.shared.redis, rt.shared.keys, s.webhook_dead_letters)
        self.cap = s.webhook_endpoint_concurrency
        self.concurrency = s.webhook_concurrency
        self.lease = lease_of(s.webhook_timeout)
        self.limit = attempt_limit(s.webhook_timeout)
        self.delays = s.webhook_delays
        self.disable_after = s.webhook_disable_after
        self.gap = rules.streak_gap(self.delays, self.lease)
        key = s.webhook_key
        self.sealer = Sealer.of(key.get_secret_value()) if key is not None else None
        health.note(LOOP, signs=self.sealer is not None)  # read by webhooks add and test
        self.clients = Clients(lambda: new_client(s.webhook_timeout, self.cap))
        self.random = random.Random()  # noqa: S311 (jitter, not a secret)
        self.pool: ThreadPoolExecutor | None = None
        self.active = 0
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.endpoints: dict[str, Endpoint] = {}
        self._opened: dict[tuple[str, str], Secret] = {}
        self._refused: dict[tuple[str, str], str] = {}  # why each does not open
        self._no_key_said = 0.0
        self.unreadable: list[str] = []  # endpoints whose secrets this worker's key does not open
        self._unreadable_said = 0.0

    # --- The loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Rounds until ``stop``; Redis outages are waited out with a backoff."""
        pause, grouped, next_reclaim, idle_block = 0.5, False, 0.0, BLOCK_MS
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="pallycon-webhook")
        ended = threading.Event()  # this run's end: its listener ends with it (a restart
        listener = threading.Thread(  # of the loop starts another, never one more each time)
            target=self.listen, args=(stop, ended), name="pallycon-webhooks-wake", daemon=True
        )
        listener.start()
        try:
            while not stop.is_set():
                self.wake.clear()  # before this round's reads: a wake-up after them is kept
                started = time.monotonic()
                try:
                    if not grouped:
                        self.deliveries.ensure_group()
                        grouped = True
                        self.say_if_no_key()
                    now = self.rt.clock()
                    self.refresh(now)
                    claimed, next_at = self.claim(now)
                    busy = bool(claimed) or self.in_flight() > 0
                    if next_at is not None and self.sealer is not None and next_at > now:
                        idle_block = int(min(BLOCK_MS, max(10.0, (next_at - now) * 1000)))
                    else:  # nothing due, or due but not claimable now (its endpoint at its cap
                        idle_block = BLOCK_MS  # elsewhere, or its secret not opened): no spin
                    if now >= next_reclaim:
                        self.reclaim()
                        next_reclaim = now + RECLAIM_EVERY
                    read = self.read(None if busy else idle_block)
                    if not read and not claimed and self.in_flight() > 0:
                        # Sends in flight (the read could not block, or a send's end would wait
                        # for it): until one ends or a new event is written (both wake it), or
                        # the next delivery is due.
                        self.wake.wait(idle_block / 1000)
                        # Woken (by any worker's event): at most a round each MIN_ROUND, however
                        # many events the fleet writes.
                        stop.wait(max(0.0, MIN_ROUND - (time.monotonic() - started)))
                    self.report()
                    pause = 0.5
                except TRANSIENT as exc:
                    log.warning("webhooks round failed (%s); next in %.1fs", describe(exc), pause)
                    self.health.failed(LOOP, exc)
                    stop.wait(pause)
                    pause = next_pause(pause)
        finally:  # the deliveries handed over are sent (their clients stay open)
            ended.set()
            self.pool.shutdown(wait=False)

    def listen(self, stop: threading.Event, ended: threading.Event) -> None:
        """Wake the loop each time a result event is written (the wake-up channel every event
        is published on), so that a round waiting for its sends to end fans a new event out at
        once: an endpoint whose sends never end (a receiver that never answers) must not delay
        another's events. A hint only: lost, the round's wait ends on its own."""
        channel = self.rt.shared.keys.wake_channel
        while not (stop.is_set() or ended.is_set()):
            pubsub = self.rt.shared.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(channel)
                while not (stop.is_set() or ended.is_set()):
                    if pubsub.get_message(timeout=1.0) is not None:
                        self.wake.set()
            except TRANSIENT as exc:
                log.debug(
                    "webhooks wake-up listener: %s; again in %gs", describe(exc), LISTEN_RETRY
                )
                ended.wait(LISTEN_RETRY)
            except redis.exceptions.RedisError as exc:  # e.g. an ACL without SUBSCRIBE
                log.warning("webhooks wake-up listener stopped (%s); again in 60s", describe(exc))
                ended.wait(60.0)
            except Exception:  # a defect: visible, and the listener goes on (rounds wait meanwhile)
                log.exception("webhooks wake-up listener failed; again in 60s")
                ended.wait(60.0)
            finally:
                pubsub.close()

    def refresh(self, now: float) -> None:
        """Read the endpoints; forget what this worker holds of those removed or changed: their
        clients (closed), their secrets opened (or refused) that no longer sign."""
        self.endpoints = {e.id: e for e in self.deliveries.endpoints.list()}
        self.clients.keep_only(set(self.endpoints))
        signing = {
            (e.id, sealed.sealed)
            for e in self.endpoints.values()
            for sealed in e.active_secrets(now)
        }
        for held in (self._opened, self._refused):
            for key in list(held):  # the send threads may add to it meanwhile
                if key not in signing:
                    held.pop(key, None)

    def report(self) -> None:
        """The loop's health: ok, or failing without the key while endpoints exist (found at
        start or later), or with a key that does not open some endpoint's secret (a warning
        line too, each minute)."""
        if self.sealer is None and self.endpoints:
            if self.rt.clock() - self._no_key_said >= NO_KEY_EVERY:
                self.say_no_key()
            return
        if self.unreadable:
            if self.rt.clock() - self._unreadable_said >= NO_KEY_EVERY:
                self._unreadable_said = self.rt.clock()
                line = wrong_key_line(self.unreadable)
                log.warning(line)
                self.health.failed(LOOP, ConfigError(line))
            return
        self.health.ok(LOOP)

    def say_if_no_key(self) -> None:
        """At start, if endpoints exist and this worker cannot sign: :meth:`say_no_key` (then
        each minute while endpoints exist: :meth:`report`)."""
        if self.sealer is None and self.deliveries.endpoints.list():
            self.say_no_key()

    def say_no_key(self) -> None:
        """A warning line, and the loop's health failing, saying this worker cannot sign."""
        self._no_key_said = self.rt.clock()
        log.warning(no_key_line())
        self.health.failed(LOOP, ConfigError(no_key_line()))

    def in_flight(self) -> int:
        with self.lock:
            return self.active

    # --- Fan-out -----------------------------------------------------------------------------

    def read(self, block_ms: int | None) -> int:
        """Read new result events (waiting up to ``block_ms``) and fan them out: how many."""
        keys = self.rt.shared.keys
        reply = self.rt.shared.redis.xreadgroup(
            WEBHOOK_GROUP, self.consumer, {keys.results: ">"}, count=BATCH, block=block_ms
        )
        entries = [
            entry
            for _, found in cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], reply or [])
            for entry in found
        ]
        if entries:  # read again: an endpoint added while the read waited gets these events
            self.endpoints = {e.id: e for e in self.deliveries.endpoints.list()}
        self.fan_out(entries)
        return len(entries)

    def reclaim(self) -> None:
        """Take over the entries another consumer (a dead worker) left unacknowledged for
        :data:`RECLAIM_IDLE_MS`, and fan them out. Consumers idle for
        :data:`FORGET_CONSUMER_MS` with nothing pending are removed from the group."""
        keys, client = self.rt.shared.keys, self.rt.shared.redis
        reply = client.xautoclaim(
            keys.results, WEBHOOK_GROUP, self.consumer, RECLAIM_IDLE_MS, "0-0", count=BATCH
        )
        entries = cast(list[tuple[str, dict[str, str] | None]], reply[1])
        if entries:
            log.info("took over %d result event(s) for the webhooks", len(entries))
            self.fan_out(entries)
        for consumer in client.xinfo_consumers(keys.results, WEBHOOK_GROUP):
            if consumer["pending"] == 0 and consumer["idle"] > FORGET_CONSUMER_MS:
                client.xgroup_delconsumer(keys.results, WEBHOOK_GROUP, consumer["name"])

    def fan_out(self, entries: Sequence[tuple[str, Mapping[str, str] | None]]) -> None:
        """Create the deliveries of ``entries`` and acknowledge them, in one script."""
        if not entries:
            return
        events = [e for e in (rules.parse_entry(fields or {}) for _, fields in entries) if e]
        endpoints = list(self.endpoints.values())
        sites = self.sites_of(events) if rules.needs_site(endpoints) else {}
        now = self.rt.clock()
        made = rules.fan_out(
            events, endpoints, lambda event: sites.get(str(event.get("request_id")), ""), now
        )
        self.deliveries.fan_out([entry_id for entry_id, _ in entries], made, now, self.cap)

    def sites_of(self, events: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """The site of each event's request (the default site's id for a request that named
        none; a rejected event's entry created no request of its own: no site)."""
        ids = sorted({str(e.get("request_id")) for e in events if e.get("type") != "rejected"})
        if not ids:
            return {}
        pipe = self.rt.shared.redis.pipeline(transaction=False)
        for request_id in ids:
            pipe.hget(self.rt.shared.keys.request(request_id), "site_id")
        default = self.rt.book.default or ""
        return {
            request_id: (str(site) if site else default)
            for request_id, site in zip(ids, pipe.execute(), strict=True)
        }

    # --- Sending -----------------------------------------------------------------------------

    def claim(self, now: float) -> tuple[list[Claimed], float | None]:
        """Take as many due deliveries as the threads have room for, and hand them over."""
        if self.sealer is None:
            return [], None
        room = self.concurrency - self.in_flight()
        if room <= 0:
            return [], None
        self.unreadable = self.cannot_sign(now)
        claimed, next_at = self.deliveries.claim(
            now, self.lease, self.cap, room, skip=self.unreadable
        )
        assert self.pool is not None
        for item in claimed:
            if item.lost:
                self.settle_lost(item)
                continue
            with self.lock:
                self.active += 1
            self.pool.submit(self.deliver, item)
        return claimed, next_at

    def settle_lost(self, claimed: Claimed) -> None:
        """Settle a delivery whose worker died during its attempt (its lease ended): a failed
        attempt on the schedule (:func:`rules.lost`), so that one that kills its worker
        every time ends on the dead-letter list."""
        endpoint = self.endpoint(claimed.endpoint_id)
        if endpoint is None:
            return  # removed: the next claim drops it
        now = self.rt.clock()
        decision = rules.lost(claimed.attempts, now, self.delays, self.random.random)
        log.warning(
            "webhook %s to %s: attempt %d lost with its worker (its lease ended unsettled)",
            claimed.webhook_id,
            endpoint.id,
            claimed.attempts,
        )
        attempted = Attempted(AttemptKind.WORKER_LOST, None, rules.LOST)
        self.settle(endpoint, claimed, decision, attempted, now)

    def deliver(self, claimed: Claimed) -> None:
        """Send one delivery, decide, settle (a thread of the pool)."""
        try:
            endpoint = self.endpoint(claimed.endpoint_id)
            if endpoint is None or endpoint.disabled is not None:
                # Removed or disabled as this worker sees it: nothing sent, nothing counted; the
                # claim that sees it next buries or drops it (or sends it, if enabled again).
                self.deliveries.release(claimed, self.rt.clock(), self.cap)
                return
            with attempt_deadline(self.limit):
                sent = self.attempt(endpoint, claimed)
            now = self.rt.clock()
            if not sent.attempted:  # no request sent: back, nothing counted
                self.deliveries.release(claimed, now + RELEASE_DELAY, self.cap)
                return
            failing_since, last_failure = claimed.failing_since, claimed.last_failure
            if sent.outcome.verdict is not Verdict.DELIVERED:  # as stored now: a 2xx meanwhile
                # ended it
                failing_since, last_failure = self.deliveries.streak(claimed.endpoint_id)
            decision = rules.decide(
                sent.outcome,
                claimed.attempts + 1,
                now,
                failing_since=failing_since,
                delays=self.delays,
                disable_after=self.disable_after,
                random=self.random.random,
                last_failure=last_failure,
                gap=self.gap,
            )
            self.settle(
                endpoint,
                claimed,
                decision,
                Attempted(sent.kind, sent.seconds, sent.outcome.reason),
                now,
            )
        except Exception:  # a defect: its lease brings the delivery back
            log.exception("webhook delivery %s failed", claimed.delivery_id)
        finally:
            with self.lock:
                self.active -= 1
            self.wake.set()

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint as read this round; one added since (another worker fanned out to it
        already) read now; None if it was removed."""
        found = self.endpoints.get(endpoint_id)
        if found is not None:
            return found
        try:
            return self.deliveries.endpoints.get(endpoint_id)
        except UnknownEndpoint:
            return None

    def attempt(self, endpoint: Endpoint, claimed: Claimed) -> Sent:
        """One signed POST of ``claimed`` to ``endpoint``."""
        now = self.rt.clock()
        try:
            secrets = self.secrets(endpoint, now)
        except WebhookError as exc:  # this worker's key: not the endpoint's failure
            return Sent(no_response(str(exc)), AttemptKind.ERROR, None, attempted=False)
        client = self.clients.of(endpoint)
        return send(client, endpoint, claimed.webhook_id, claimed.body, secrets, now)

    def cannot_sign(self, now: float) -> list[str]:
        """The enabled endpoints whose active secrets this worker's key does not open (each
        sealed secret tried once): the claim leaves them to the workers whose key does."""
        found = []
        for endpoint in self.endpoints.values():
            if endpoint.disabled is not None:
                continue
            try:
                self.secrets(endpoint, now)
            except WebhookError:
                found.append(endpoint.id)
        return found

    def secrets(self, endpoint: Endpoint, now: float) -> list[Secret]:
        """The secrets that sign for ``endpoint`` now (opened once each)."""
        assert self.sealer is not None
        found = []
        for sealed in endpoint.active_secrets(now):
            key = (endpoint.id, sealed.sealed)
            refused = self._refused.get(key)
            if refused is not None:
                raise UnreadableSecret(refused)
            secret = self._opened.get(key)
            if secret is None:
                try:
                    secret = self._opened[key] = self.sealer.open(endpoint.id, sealed.sealed)
                except WebhookError as exc:
                    self._refused[key] = str(exc)
                    raise
            found.append(secret)
        return found

    def settle(
        self,
        endpoint: Endpoint,
        claimed: Claimed,
        decision: Decision,
        attempted: Attempted,
        now: float,
    ) -> None:
        """Write the decision; while Redis is away, again until the lease ends (then the
        delivery comes back anyway)."""
        pause, ends = 0.25, time.monotonic() + self.lease
        while True:
            try:
                if decision.settle is Settle.DISABLE:
                    self.deliveries.disable_endpoint(claimed, decision, attempted, now, self.cap)
                    log.warning(
                        "webhook endpoint %s disabled: %s (its pending deliveries are on its "
                        "dead-letter list; pallycon-pack webhooks enable %s, then replay)",
                        endpoint.id,
                        decision.reason,
                        endpoint.id,
                        extra={"fields": {"endpoint_id": endpoint.id}},
                    )
                else:
                    self.deliveries.settle(claimed, decision, attempted, now, self.cap)
                    if (
                        decision.settle is Settle.RETRY
                        and attempted.kind is not AttemptKind.WORKER_LOST
                    ):
                        log.info(
                            retry_line(
                                claimed.webhook_id,
                                endpoint.id,
                                claimed.attempts + 1,
                                attempted.reason or decision.reason,
                                decision.at,
                            ),
                            extra={"fields": {"endpoint_id": endpoint.id}},
                        )
                    if decision.settle is Settle.DEAD:
                        log.warning(
                            "webhook %s to %s dead-lettered: %s",
                            claimed.webhook_id,
                            endpoint.id,
                            decision.reason,
                        )
                return
            except UnknownEndpoint:  # removed during the attempt: its deliveries go with it
                log.info("webhook %s: its endpoint %s was removed", claimed.webhook_id, endpoint.id)
                return
            except REDIS_AWAY as exc:
                if time.monotonic() + pause >= ends:
                    log.warning(
                        "webhook %s not settled: Redis unavailable (%s); it is sent again",
                        claimed.webhook_id,
                        describe(exc),
                    )
                    return
                time.sleep(pause)
                pause = min(pause * 2, 2.0)


def retry_line(
    webhook_id: str, endpoint_id: str, attempt: int, outcome: str, at: float | None
) -> str:
    """A failed attempt, as the worker logs it (never the URL, its query or a secret)."""
    then = iso(at) if at is not None else "unknown"
    return (
        f"webhook {webhook_id} to {endpoint_id}: attempt {attempt} failed ({outcome}); "
        f"next attempt at {then}"
    )


def no_key_line() -> str:
    """Why a worker without the key sends no webhook."""
    return rules.NO_KEY


def wrong_key_line(endpoint_ids: Sequence[str]) -> str:
    """Why a worker sends nothing to ``endpoint_ids``."""
    return (
        f"PALLYCON_WEBHOOK_KEY does not open the secret of webhook endpoint(s) "
        f"{', '.join(sorted(endpoint_ids))}: this worker sends them nothing (their deliveries "
        "wait for a worker with the key that sealed them; or add the endpoint again, or "
        "rotate its secret, with this key)"
    )


def deliver_webhooks(rt: Runtime, consumer: str, stop: threading.Event, health: LoopHealth) -> Any:
    """The webhooks loop, ready to be supervised; the consumer group created first (before
    the worker says it is ready: events written from then on are delivered), unless Redis is
    away (the loop creates it then)."""
    webhooks = Webhooks(rt, consumer, health)
    try:
        webhooks.deliveries.ensure_group()
    except REDIS_AWAY as exc:
        log.warning("webhooks: Redis unavailable at start (%s); the loop waits", describe(exc))
    return lambda: webhooks.run(stop)
