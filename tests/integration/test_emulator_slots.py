"""The emulator's slots (``--slots``: the most jobs of one site working at once) and its
Console-style stop (``POST /_emulator/jobs/{id}/stop``), over real HTTP: job lists, callbacks and
``/_emulator/stats`` follow each job's timeline from when it got its slot."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pallycon.client import ClientOptions, PallyConClient
from pallycon.codes import parse_status
from pallycon.models import JobInfo, JobListRequest, JobRegisterRequest, validate_request
from support.emulator import RunningEmulator, start_thread_emulator
from support.env import site_env
from support.processes import start_emulator
from support.samples import REGION, SAMPLE_SITE, job_body, storage_request
from support.sink import running_sink

pytestmark = pytest.mark.integration

SITE = SAMPLE_SITE.site_id


def _register(client: PallyConClient, count: int) -> list[str]:
    """A storage and ``count`` jobs on it, registered in turn: their job IDs."""
    storage_id = client.register_storage(storage_request()).storage_id
    ids = []
    for number in range(count):
        body = job_body(content_id=f"slot-{number}", protect_type=["watermark"])
        body["storage"]["input"]["storage_id"] = body["storage"]["output"]["storage_id"] = (
            storage_id
        )
        job_id = client.register_job(validate_request(JobRegisterRequest, body)).job_id
        assert job_id
        ids.append(job_id)
    return ids


def _jobs(client: PallyConClient) -> dict[str, JobInfo]:
    return {job.job_id: job for job in client.list_jobs(JobListRequest(region=REGION)).data}


def _slots(emulator: RunningEmulator) -> dict[str, Any]:
    """The site's slots in the stats: slots, working, waiting, working_peak."""
    found: dict[str, Any] = emulator.control("stats")["slots"][SITE]
    return found


def _poll(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Call ``check`` until it answers something true; that answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = check()
        if answer:
            return answer
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_jobs_beyond_the_slots_wait_in_wm000_and_run_in_turn(tmp_path: Path):
    """Two slots, five jobs: never more than two working; each later job starts once an
    earlier one has ended, runs its whole sequence, and calls back; the peak is two."""
    with running_sink() as sink:
        emulator = start_thread_emulator(
            "--job-seconds", "1.5", "--callback-url", sink.url,
            env=site_env(), cwd=tmp_path, slots=2,
        )  # fmt: skip
        try:
            with PallyConClient(SAMPLE_SITE, ClientOptions(base_url=emulator.url)) as client:
                ids = _register(client, 5)
                assert _slots(emulator)["waiting"] >= 1  # five jobs, two slots
                seen: dict[str, list[str]] = {job_id: [] for job_id in ids}
                working: list[int] = []

                def all_ended() -> dict[str, JobInfo]:
                    jobs = _jobs(client)
                    working.append(_slots(emulator)["working"])
                    for job_id, job in jobs.items():
                        if not seen[job_id] or seen[job_id][-1] != job.status:
                            seen[job_id].append(job.status)
                    done = all(parse_status(job.status).terminal for job in jobs.values())
                    return jobs if done else {}

                jobs = _poll(all_ended, "five jobs on two slots ending")
            sink.wait_for(lambda _: len(sink.bodies) == 5)
            stats = _slots(emulator)
        finally:
            emulator.stop()
    assert max(working) <= 2
    assert stats == {"slots": 2, "working": 0, "waiting": 0, "working_peak": 2}
    assert {seen[job_id][-1] for job_id in ids} == {"WM030"}
    ended = [jobs[job_id].update_date for job_id in ids]
    started = [jobs[job_id].start_date for job_id in ids]
    for later, earlier in ((2, 0), (3, 1), (4, 2)):  # first registered, first served
        assert started[later] >= ended[earlier], (later, started, ended)
    assert sorted(body["job_id"] for body in sink.bodies) == [int(job_id) for job_id in ids]
    assert {body["error_code"] for body in sink.bodies} == {"0000"}


def test_a_stopped_job_goes_wm100_then_wm200_and_frees_its_slot(tmp_path: Path):
    """One slot, three long jobs: stopping the working one shows WM100, then WM200 (terminal),
    calls back with WM200 and gives its slot to the next; one stopped while waiting never
    takes one; a stop of an ended, stopping or unknown job is refused in one line of JSON."""
    with running_sink() as sink:
        emulator = start_thread_emulator(
            "--job-seconds", "120", "--stop-seconds", "1", "--callback-url", sink.url,
            env=site_env(), cwd=tmp_path, slots=1,
        )  # fmt: skip
        try:
            with PallyConClient(SAMPLE_SITE, ClientOptions(base_url=emulator.url)) as client:
                first, second, third = _register(client, 3)
                assert _slots(emulator) == {
                    "slots": 1, "working": 1, "waiting": 2, "working_peak": 1
                }  # fmt: skip
                answer = emulator.stop_job(first)
                assert answer == {"site_id": SITE, "job_id": int(first), "status": "WM100"}
                refused = httpx.post(f"{emulator.url}/_emulator/jobs/{first}/stop", timeout=5)
                assert (refused.status_code, refused.json()) == (
                    409, {"error": f"job {first} is already stopping (WM100)"}
                )  # fmt: skip
                statuses: list[str] = []

                def stopped() -> bool:
                    status = _jobs(client)[first].status
                    if not statuses or statuses[-1] != status:
                        statuses.append(status)
                    return status == "WM200"

                _poll(stopped, f"job {first} stop completing")
                assert statuses[0] == "WM100"
                stop_callback = sink.wait_for(lambda body: body["job_id"] == int(first))
                assert _slots(emulator) == {
                    "slots": 1, "working": 1, "waiting": 1, "working_peak": 1
                }  # fmt: skip
                emulator.stop_job(third, site=SITE)  # waiting: it never takes a slot
                _poll(lambda: _jobs(client)[third].status == "WM200", f"job {third} stopped")
                jobs = _jobs(client)
                assert (jobs[third].start_date, jobs[second].start_date) == (None, None)
                assert _slots(emulator)["waiting"] == 0
                query = JobListRequest(region=REGION, search_status="stop")
                stopped_ids = {job.job_id for job in client.list_jobs(query).data}
                assert stopped_ids == {first, third}
            refusals = [
                httpx.post(f"{emulator.url}/_emulator/jobs/{path}", timeout=5)
                for path in (f"{first}/stop", "9999/stop", f"{second}/stop?site=NOPE")
            ]
            counted = emulator.control("stats")["sites"][SITE]["jobs stopped"]
        finally:
            emulator.stop()
    assert stop_callback["error_code"] == "WM200"
    assert stop_callback["error_message"] == "Packaging stop complete"
    assert [(r.status_code, r.json()) for r in refusals] == [
        (409, {"error": f"job {first} has ended (WM200)"}),
        (404, {"error": f"site {SITE} has no job 9999"}),
        (404, {"error": f"unknown site NOPE (sites served: {SITE})"}),
    ]
    assert all(len(r.text.splitlines()) == 1 for r in refusals)
    assert counted == 2


def test_the_emulator_process_takes_slots_and_stops_jobs(tmp_path: Path):
    """``pallycon-pack emulator --slots`` as a process: the second job waits; a stop with no
    delay ends the first at once (WM200) and the second takes its slot."""
    emulator = start_emulator(
        "--job-seconds", "120", "--stop-seconds", "0", env=site_env(), cwd=tmp_path, slots=1
    )
    try:
        with PallyConClient(SAMPLE_SITE, ClientOptions(base_url=emulator.url)) as client:
            first, _ = _register(client, 2)
            assert _slots(emulator) == {"slots": 1, "working": 1, "waiting": 1, "working_peak": 1}
            assert emulator.stop_job(first)["status"] == "WM200"
            assert _jobs(client)[first].status == "WM200"
            assert _slots(emulator) == {"slots": 1, "working": 1, "waiting": 0, "working_peak": 1}
    finally:
        emulator.stop()


def test_without_slots_every_job_works_at_once(emulator_factory):
    """No --slots: unlimited (``slots`` null), no job waits, all of them count as working."""
    emulator = emulator_factory("--job-seconds", "120")
    with PallyConClient(SAMPLE_SITE, ClientOptions(base_url=emulator.url)) as client:
        _register(client, 3)
    assert _slots(emulator) == {"slots": None, "working": 3, "waiting": 0, "working_peak": 3}
