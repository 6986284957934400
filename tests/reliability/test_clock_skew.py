"""Figure 12: a worker whose clock is 10 minutes slow. The API refuses its timestamps (A1002):
each request backs off, says why, and completes once the clock is right.

(Slow, not fast: the schedule entries a worker writes follow its own clock, so after a fast
clock is fixed they come due as much later as it was fast: docs/OPERATIONS.md.)"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import libfaketime  # type: ignore[import-untyped]
import pytest

from support.env import clean_env
from support.processes import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

SKEW = -600
WINDOW = 20.0


def _fast_clock_worker(settings, log: Path) -> WorkerProcess:
    """A real worker process whose clock (time of day, not monotonic) is off by SKEW seconds."""
    preload = libfaketime.get_reload_information()[1]  # LD_PRELOAD and where to find it
    env = clean_env(**settings.environment()) | preload | {"FAKETIME": f"{SKEW:+d}"}
    args = WorkerProcess.command(concurrency=2)
    return WorkerProcess(args, env, log).start().wait_ready()


def _skew_said(text: str) -> int | None:
    """The skew a message states, if it is SKEW give or take 10 s (the Date header has whole
    seconds, and the answer's time and the decision's are not the same instant)."""
    found = re.search(r"this machine's clock looks ([+-]\d+) s off", text)
    said = int(found.group(1)) if found else None
    return said if said is not None and abs(said - SKEW) <= 10 else None


def test_figure_12_clock_skew_backs_off_says_so_and_recovers(
    stack_factory, worker_factory, tmp_path, figure
):
    """20 requests through a worker 600 s slow, for 20 s, against an API that allows 60 s."""
    stack = stack_factory(
        "--job-seconds", "1", "--max-skew-seconds", "60", retry_base=1.0, retry_cap=60.0
    )
    skewed = _fast_clock_worker(stack.settings, tmp_path / "skewed.log")
    try:
        ids = [stack.producer.submit(stack.body(f"skew-{n}")) for n in range(20)]
        refused: list[int] = []
        for _ in range(int(WINDOW / 5)):
            time.sleep(5)
            refused.append(stack.emulator.control("stats")["counts"].get("error A1002", 0))
    finally:
        skewed.stop()
    per_window = [b - a for a, b in zip([0, *refused], refused, strict=False)]
    records = stack.producer.records.get_many(ids)
    said = Counter(r.last_error.split(";")[-1].strip()[:60] for r in records.values())
    log = skewed.log.read_text(errors="replace")
    worker_factory(stack.settings)  # the clock is fixed
    done = stack.wait_final(ids, timeout=120)
    figure("12 clock skew", skew_s=SKEW, requests=len(ids), refused_per_5s=per_window,
           last_error=said.most_common(1)[0][0],
           completed_after_fix=sum(r.state.value == "completed" for r in done.values()))  # fmt: skip
    assert not any(r.state.final for r in records.values())  # backing off, not given up
    for record in records.values():
        assert record.last_code == "A1002"
        assert _skew_said(record.last_error) is not None
        assert "fix the clock (NTP)" in record.last_error
    assert "the API refused our timestamp" in log
    assert _skew_said(log) is not None
    assert per_window[0] >= 20  # every request tried at once ...
    assert sum(per_window[-2:]) < per_window[0]  # ... and less and less often
    assert sum(per_window) < 20 * 7  # at most about log2(window) attempts each
    assert {r.state.value for r in done.values()} == {"completed"}
