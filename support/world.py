"""The product's in-process pieces for the middle-tier tests: a producer on a worker runtime's
Redis state, so that a test admits requests by the path the product takes
(``Producer.submit_many``)."""

from __future__ import annotations

from collections.abc import Callable

from pallycon_producers.api import Producer
from pallycon_worker.runtime import Runtime


def producer_on(rt: Runtime, clock: Callable[[], float] | None = None) -> Producer:
    """A producer on ``rt``'s Redis state and settings (its limits); ``clock``: the runtime's
    unless given. It sends no task: it records requests on their submit lanes."""
    settings = rt.settings
    return Producer(
        rt.shared.records,
        rt.shared.durability,
        max_api_json=settings.max_api_json_bytes,
        max_api_json_any_site=settings.max_api_json_bytes_any_site,
        clock=clock or rt.clock,
    )
