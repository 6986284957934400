"""Our own failure codes and what every code a failure carries means."""

from __future__ import annotations

import json

import pytest

from pallycon import errors
from pallycon.codes import STATUS_WORDS
from pallycon.errors import (
    CallError,
    MalformedResponse,
    OutcomeUnknown,
    PallyConError,
    RequestNotBuilt,
    RequestNotSent,
    ResponseTooLarge,
    TransportError,
    meaning_of,
)
from pallycon_store.events import FailStage
from pallycon_store.failures import _MEANINGS, NO_CODE, FailureCode, explain
from pallycon_worker.decisions import error_code

#: Today's stored texts: a record, an event or a Lua argument carries exactly these.
STORED = {
    "invalid_request", "unknown_site", "deadline", "error", "timeout", "dead_letter", "duplicate",
    "conflict",
}  # fmt: skip


def test_the_codes_keep_their_stored_text():
    """Each code's value is the text records and events have always carried, and it serialises
    as that plain text."""
    assert {code.value for code in FailureCode} == STORED
    assert json.dumps({"code": FailureCode.TIMEOUT}) == '{"code": "timeout"}'
    assert f"{FailureCode.DEAD_LETTER}" == str(FailureCode.DEAD_LETTER) == "dead_letter"


def test_every_code_has_one_line_of_meaning():
    """Each of our codes has its own meaning, on one line, and explain gives it."""
    assert set(_MEANINGS) == set(FailureCode)
    assert len(set(_MEANINGS.values())) == len(FailureCode)
    for code in FailureCode:
        assert code.meaning
        assert "\n" not in code.meaning
        assert explain(code.value) == code.meaning


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        ("A1003", "Cannot find the site ID"),
        ("WM900013", "Download failed.(File does not exist or size is 0kb.) (cause: input)"),
        ("WM999", "Packaging error"),
        ("wm200", "Packaging stop complete"),
        ("stop", "Packaging stopped"),
        ("HTTP503", "the API answered HTTP 503"),
        (NO_CODE, "no code was recorded"),
        ("A9999", ""),
        ("HTTPx", ""),
        ("", ""),
    ],
)
def test_pallycons_codes_are_explained(code: str, meaning: str):
    """An API code, a packaging error, a status code or word, an HTTP status, no code; "" for a
    code nobody knows."""
    assert explain(code) == meaning


@pytest.mark.parametrize(
    "error",
    [
        RequestNotSent("connect failed"),
        RequestNotBuilt("URL too long"),
        OutcomeUnknown("read timeout"),
        TransportError("broken"),
        MalformedResponse("not JSON"),
        ResponseTooLarge(1024),
    ],
)
def test_the_error_classes_the_worker_records_are_explained(error: CallError):
    """A call error with no API code or HTTP status is recorded by its class name; explain says
    what that class means."""
    code = error_code(error)
    assert code == type(error).__name__
    assert explain(code, FailStage.SUBMIT) == type(error).meaning != ""


def test_every_error_class_says_its_own_meaning():
    """Each class of the protocol's error tree has a meaning of its own (not its parent's), and
    meaning_of finds it by name; a name outside the tree has none."""
    classes = [
        kind
        for kind in vars(errors).values()
        if isinstance(kind, type) and issubclass(kind, PallyConError)
    ]
    assert len(classes) == 14
    for kind in classes:
        assert kind.__dict__.get("meaning"), kind.__name__
        assert meaning_of(kind.__name__) == kind.meaning
    assert len({kind.meaning for kind in classes}) == len(classes)
    assert meaning_of("FieldError") == meaning_of("ValueError") == ""


def test_a_packaging_failure_code_is_pallycons():
    """A job's status word ``error`` (a packaging failure) is PallyCon's, not our ``error``."""
    assert "error" in STATUS_WORDS
    assert explain("error", FailStage.PACKAGING) == "Packaging error"
    assert explain("error", FailStage.SUBMIT) == explain("error") == FailureCode.ERROR.meaning
