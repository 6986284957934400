"""The two schedules: sorted sets of request ids by when their next step is due.

The submit schedule holds requests to register (or reconcile), in lanes by site and priority
(:mod:`pallycon_store.flow` takes from those); the poll schedule those whose job is being
tracked. Transitions move requests between them (see :mod:`pallycon_store.records`); sweepers
claim what is due, for a lease, and dispatch it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import redis

from pallycon_store.keys import Keys, flow_site
from pallycon_store.record import Record
from pallycon_store.scripts import register

Schedule = Literal["submit", "poll"]

#: Members re-scored per ZADD call inside the claim script (keeps Lua's stack small).
CLAIM_ZADD_CHUNK = 500


class Schedules:
    def __init__(self, client: redis.Redis, keys: Keys, *, default_site: str | None) -> None:
        self.redis = client
        self.keys = keys
        self.default_site = default_site  # PALLYCON_SITE_ID: see keys.flow_site
        self._claim = register(client, "claim")

    def claim_polls(self, now: float, lease: float, limit: int) -> list[str]:
        """Claim up to ``limit`` polls due by ``now`` for ``lease`` seconds (each claimed by
        one caller only; it comes back by itself when the lease ends)."""
        args: list[str | int] = [repr(now), repr(now + lease), limit, CLAIM_ZADD_CHUNK]
        keys = [self.keys.poll_schedule]
        return [str(member) for member in self._claim(keys=keys, args=args)]

    def poll_now(self, request_ids: Sequence[str], now: float) -> None:
        """Make these requests' polls due at ``now`` (those still on the poll schedule)."""
        if request_ids:
            self.redis.zadd(self.keys.poll_schedule, dict.fromkeys(request_ids, now), xx=True)

    def lane(self, record: Record) -> str:
        """The submit lane ``record`` waits on."""
        return self.keys.submit_lane(flow_site(record.site_id, self.default_site), record.priority)

    def defer_submits(self, records: Sequence[Record], until: float) -> None:
        """Move these requests' submit entries (those still on their lane) to ``until``,
        without changing their records: a step still working on them keeps a sweeper off them."""
        lanes: dict[str, list[str]] = {}
        for record in records:
            key = self.lane(record)
            lanes.setdefault(key, []).append(record.request_id)
        if not lanes:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key, ids in lanes.items():
            pipe.zadd(key, dict.fromkeys(ids, until), xx=True)
        pipe.execute()

    def requeue_submits(self, records: Sequence[Record]) -> None:
        """Put these requests (taken from their lanes, not sent) back in their place: due
        since they were created (or re-driven), so that the oldest still goes first. The
        delivery just counted is taken back: the flow held them, they are not a poison."""
        if not records:
            return
        pipe = self.redis.pipeline(transaction=False)
        for record in records:
            key = self.lane(record)
            since = max(record.created_at, record.retried_at)
            pipe.zadd(key, {record.request_id: since}, xx=True)
            pipe.hincrby(self.keys.request(record.request_id), "deliveries", -1)
        pipe.execute()
