"""What the fleet is doing, read from Redis: queue depths, schedules and how late they are, the
intake's backlog, the oldest request in flight and the workers' heartbeats.

Pure reads, a few round trips whatever is in flight (counts and the head of each sorted set,
never a scan), shared by ``pallycon-pack health``, ``stats``, the Prometheus exporter and the
console. Nothing here writes: heartbeats are parsed by :mod:`pallycon_store.heartbeats`, which skips
those of workers gone away (the sweepers drop them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import redis

from pallycon_store import heartbeats
from pallycon_store.events import State
from pallycon_store.flow import Flow, FlowSnapshot
from pallycon_store.heartbeats import Heartbeat
from pallycon_store.keys import INTAKE_GROUP, Keys

IN_FLIGHT = (State.ACCEPTED, State.SUBMITTING, State.SUBMITTED)
SCHEDULES = ("submit", "poll")


@dataclass(frozen=True)
class Schedule:
    """One schedule (sorted set, score = when the entry is due). The submit schedule is the
    sum of its lanes (:mod:`pallycon_store.flow`), where a due entry is waiting for its turn
    (its site's rate, cap or pause), not late."""

    depth: int  # entries
    overdue: int  # entries due before now (not claimed: a claimed entry is due a lease later)
    oldest_due: float | None  # when the most overdue entry was due (None: none overdue)

    def lag(self, now: float) -> float:
        """Seconds the most overdue entry is late (0 when none is)."""
        return max(0.0, now - self.oldest_due) if self.oldest_due is not None else 0.0


@dataclass(frozen=True)
class Intake:
    """The intake stream and its consumer group."""

    length: int  # entries in the stream (handled ones are deleted: all are waiting or pending)
    pending: int  # delivered to a worker, not yet acknowledged
    lag: int  # never delivered to the group (XINFO GROUPS lag; length - pending if unknown)
    group: bool  # the group exists (a worker has started once)

    @property
    def unhandled(self) -> int:
        return self.lag + self.pending


@dataclass(frozen=True)
class InFlight:
    """The unfinished request that has been in its state the longest: the likeliest stuck one
    (a request moving on is re-scored at each change of state, a retried one from its retry)."""

    request_id: str
    state: str
    since: float  # when it entered that state


@dataclass(frozen=True)
class Snapshot:
    now: float
    queues: dict[str, int]  # Celery queue -> messages waiting ("submit", "poll")
    schedules: dict[str, Schedule]  # "submit", "poll"
    intake: Intake
    heartbeats: list[Heartbeat] = field(default_factory=list)
    oldest: InFlight | None = None
    flow: FlowSnapshot | None = None  # each lane's waiting, each site's in flight, the pauses

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "queues": self.queues,
            "schedules": {
                name: {
                    "depth": s.depth,
                    "overdue": s.overdue,
                    "lag_seconds": round(s.lag(self.now), 3),
                }
                for name, s in self.schedules.items()
            },
            "intake": {
                "length": self.intake.length,
                "pending": self.intake.pending,
                "lag": self.intake.lag,
                "unhandled": self.intake.unhandled,
            },
            "heartbeats": [
                {
                    "node": h.node,
                    "loop": h.loop,
                    "age": round(h.age, 1),
                    "failing": h.failing,
                    "error": h.error,
                    "restarts": h.restarts,
                }
                for h in self.heartbeats
            ],
            "longest_in_state": None
            if self.oldest is None
            else {
                "request_id": self.oldest.request_id,
                "state": self.oldest.state,
                "since": self.oldest.since,
                "seconds": round(max(0.0, self.now - self.oldest.since), 3),
            },
        }


class Fleet:
    """Reads of the whole fleet's state; each a bounded number of round trips."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def snapshot(self, now: float, sites: tuple[str, ...] = ()) -> Snapshot:
        """Everything at once: the lanes, one pipeline, the flow's counts, then the intake
        group and the oldest records. ``sites``: stored site ids whose lanes are read even if
        empty."""
        flow = Flow(self.redis, self.keys)
        lanes = flow.lanes(sites)
        keys = [[lane.key for lane in lanes], [self.keys.poll_schedule]]
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(self.keys.submit_queue)
        pipe.llen(self.keys.poll_queue)
        for group in keys:
            for key in group:
                pipe.zcard(key)
                pipe.zcount(key, "-inf", f"({now!r}")
                pipe.zrange(key, 0, 0, withscores=True)
        pipe.hgetall(self.keys.heartbeats)
        for state in IN_FLIGHT:
            pipe.zrange(self.keys.state_index(state), 0, 0, withscores=True)
        (submit_q, poll_q, *rest) = pipe.execute()
        schedules = {}
        for name, group in zip(SCHEDULES, keys, strict=True):
            depth = overdue = 0
            due: float | None = None
            for _ in group:
                size, late, head, *rest = rest
                depth, overdue = depth + int(size), overdue + int(late)
                if head and late:
                    due = min(float(head[0][1]), due if due is not None else float("inf"))
            schedules[name] = Schedule(depth, overdue, due)
        beats, *heads = rest
        return Snapshot(
            now=now,
            queues={"submit": int(submit_q), "poll": int(poll_q)},
            schedules=schedules,
            intake=self.intake(),
            heartbeats=heartbeats.parse(cast(dict[str, str], beats), now),
            oldest=min(
                (
                    InFlight(str(head[0][0]), state, float(head[0][1]))
                    for state, head in zip(IN_FLIGHT, heads, strict=True)
                    if head
                ),
                key=lambda entry: entry.since,
                default=None,
            ),
            flow=flow.snapshot(now, lanes),
        )

    def intake(self) -> Intake:
        """The intake stream's length and its group's pending entries and lag."""
        length = int(self.redis.xlen(self.keys.intake))
        try:
            groups: list[dict[str, Any]] = self.redis.xinfo_groups(self.keys.intake)
        except redis.ResponseError:  # no stream yet
            return Intake(length, 0, length, group=False)
        group = next((g for g in groups if _text(g.get("name")) == INTAKE_GROUP), None)
        if group is None:
            return Intake(length, 0, length, group=False)
        pending = int(group.get("pending") or 0)
        lag = group.get("lag")
        waiting = int(lag) if lag is not None else max(0, length - pending)
        return Intake(length, pending, waiting, group=True)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
