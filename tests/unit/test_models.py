"""Every rule the request models enforce, and every tolerance of the response models."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from pallycon.errors import InvalidRequest
from pallycon.models import (
    CallbackBody,
    JobInfo,
    JobListRequest,
    JobListResponse,
    JobRegisterRequest,
    JobRegisterResponse,
    StorageListRequest,
    StorageListResponse,
    StorageRegisterRequest,
    StorageUpdateRequest,
    WireOptions,
    api_dict,
    api_json,
    validate_request,
)
from support.samples import job_body


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``body`` with the dotted ``path`` set (or removed, for ``...``)."""
    result = copy.deepcopy(body)
    *parents, last = path.split(".")
    target = result
    for key in parents:
        target = target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return result


def test_a_valid_job_is_accepted():
    """The guide's example body validates and keeps its values."""
    request = validate_request(JobRegisterRequest, job_body())
    assert request.protection_type == ["watermark", "drm"]
    assert request.drm
    assert request.storage.output.path == "out"


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        ("job_name", ..., "job_name", "Field required"),
        ("job_name", "", "job_name", "empty"),
        ("job_name", "x" * 51, "job_name", "at most 50 bytes"),
        ("job_name", "한" * 17, "job_name", "at most 50 bytes"),
        ("job_name", "bad\nname", "job_name", "control characters"),
        ("content_id", ..., "content_id", "Field required"),
        ("content_id", "c" * 201, "content_id", "at most 200 bytes"),
        ("content_id", "é" * 101, "content_id", "at most 200 bytes"),
        ("storage", ..., "storage", "Field required"),
        ("storage.input", ..., "storage.input", "Field required"),
        ("storage.input.storage_id", "  ", "storage.input.storage_id", "blank"),
        ("storage.input.contents_path", [], "storage.input.contents_path", "at least 1"),
        ("storage.input.contents_path", "a.mp4", "storage.input.contents_path", "list"),
        ("storage.input.contents_path", [""], "storage.input.contents_path[0]", "empty"),
        ("storage.input.contents_path", ["p" * 513], "storage.input.contents_path[0]", "512"),
        ("storage.output.path", ..., "storage.output.path", "Field required"),
        ("storage.output.storage_id", ..., "storage.output.storage_id", "Field required"),
        ("streaming_format", [], "streaming_format", "at least 1"),
        ("streaming_format", ["smooth"], "streaming_format[0]", "'dash' or 'hls'"),
        ("streaming_format", ["dash", "DASH"], "streaming_format", "repeat"),
        ("protect_type", ["drm"], "protect_type", "'watermark' is mandatory"),
        ("protect_type", [], "protect_type", "at least 1"),
        ("protect_type", ["watermark", "fairplay"], "protect_type[1]", "'watermark' or 'drm'"),
        ("protect_type", ..., "protect_type", "Field required (or protection_type)"),
        ("dash_option", {"min_buffer_time": 1}, "dash_option.min_buffer_time", "2"),
        ("dash_option", {"min_buffer_time": "x"}, "dash_option.min_buffer_time", "number"),
        ("drm_option", {"max_sd_height": 0}, "drm_option.max_sd_height", "greater than"),
        ("drm_option", {"clear_lead": -1}, "drm_option.clear_lead", "greater than"),
        ("drm_option", {"multi_key": "maybe"}, "drm_option.multi_key", "boolean"),
        ("contens_path", ["typo"], "contens_path", "Extra inputs"),
        ("subtitles", [{"path": "s.vtt", "lang": "en"}], "subtitles[0].lang", "Extra inputs"),
    ],
)
def test_job_rules_name_the_field(path: str, value: Any, field: str, message: str):
    """Each broken rule is refused with an error naming the field and saying why."""
    with pytest.raises(InvalidRequest) as caught:
        validate_request(JobRegisterRequest, _set(job_body(), path, value))
    errors = {error.field: error.message for error in caught.value.errors}
    assert field in errors, errors
    assert message.lower() in errors[field].lower()


def test_every_error_is_reported_at_once():
    """Several broken fields give one error each, not just the first."""
    body = job_body(job_name="", content_id="c" * 300, streaming_format=[])
    with pytest.raises(InvalidRequest) as caught:
        validate_request(JobRegisterRequest, body)
    assert {e.field for e in caught.value.errors} >= {"job_name", "content_id", "streaming_format"}


@pytest.mark.parametrize("body", [None, [], "text", 12])
def test_a_body_that_is_not_an_object_is_refused(body: Any):
    """Only a JSON object can be a request."""
    with pytest.raises(InvalidRequest) as caught:
        validate_request(JobRegisterRequest, body)
    assert caught.value.errors[0].field == "body"


def test_both_spellings_of_the_protection_key_are_read():
    """``protect_type`` (example) and ``protection_type`` (table) both validate."""
    body = job_body()
    body["protection_type"] = body.pop("protect_type")
    assert validate_request(JobRegisterRequest, body).protection_type == ["watermark", "drm"]


def test_values_are_read_in_any_case_and_written_in_lower_case():
    """``DRM``, ``DASH`` as shown in the guide are accepted and written as dash/drm."""
    request = validate_request(
        JobRegisterRequest, job_body(streaming_format=["DASH"], protect_type=["Watermark", "DRM"])
    )
    body = api_dict(request)
    assert body["streaming_format"] == ["dash"]
    assert body["protect_type"] == ["watermark", "drm"]


def test_output_path_as_a_one_element_list_is_read_as_a_string():
    """The table says Array, the example a string: both read, a string written."""
    body = _set(job_body(), "storage.output.path", ["out/dir"])
    request = validate_request(JobRegisterRequest, body)
    assert api_dict(request)["storage"]["output"]["path"] == "out/dir"


def test_the_written_form_is_compact_utf8_with_options_omitted():
    """api_json: compact separators, UTF-8 (not \\u escapes), no nulls, protect_type key."""
    request = validate_request(JobRegisterRequest, job_body(job_name="에피소드"))
    raw = api_json(request)
    assert b": " not in raw
    assert "에피소드".encode() in raw
    parsed = json.loads(raw)
    assert "subtitles" not in parsed
    assert "dash_option" not in parsed
    assert "protect_type" in parsed


def test_the_protection_key_is_a_setting():
    """WireOptions(protection_key='protection_type') writes the table's spelling."""
    request = validate_request(JobRegisterRequest, job_body())
    body = api_dict(request, WireOptions(protection_key="protection_type"))
    assert body["protection_type"] == ["watermark", "drm"]
    assert "protect_type" not in body


def test_storage_secret_is_hidden_in_repr_and_dumps_but_sent_to_the_api():
    """The AWS secret shows nowhere but in the API JSON that gets encrypted."""
    request = StorageRegisterRequest.model_validate(
        {
            "storage_name": "s",
            "id": "AKIA",
            "password": "very-secret",
            "aws_bucket": "my-bucket",
            "region": "RG011",
        }
    )
    assert "very-secret" not in repr(request)
    assert "very-secret" not in request.model_dump_json()
    assert api_dict(request)["password"] == "very-secret"
    assert api_dict(request)["type"] == "S3"


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (StorageRegisterRequest, {"storage_name": "s", "id": "i", "password": "p",
                                  "aws_bucket": "Bad_Bucket", "region": "RG011"}, "aws_bucket"),
        (StorageRegisterRequest, {"storage_name": "s", "id": "i", "password": " ",
                                  "aws_bucket": "good", "region": "RG011"}, "password"),
        (StorageRegisterRequest, {"storage_name": "s", "id": "i", "password": "p",
                                  "aws_bucket": "good", "region": "RG011", "type": "GCS"}, "type"),
        (StorageRegisterRequest, {"storage_name": "s", "id": "i", "password": "p",
                                  "aws_bucket": "good"}, "region"),
        (StorageUpdateRequest, {"storage_id": "ST1"}, "body"),
        (StorageUpdateRequest, {"storage_name": "n"}, "storage_id"),
        (StorageListRequest, {}, "region"),
        (StorageListRequest, {"region": "RG011", "from": "2024-01-01"}, "from"),
        (StorageListRequest, {"region": "RG011", "time_zone": "9"}, "time_zone"),
        (StorageListRequest, {"region": "RG011", "time_zone": "15:00"}, "time_zone"),
        (StorageListRequest, {"region": "RG011", "page_unit": 0}, "page_unit"),
        (JobListRequest, {}, "region"),
        (JobListRequest, {"region": "RG011", "search_status": "done"}, "search_status"),
        (JobListRequest, {"region": "RG011", "search_type": "fairplay"}, "search_type"),
        (JobListRequest, {"region": "RG011", "search_condition": "smooth"}, "search_condition"),
        (JobListRequest, {"region": "RG011", "search_keyword": "x"}, "search_keyword_type"),
        (JobListRequest, {"region": "RG011", "search_keyword_type": "cid"}, "search_keyword"),
        (JobListRequest, {"region": "RG011", "page_index": -1}, "page_index"),
        (JobListRequest, {"region": "RG011", "from": "2024-02-01T00:00:00Z",
                          "to": "2024-01-01T00:00:00Z"}, "from"),
    ],
)  # fmt: skip
def test_storage_and_list_rules_name_the_field(model, body, field):
    """Storage and list requests refuse what the guide forbids, naming the field."""
    with pytest.raises(InvalidRequest) as caught:
        validate_request(model, body)
    assert field in {error.field for error in caught.value.errors}, caught.value.errors


def test_keyword_type_is_read_in_either_spelling_and_written_as_the_table_spells_it():
    """``jobname`` (example) and ``jobName`` (table) are one option, written ``jobName``."""
    request = validate_request(
        JobListRequest,
        {"region": "RG011", "search_keyword": "ep", "search_keyword_type": "jobname"},
    )
    assert api_dict(request)["search_keyword_type"] == "jobName"
    request = validate_request(
        JobListRequest, {"region": "RG011", "from": "2024-01-01T00:00:00Z", "page_unit": 100}
    )
    assert api_dict(request) == {
        "from": "2024-01-01T00:00:00Z",
        "page_unit": 100,
        "region": "RG011",
    }


# --- Responses: tolerant reading -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"error_code": "0000"}, "0000"),
        ({"error_code": 0}, "0000"),
        ({"error_code": "A1000"}, "A1000"),
    ],
)
def test_error_code_quoted_or_not(raw, expected):
    """``error_code`` shown unquoted in the guide reads as the 4-digit string."""
    assert JobRegisterResponse.model_validate({**raw, "job_id": 1}).error_code == expected


def test_numbers_as_strings_and_flags_as_words_are_read():
    """total_count, job_id as strings; drm/dash as "true"/"false"; dates with Z or offset."""
    response = JobListResponse.model_validate(
        {
            "error_code": "0000",
            "total_count": "2",
            "data": [
                {"job_id": "7", "status": "WM030", "drm": "true", "dash": "false", "hls": True,
                 "reg_date": "2024-05-01T10:00:00Z", "update_date": "2024-05-01T19:00:00+09:00",
                 "start_date": "", "unknown_future_key": 1},
                {"job_id": 8, "status": "success"},
            ],
        }
    )  # fmt: skip
    first, second = response.data
    assert response.total_count == 2
    assert (first.job_id, second.job_id) == ("7", "8")
    assert (first.drm, first.dash, first.hls) == (True, False, True)
    assert first.reg_date == first.update_date
    assert first.start_date is None
    assert first.status_info.success
    assert second.status_info.success


@pytest.mark.parametrize(
    ("status", "terminal", "success"),
    [("WM000", False, False), ("wm022100", False, False), ("WM030", True, True),
     ("WM999", True, False), ("WM200", True, False), ("ready", False, False),
     ("process", False, False), ("success", True, True), ("FAILED", True, False),
     ("stop", True, False), ("WM555", False, False)],
)  # fmt: skip
def test_status_is_read_as_a_code_or_a_word(status, terminal, success):
    """Either form of ``status`` classifies; an unknown one is not terminal."""
    info = JobInfo.model_validate({"job_id": 1, "status": status}).status_info
    assert (info.terminal, info.success) == (terminal, success)


def test_storage_list_never_shows_the_secret():
    """The echoed AWS secret is kept as a SecretStr: absent from repr and dumps."""
    response = StorageListResponse.model_validate(
        {"error_code": "0000", "total_count": 1,
         "data": [{"storage_id": 3, "password": "echoed-secret", "reg_date": "2024-01-01T00:00:00Z"}]}
    )  # fmt: skip
    storage = response.data[0]
    assert storage.storage_id == "3"
    assert "echoed-secret" not in repr(response)
    assert "echoed-secret" not in response.model_dump_json()


def test_callback_body_reads_the_guide_shape_and_variants():
    """The callback: numbers or strings, a path string or list."""
    body = CallbackBody.model_validate(
        {"job_id": 12, "error_code": "0000", "error_message": None,
         "input_contents_path": "a.mp4", "output_path": ["out"]}
    )  # fmt: skip
    assert body.job_id == "12"
    assert body.succeeded
    assert body.input_contents_path == ["a.mp4"]
    assert body.output_path == "out"
    failed = CallbackBody.model_validate({"job_id": "13", "error_code": "WM900013"})
    assert not failed.succeeded
