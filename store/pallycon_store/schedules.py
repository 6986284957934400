"""The two schedules: sorted sets of request ids by when their next step is due.

The submit schedule holds requests to register (or reconcile); the poll schedule those whose
job is being tracked. Transitions move requests between them (see :mod:`pallycon_store.records`);
sweepers claim what is due here, for a lease, and dispatch it.
"""

from __future__ import annotations

from typing import Literal

import redis

from pallycon_store.keys import Keys
from pallycon_store.scripts import register

Schedule = Literal["submit", "poll"]

#: Members re-scored per ZADD call inside the claim script (keeps Lua's stack small).
CLAIM_ZADD_CHUNK = 500


class Schedules:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._claim = register(client, "claim")

    def key(self, schedule: Schedule) -> str:
        return self.keys.submit_schedule if schedule == "submit" else self.keys.poll_schedule

    def claim(self, schedule: Schedule, now: float, lease: float, limit: int) -> list[str]:
        """Claim up to ``limit`` requests due by ``now`` for ``lease`` seconds (each claimed by
        one caller only; it comes back by itself when the lease ends)."""
        args: list[str | int] = [repr(now), repr(now + lease), limit, CLAIM_ZADD_CHUNK]
        return [str(member) for member in self._claim(keys=[self.key(schedule)], args=args)]

    def defer(self, schedule: Schedule, request_ids: list[str], until: float) -> None:
        """Move these requests' entries (those still on ``schedule``) to ``until``, without
        changing their records: a step still working on them keeps a sweeper off them."""
        if request_ids:
            self.redis.zadd(self.key(schedule), dict.fromkeys(request_ids, until), xx=True)
