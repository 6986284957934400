"""The exporter's scrapes share one collection: a scrape that gives up at its deadline answers
``pallycon_pack_up 0`` and leaves the collection to the others (pure logic: a stand-in store
and a slow collection, no Redis)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from pallycon_pack.web.exporter import FleetCollector


class _Slow(FleetCollector):
    """A collection that lasts until ``release`` is set, counting how many ran."""

    def __init__(self) -> None:
        super().__init__(SimpleNamespace(redis=None, keys=None), deadline=0.2)  # type: ignore[arg-type]
        self.release = threading.Event()
        self.runs = 0

    def _read(self) -> Iterator[Metric]:
        self.runs += 1
        self.release.wait(30)
        yield GaugeMetricFamily("pallycon_pack_figure", "A figure.", value=1.0)


def _up(metrics: list[Any]) -> float:
    return float(next(m.samples[0].value for m in metrics if m.name == "pallycon_pack_up"))


def test_scrapes_past_the_deadline_answer_up_0_and_do_not_cancel_the_collection() -> None:
    """Three scrapes 50 ms apart on a collection slower than the deadline: each answers up 0
    (none fails), one collection ran for all, and once it ends the next scrape gets figures."""
    collector = _Slow()

    async def three() -> list[list[Any]]:
        async def later(delay: float) -> list[Any]:
            await asyncio.sleep(delay)
            return await collector.scrape()

        return list(await asyncio.gather(*(later(n * 0.05) for n in range(3))))

    answers = asyncio.run(three())
    assert [_up(a) for a in answers] == [0.0, 0.0, 0.0]
    first = collector.collection()
    collector.release.set()
    assert first.result(timeout=30)  # the shared collection ended with its figures
    assert collector.runs == 1
    assert _up(asyncio.run(collector.scrape())) == 1.0
