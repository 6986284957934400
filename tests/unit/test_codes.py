"""The code tables: complete against the guide, and classified."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pallycon.codes import (
    API_CODES,
    PACKAGING_ERRORS,
    STATUS_CODES,
    Cause,
    Stage,
    api_code,
    packaging_error,
    parse_status,
    status_sequence,
    status_word,
)

GUIDE = Path(__file__).resolve().parents[3] / "shared" / "spec" / "pallycon-packaging-api.md"


def _guide_codes(pattern: str) -> set[str]:
    return set(re.findall(pattern, GUIDE.read_text(encoding="utf-8"), flags=re.MULTILINE))


@pytest.mark.skipif(not GUIDE.exists(), reason="the API guide is not beside this checkout")
def test_every_code_in_the_guide_is_in_a_table():
    """Each code the guide lists is in our tables (read from the guide itself)."""
    assert _guide_codes(r"^\| ?(A\d{4}|0000) ?\|") <= set(API_CODES)
    assert _guide_codes(r"^\|(WM\d{3}(?:\d{3})?)\|") - set(PACKAGING_ERRORS) <= set(STATUS_CODES)
    assert _guide_codes(r"^\|(WM900\d{3})\|") <= set(PACKAGING_ERRORS)


def test_table_sizes_match_the_guide():
    """10 API codes, 16 statuses, 59 packaging errors, whether or not the guide is present."""
    assert (len(API_CODES), len(STATUS_CODES), len(PACKAGING_ERRORS)) == (10, 16, 59)


@pytest.mark.parametrize(
    ("code", "retryable"),
    [("A1000", False), ("A1002", True), ("A1003", False), ("A1006", False), ("A1007", False),
     ("A4002", True), ("A4003", True), ("A7008", False), ("A7009", False), ("A9999", False)],
)  # fmt: skip
def test_api_codes_are_classified(code: str, retryable: bool):
    """Only a stale timestamp and server-side failures are worth retrying; unknown is permanent."""
    assert api_code(code).retryable is retryable


def test_statuses_have_stages_and_only_three_are_terminal():
    """WM030 succeeds, WM999 and WM200 fail; every other status is in progress."""
    terminal = {code: s.success for code, s in STATUS_CODES.items() if s.terminal}
    assert terminal == {"WM030": True, "WM999": False, "WM200": False}
    assert STATUS_CODES["WM022100"].stage is Stage.WATERMARKING
    assert STATUS_CODES["WM023100"].stage is Stage.DRM
    assert STATUS_CODES["WM999"].failed


def test_the_sequence_has_drm_steps_only_with_drm():
    """Watermark only: 10 steps; with DRM the two DRM steps sit before uploading."""
    plain, drm = status_sequence(drm=False), status_sequence(drm=True)
    assert plain[0] == "WM000"
    assert plain[-1] == "WM030"
    assert "WM023100" not in plain
    assert drm[drm.index("WM023100") + 2] == "WM024100"
    assert len(drm) == len(plain) + 2


def test_status_words_round_trip_through_parse_status():
    """The word written for each code parses back to the same terminal/success outcome."""
    for code, entry in STATUS_CODES.items():
        word = parse_status(status_word(code))
        assert (word.terminal, word.success) == (entry.terminal, entry.success), code


def test_packaging_errors_say_who_can_fix_them():
    """Missing input is the user's; bad S3 keys the storage's; cluster errors the service's."""
    assert packaging_error("WM900013").cause is Cause.INPUT
    assert packaging_error("WM900007").cause is Cause.STORAGE
    assert packaging_error("WM900114").cause is Cause.SERVICE
    assert packaging_error("WM900114").meaning == "Internal cluster error."
    assert packaging_error("WM900999").meaning == "Unknown packaging error code"
