"""Figure 6: hostile API answers; each ends in a retry or a clear failure, never a crash or hang."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from pallycon.client import ClientOptions, PallyConClient
from pallycon.models import JobListRequest
from support.samples import REGION, SAMPLE_SITE

pytestmark = [pytest.mark.integration, pytest.mark.heavy]


def test_figure_6_hostile_responses(stack_factory, worker_factory, figure):
    """30 % of all answers hostile for 20 s (non-JSON, truncated, missing fields, wrong types,
    10 MB, unknown code); then honest. Every request ends; none has two jobs; no crash."""
    stack = stack_factory("--job-seconds", "2", "--seed", "6", submit_deadline=120.0)
    worker = worker_factory(stack.settings, concurrency=4)
    stack.emulator.set_faults(hostile_rate=0.3)
    marker = f"hostile-{time.monotonic_ns()}"
    ids = [stack.producer.submit(stack.body(f"{marker}-{n}")) for n in range(60)]
    time.sleep(20)
    stack.emulator.set_faults()
    records = stack.wait_final(ids, timeout=240)
    counts = stack.emulator.control("stats")["counts"]
    hostile = {k.removeprefix("fault hostile "): v for k, v in counts.items() if "hostile" in k}
    with PallyConClient(SAMPLE_SITE, ClientOptions(base_url=stack.emulator.url)) as client:
        query = JobListRequest(
            region=REGION, search_keyword=marker, search_keyword_type="cid", page_unit=500
        )
        names = Counter(job.job_name for job in client.iter_jobs(query))
    outcomes = Counter(
        r.state.value if r.state.value == "completed" else f"failed {r.error_code}"
        for r in records.values()
    )
    log = worker.log.read_text(errors="replace")
    figure("6 hostile responses", requests=len(ids), outcomes=dict(outcomes), hostile_answers=hostile,
           max_jobs_per_request=max(names.values()), worker_restarts=log.count(" ready.") - 1)  # fmt: skip
    assert sum(hostile.values()) >= 20
    assert max(names.values()) == 1  # never two remote jobs for one request
    for record in records.values():
        if record.state.value == "completed":
            assert names[record.job_name] == 1
        else:  # a clear failure: the unknown code, refused before anything was created
            assert record.error_code == "Z9999"
            assert names[record.job_name] == 0
    assert worker.process is not None
    assert worker.process.poll() is None
    assert log.count(" ready.") == 1
