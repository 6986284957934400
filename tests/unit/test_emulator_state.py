"""The emulator's pure core: job timeline, search options, paging, dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pallycon.codes import packaging_error, status_sequence
from pallycon.models import JobListRequest, JobRegisterRequest, validate_request
from pallycon_emulator.state import Job, job_matches, offset, page, render_date
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
