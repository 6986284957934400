"""The product's in-process pieces for the middle-tier tests: a Celery stand-in that records
the tasks it is asked to send, and a producer on a worker runtime's Redis state, so that a test
admits requests by the path the product takes (``Producer.submit_many``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pallycon_producers.api import Producer
from pallycon_worker.runtime import Runtime


@dataclass
class StubApp:
    """Records each task sent (its name and arguments) instead of sending it."""

    sent: list[tuple[str, list[Any]]] = field(default_factory=list)

    def send_task(self, name: str, args: list[Any] | None = None, **_: Any) -> None:
        self.sent.append((name, list(args or [])))


def producer_on(rt: Runtime, app: StubApp, clock: Callable[[], float] | None = None) -> Producer:
    """A producer on ``rt``'s Redis state and settings (its limits, its lease as the retry
    time), sending its tasks to ``app``; ``clock``: the runtime's unless given."""
    settings = rt.settings
    del app  # a producer sends no task: it records requests on their submit lanes
    return Producer(
        rt.shared.records,
        rt.shared.durability,
        max_api_json=settings.max_api_json_bytes,
        max_api_json_any_site=settings.max_api_json_bytes_any_site,
        clock=clock or rt.clock,
    )
