"""How long a fault held requests up, from their events: the delay each request suffered beyond
its own time, and the tail after the fault ended.

A request's **latency** is the time from its ``accepted`` event to its final one. Its **own
time** is the latency of the request at the same place in the same run without the fault (the
baseline): it holds the job's duration, the wait for its turn under the API rate, the polls.
Then, for request ``n`` accepted at ``a``, ended at ``e``, baseline latency ``b``:

- **extra delay** ``max(0, (e - a) - b)``: what the fault cost it;
- **tail after the fault** (only for a request still open when the fault ended, at ``E``)
  ``max(0, e - max(E, a + b))``: how long after both the fault's end and its own time it ended.
  0 means it ended as soon as both allowed.

Event times are the workers' clocks (``ts``), the fault's end the test's: one machine's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pallycon_producers.api import Producer

#: The event types that end a request.
FINAL = frozenset({"completed", "failed", "cancelled", "stopped"})


@dataclass(frozen=True)
class Timeline:
    """One request's events: ``(ts, type)`` oldest first."""

    events: tuple[tuple[float, str], ...]

    @property
    def accepted(self) -> float:
        return next(ts for ts, kind in self.events if kind == "accepted")

    @property
    def ended(self) -> float:
        return next(ts for ts, kind in reversed(self.events) if kind in FINAL)

    @property
    def latency(self) -> float:
        return self.ended - self.accepted

    def describe(self, origin: float) -> str:
        """``type@seconds`` after ``origin`` for each event (repeated progress events merged)."""
        shown: list[str] = []
        for ts, kind in self.events:
            if shown and kind == "progress" and shown[-1].startswith("progress"):
                continue
            shown.append(f"{kind}@{ts - origin:.1f}")
        return " ".join(shown)


def timelines(producer: Producer, ids: list[str]) -> dict[str, Timeline]:
    """The timeline of each of ``ids`` that has events, from the result stream."""
    found: dict[str, list[tuple[float, str]]] = {}
    wanted = set(ids)
    for _, event in producer.events(count=10_000_000):
        if event["request_id"] in wanted:
            ts = datetime.fromisoformat(event["ts"]).timestamp()
            found.setdefault(event["request_id"], []).append((ts, event["type"]))
    return {rid: Timeline(tuple(sorted(events))) for rid, events in found.items()}


def spread(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of ``values`` (seconds, one decimal); zeros for none."""
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": pick(0.5), "p99": pick(0.99), "max": round(ordered[-1], 1)}


@dataclass(frozen=True)
class Delay:
    """One request's delays (see the module's docstring); ``after_end`` None if it had ended
    before the fault did."""

    index: int
    extra: float
    after_end: float | None


def delays(
    accepted: list[float], ended: list[float], baseline: list[float], fault_end: float
) -> list[Delay]:
    """The delays of requests ``0..n-1`` of a run (their accepted and end times) against the
    latencies of the same requests in a run without the fault."""
    found = []
    for n, (a, e, b) in enumerate(zip(accepted, ended, baseline, strict=True)):
        after = max(0.0, e - max(fault_end, a + b)) if e > fault_end else None
        found.append(Delay(n, max(0.0, e - a - b), after))
    return found


def summary(found: list[Delay], goal: float) -> dict[str, Any]:
    """The figure: extra delay over every request, the tail after the fault over those still
    open at its end, and how many went past ``goal`` seconds of that tail."""
    tails = [d.after_end for d in found if d.after_end is not None]
    return {
        "extra_delay_s": spread([d.extra for d in found]),
        "open_at_fault_end": len(tails),
        "tail_after_fault_s": spread(tails),
        f"tail_over_{goal:g}s": sum(t > goal for t in tails),
    }
