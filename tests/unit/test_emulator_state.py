"""The emulator's pure core: job timeline, slots and stops, search options, paging, dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pallycon.codes import packaging_error, status_sequence
from pallycon.models import JobListRequest, JobRegisterRequest, validate_request
from pallycon_emulator.state import (
    Job,
    SlotUse,
    Store,
    job_matches,
    offset,
    page,
    render_date,
    seat,
    slot_use,
    stop,
    stop_refused,
)
from support.samples import job_body

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _job(job_id: int = 1, *, drm: bool = False, failing: bool = False, **body) -> Job:
    protect = ["watermark", "drm"] if drm else ["watermark"]
    request = validate_request(JobRegisterRequest, job_body(protect_type=protect, **body))
    failure = packaging_error("WM900013") if failing else None
    return Job(job_id, request, T0, duration=10.0, failure=failure)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_job_walks_the_whole_sequence_in_equal_steps():
    """Every status of the sequence is visited once, in order, ending WM030 at duration."""
    job = _job()
    seen = [job.status(_at(t / 10)) for t in range(101)]
    visited = list(dict.fromkeys(seen))
    assert tuple(visited) == status_sequence(drm=False)
    assert job.status(_at(9.99)) != "WM030"
    assert job.status(_at(10)) == "WM030"


def test_drm_jobs_pass_the_drm_steps():
    """With DRM, WM023100 and WM023200 appear before uploading."""
    job = _job(drm=True)
    visited = list(dict.fromkeys(job.status(_at(t / 10)) for t in range(101)))
    assert tuple(visited) == status_sequence(drm=True)


def test_a_job_with_missing_input_fails_while_downloading():
    """It reaches WM021100, then ends WM999 when a good job would end."""
    job = _job(failing=True)
    visited = list(dict.fromkeys(job.status(_at(t / 10)) for t in range(101)))
    assert visited == ["WM000", "WM010", "WM020", "WM021100", "WM999"]


def test_dates_follow_the_timeline():
    """start_date is unset while ready; update_date is when the status last changed."""
    job = _job()
    assert job.start_date(_at(0.5)) is None
    assert job.start_date(_at(5)) == _at(10 / 9)
    assert job.changed_at(_at(10)) == _at(10)


@pytest.mark.parametrize("failing", [False, True])
def test_a_job_has_ended_only_in_its_last_status(failing):
    """ended() (which lets the job list keep the entry) holds from the end of the sequence on."""
    job = _job(failing=failing)
    assert not any(job.ended(_at(t)) for t in (0, 5, 9.9))
    assert all(job.ended(_at(t)) for t in (10, 11, 1000))
    assert job.status(_at(10)) == ("WM999" if failing else "WM030")


def test_zero_duration_jobs_are_done_at_once():
    """--job-seconds 0 completes on registration."""
    job = Job(1, _job().request, T0, duration=0)
    assert job.status(T0) == "WM030"


# --- Slots and stops ---------------------------------------------------------------------------


def _site(slots: int, *registered: float, failing: tuple[int, ...] = ()) -> Store:
    """A site whose jobs (ids 1, 2, ...; 10 s each) were registered at these seconds."""
    store = Store()
    for job_id, seconds in enumerate(registered, start=1):
        job = _job(job_id, failing=job_id in failing)
        job.reg_date = _at(seconds)
        seat(job, store.slots_free, slots)
        store.jobs[job_id] = job
    return store


def _starts(store: Store) -> list[float]:
    return [(job.run_start - T0).total_seconds() for job in store.jobs.values()]


@pytest.mark.parametrize(
    ("slots", "registered", "starts"),
    [
        (0, [0, 0, 0], [0, 0, 0]),
        (2, [0, 0, 0], [0, 0, 10]),
        (2, [0, 0, 0, 0, 0], [0, 0, 10, 10, 20]),
        (1, [0, 3, 25], [0, 10, 25]),
        (2, [0, 1, 2, 15], [0, 1, 10, 15]),
        (3, [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 10, 10, 10, 20]),
    ],
    ids=["unlimited", "third-waits", "in-turn", "free-slot-at-once", "first-free-slot", "three"],
)
def test_jobs_beyond_the_slots_wait_first_registered_first_served(slots, registered, starts):
    """A job starts at its registration while a slot is free, else when the first one frees."""
    assert _starts(_site(slots, *registered)) == starts


def test_a_waiting_job_is_ready_until_its_slot_then_walks_its_sequence():
    """Its whole timeline (statuses, dates, end) is shifted to when it got its slot."""
    waiting = _site(1, 0, 0).jobs[2]
    assert waiting.status(_at(9.99)) == "WM000"
    assert waiting.start_date(_at(9.99)) is None
    assert waiting.changed_at(_at(9.99)) == _at(10)
    assert waiting.status(_at(11.2)) == "WM010"
    assert waiting.start_date(_at(15)) == _at(10 + 10 / 9)
    assert not waiting.ended(_at(19.99))
    assert (waiting.status(_at(20)), waiting.end_date) == ("WM030", _at(20))


def test_a_failing_job_holds_its_slot_until_it_ends():
    """Missing input: the next job waits for its WM999 as for a WM030."""
    store = _site(1, 0, 0, failing=(1,))
    assert store.jobs[1].status(_at(10)) == "WM999"
    assert _starts(store) == [0, 10]


def test_a_stopped_job_is_stopping_then_stopped():
    """WM100 from the stop, WM200 (terminal) stop_seconds later; dates follow."""
    store = _site(0, 0)
    job = store.jobs[1]
    stop(store, job, _at(4), stop_seconds=1, slots=0)
    assert [job.status(_at(t)) for t in (3.9, 4, 4.9, 5, 100)] == [
        "WM021100", "WM100", "WM100", "WM200", "WM200"
    ]  # fmt: skip
    assert [job.ended(_at(t)) for t in (4.9, 5)] == [False, True]
    assert (job.changed_at(_at(4.5)), job.changed_at(_at(6))) == (_at(4), _at(5))
    assert job.start_date(_at(6)) == _at(10 / 9)
    assert job.end_date == _at(5)


@pytest.mark.parametrize(
    ("stopped", "at", "stop_seconds", "starts", "statuses_at_12"),
    [
        (1, 4, 1, [0, 5, 15], ["WM200", "WM022200", "WM000"]),
        (1, 4, 0, [0, 4, 14], ["WM200", "WM024100", "WM000"]),
        (2, 2, 1, [0, 2, 10], ["WM030", "WM200", "WM010"]),
        (3, 2, 1, [0, 10, 2], ["WM030", "WM010", "WM200"]),
        (2, 12, 1, [0, 10, 13], ["WM030", "WM100", "WM000"]),
    ],
    ids=["working", "at-once", "waiting-next", "waiting-last", "working-second"],
)
def test_a_stop_frees_the_slot_for_the_next_in_line(
    stopped, at, stop_seconds, starts, statuses_at_12
):
    """One slot, three jobs registered at 0: a working job's slot frees when its stop
    completes; a job stopped while waiting never takes one (its start is its stop)."""
    store = _site(1, 0, 0, 0)
    stop(store, store.jobs[stopped], _at(at), stop_seconds=stop_seconds, slots=1)
    assert _starts(store) == starts
    assert [job.status(_at(12)) for job in store.jobs.values()] == statuses_at_12


def test_a_job_stopped_while_waiting_never_started():
    """No start_date, no slot held, and it is not waiting any more."""
    store = _site(1, 0, 0)
    waiting = store.jobs[2]
    stop(store, waiting, _at(3), stop_seconds=1, slots=1)
    assert waiting.start_date(_at(100)) is None
    assert not waiting.holds_slot
    assert slot_use(store.jobs.values(), _at(3.5)) == SlotUse(working=1, waiting=0, working_peak=1)


@pytest.mark.parametrize(
    ("seconds", "stopped_at", "refusal"),
    [
        (5, None, None),
        (10, None, "job 1 has ended (WM030)"),
        (4.5, 4, "job 1 is already stopping (WM100)"),
        (5, 4, "job 1 has ended (WM200)"),
    ],
    ids=["working", "done", "stopping", "stopped"],
)
def test_only_a_job_that_has_not_ended_nor_been_stopped_can_stop(seconds, stopped_at, refusal):
    """stop_refused says why, naming the job and its status."""
    store = _site(0, 0)
    if stopped_at is not None:
        stop(store, store.jobs[1], _at(stopped_at), stop_seconds=1, slots=0)
    assert stop_refused(store.jobs[1], _at(seconds)) == refusal


def test_a_waiting_job_can_stop():
    """A job still waiting for its slot (WM000) can be stopped."""
    assert stop_refused(_site(1, 0, 0).jobs[2], _at(5)) is None


@pytest.mark.parametrize(
    ("slots", "registered", "now", "use"),
    [
        (2, [0] * 5, 5, SlotUse(working=2, waiting=3, working_peak=2)),
        (2, [0] * 5, 25, SlotUse(working=1, waiting=0, working_peak=2)),
        (2, [0] * 5, 35, SlotUse(working=0, waiting=0, working_peak=2)),
        (0, [0] * 5, 5, SlotUse(working=5, waiting=0, working_peak=5)),
        (0, [0, 2, 4, 20], 21, SlotUse(working=1, waiting=0, working_peak=3)),
        (0, [0, 10, 20], 25, SlotUse(working=1, waiting=0, working_peak=1)),
        (0, [0, 10, 30], 25, SlotUse(working=0, waiting=0, working_peak=1)),
    ],
    ids=[
        "filled",
        "draining",
        "drained",
        "unlimited",
        "peak-past",
        "end-to-end",
        "registered-later",
    ],
)
def test_slot_use_counts_working_waiting_and_the_peak_so_far(slots, registered, now, use):
    """Working: holding a slot now; waiting: not yet given one; the peak counts up to now only
    (a slot freed at t and taken at t is one job working, not two)."""
    assert slot_use(_site(slots, *registered).jobs.values(), _at(now)) == use


def test_jobs_that_take_no_time_never_work():
    """--job-seconds 0: done on registration, so never counted as working."""
    job = Job(1, _job().request, T0, duration=0)
    seat(job, [], 1)
    assert slot_use([job], T0) == SlotUse(working=0, waiting=0, working_peak=0)


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ({}, {1, 2, 3, 4}),
        ({"search_keyword_type": "jobId", "search_keyword": "2"}, {2}),
        ({"search_keyword_type": "cid", "search_keyword": "MOVIE"}, {3, 4}),
        ({"search_keyword_type": "jobName", "search_keyword": "trailer"}, {4}),
        ({"search_type": "drm"}, {2}),
        ({"search_type": "watermark"}, {1, 3, 4}),
        ({"search_condition": "hls"}, {1, 2}),
        ({"search_status": "success"}, {1, 2}),
        ({"search_status": "failed"}, {3}),
        ({"search_status": "complete"}, {1, 2, 3}),
        ({"search_status": "working"}, {4}),
        ({"search_status": "process"}, {4}),
        ({"search_status": "ready"}, set()),
        ({"from": "2024-05-01T12:00:00Z", "to": "2024-05-01T12:00:00Z"}, {1, 2, 3, 4}),
        ({"from": "2024-05-01T12:00:01Z"}, set()),
        ({"from": "2024-05-01T21:00:00Z", "time_zone": "09:00"}, {1, 2, 3, 4}),
        ({"to": "2024-05-01T20:59:59Z", "time_zone": "09:00"}, set()),
        ({"from": "2024-05-01T07:00:00Z", "time_zone": "-05:00"}, {1, 2, 3, 4}),
        ({"from": "2024-05-01T07:00:01Z", "time_zone": "-05:00"}, set()),
    ],
)
def test_every_search_option_filters(query, ids):
    """Keyword types, type, status words, format and the time window (in a time zone)."""
    jobs = [
        _job(1),
        _job(2, drm=True),
        _job(3, failing=True, content_id="movie-3", streaming_format=["dash"]),
        _job(4, content_id="Movie-4", job_name="trailer", streaming_format=["dash"]),
    ]
    jobs[3].reg_date = T0  # still running at NOW below, unlike the others
    jobs[3].duration = 100
    now = _at(20)
    request = validate_request(JobListRequest, {"region": "RG011", **query})
    assert {job.job_id for job in jobs if job_matches(job, request, now)} == ids


def test_paging_defaults_and_clamps():
    """25 per page by default, page 1 first, page_unit clamped to the cap."""
    items = list(range(100))
    assert page(items, None, None, cap=500) == list(range(25))
    assert page(items, 10, 3, cap=500) == list(range(20, 30))
    assert page(items, 1000, 1, cap=40) == list(range(40))
    assert page(items, 30, 5, cap=500) == []


def test_dates_render_in_utc_with_z_or_in_the_asked_offset():
    """time_zone shifts the rendering; UTC keeps the guide's Z form."""
    assert render_date(T0, offset(None)) == "2024-05-01T12:00:00Z"
    assert render_date(T0, offset("09:00")) == "2024-05-01T21:00:00+09:00"
    assert render_date(T0, offset("-05:30")) == "2024-05-01T06:30:00-05:30"
    assert render_date(None, offset(None)) == ""
