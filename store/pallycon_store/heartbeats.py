"""The workers' heartbeats in Redis: their format, thresholds, the one reader, and pruning.

The hash ``Keys.heartbeats`` holds one field per worker loop, ``<node>/<loop>``, whose value
is a JSON object written by ``pallycon_worker.loops.LoopHealth`` (:func:`encode`): ``node``,
``loop``, ``pid``, ``restarts``, ``ok_at`` (its last good round), ``failing``, ``error`` and
``error_at``; the webhooks loop adds ``signs`` (false: its worker has no
PALLYCON_WEBHOOK_KEY and sends no webhook). A loop stopped on purpose removes its field; a
worker that went away leaves its fields behind, which readers skip after :data:`GONE_AFTER`
and the sweepers' trim (every minute) drops (:func:`prune`).

:func:`read` and :func:`parse` never write; ``pallycon_store.fleet`` reads the hash in its own
pipeline and parses it here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis

from pallycon_store.keys import Keys

#: A loop writes its heartbeat at most this often while all is well, in seconds.
WRITE_EVERY = 5.0
#: A loop whose last good round is older than this is not answering, in seconds
#: (PALLYCON_SWEEP_INTERVAL is at most 10 s, and an intake read blocks for 1 s at most).
STALE_AFTER = 30.0
#: A heartbeat not written for this long is of a worker gone away, in seconds: readers skip
#: it, :func:`prune` drops it.
GONE_AFTER = 3600.0
#: The longest error text kept in a heartbeat read.
MAX_ERROR = 300
#: A loop heard from (a good round or a failure written) within this is alive, in seconds: a
#: loop failing on purpose (the webhooks loop without its key) says so each minute.
HEARD_WITHIN = 150.0


def field(node: str, loop: str) -> str:
    """The hash field of one loop of one worker."""
    return f"{node}/{loop}"


def encode(state: Mapping[str, Any]) -> str:
    """A loop's state as stored (the writer's keys: see the module docstring)."""
    return json.dumps(dict(state))


@dataclass(frozen=True)
class Heartbeat:
    """One worker loop's heartbeat, as read at some moment."""

    node: str
    loop: str
    age: float  # seconds since its last good round
    failing: bool
    error: str
    restarts: int
    #: Seconds since it was last written (a good round or a failure).
    heard: float = 0.0
    #: False when the loop said it cannot sign (the webhooks loop without its key).
    signs: bool = True

    def healthy(self, stale_after: float = STALE_AFTER) -> bool:
        """Not failing, and a good round within ``stale_after`` seconds."""
        return not self.failing and self.age <= stale_after


def _last_heard(value: str) -> tuple[dict[str, Any], float, float] | None:
    """A stored value's state, ``ok_at`` and when it was last written; None if unreadable."""
    try:
        state = json.loads(value)
        ok_at = float(state.get("ok_at", 0.0))
        last = max(ok_at, float(state.get("error_at", 0.0)))
    except (ValueError, TypeError, AttributeError):
        return None
    return state, ok_at, last


def parse(raw: Mapping[str, str], now: float) -> list[Heartbeat]:
    """The heartbeats of loops heard of within :data:`GONE_AFTER`, sorted by node and loop;
    unreadable ones are skipped (pure)."""
    found = []
    for name, value in raw.items():
        heard = _last_heard(value)
        if heard is None:
            continue
        state, ok_at, last = heard
        try:
            restarts = int(state.get("restarts") or 0)
        except (ValueError, TypeError):
            continue
        if now - last > GONE_AFTER:
            continue
        node, _, loop = _text(name).rpartition("/")
        found.append(
            Heartbeat(
                node=str(state.get("node") or node),
                loop=str(state.get("loop") or loop),
                age=max(0.0, now - ok_at),
                failing=bool(state.get("failing")),
                error=str(state.get("error") or "")[:MAX_ERROR],
                restarts=restarts,
                heard=max(0.0, now - last),
                signs=state.get("signs") is not False,
            )
        )
    return sorted(found, key=lambda h: (h.node, h.loop))


def read(client: redis.Redis, keys: Keys, now: float) -> list[Heartbeat]:
    """Every loop's heartbeat (:func:`parse` of the hash; writes nothing)."""
    return parse(cast(dict[str, str], client.hgetall(keys.heartbeats)), now)


def gone(raw: Mapping[str, str], now: float) -> list[str]:
    """The fields of heartbeats last written more than :data:`GONE_AFTER` ago (pure; an
    unreadable value is left alone: no writer of this version made it)."""
    old = []
    for name, value in raw.items():
        heard = _last_heard(value)
        if heard is not None and now - heard[2] > GONE_AFTER:
            old.append(name)
    return old


def prune(client: redis.Redis, keys: Keys, now: float) -> int:
    """Drop the heartbeats of workers gone away (:func:`gone`); how many."""
    old = gone(cast(dict[str, str], client.hgetall(keys.heartbeats)), now)
    return int(client.hdel(keys.heartbeats, *old)) if old else 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
