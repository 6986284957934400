"""The codes a failed request or a rejected intake entry carries, and what each means. Pure.

A failure's ``error_code`` (the ``code`` of its ``failed`` or ``rejected`` event) is one of:

- pallycon-pack's own codes, :class:`FailureCode` (docs/RESULTS.md lists them);
- PallyCon's: an API error code (``A1003``), a packaging error (``WM900013``) or a status
  (``WM999``, a status word), from :mod:`pallycon.codes`;
- ``HTTPnnn``: the API answered that HTTP status;
- the name of a :mod:`pallycon.errors` class (``RequestNotSent``, ``OutcomeUnknown``, ...):
  the last call failed without an API code or status.

:func:`explain` says what any of them means; the console and ``requests show`` call it.
"""

from __future__ import annotations

from enum import StrEnum

from pallycon.codes import API_CODES, PACKAGING_ERRORS, STATUS_CODES, STATUS_WORDS
from pallycon.errors import meaning_of
from pallycon_store.events import FailStage


class FailureCode(StrEnum):
    """The codes pallycon-pack itself gives (not PallyCon's); each value is the stored text."""

    INVALID_REQUEST = "invalid_request"
    UNKNOWN_SITE = "unknown_site"
    DEADLINE = "deadline"
    ERROR = "error"
    TIMEOUT = "timeout"
    DEAD_LETTER = "dead_letter"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"

    @property
    def meaning(self) -> str:
        """What the code means, in one line (docs/RESULTS.md shows the same line)."""
        return _MEANINGS[self]


_MEANINGS = {
    FailureCode.INVALID_REQUEST: (
        "refused at the intake stream: the entry is not a valid request (the message names each "
        "field)"
    ),
    FailureCode.UNKNOWN_SITE: (
        "names a site no worker serves; nothing was sent (pallycon-pack retry takes it up once a "
        "worker serves the site)"
    ),
    FailureCode.DEADLINE: (
        "not registered within PALLYCON_SUBMIT_DEADLINE, no attempt having ended (the workers "
        "were busy, or down)"
    ),
    FailureCode.ERROR: (
        "not registered within PALLYCON_SUBMIT_DEADLINE; its last attempt ended in an "
        "unexpected error (see the worker log)"
    ),
    FailureCode.TIMEOUT: (
        "its job did not finish within PALLYCON_JOB_TIMEOUT (its status: the last one seen)"
    ),
    FailureCode.DEAD_LETTER: (
        "delivered more than PALLYCON_MAX_DELIVERIES times without moving on (its handling "
        "failed or crashed its worker each time)"
    ),
    FailureCode.DUPLICATE: (
        "an intake entry under a request id already used with the same body: that request "
        "stands, follow its events"
    ),
    FailureCode.CONFLICT: (
        "an intake entry under a request id already used with a different body: that request "
        "stands, untouched"
    ),
}

#: What readers show for a failed request that has no code recorded.
NO_CODE = "unknown"


def explain(code: str, stage: str = "") -> str:
    """What a failure's ``code`` means; "" when nobody knows it.

    ``stage``, the failure's ``error_stage`` when known: a ``packaging`` failure's code is
    PallyCon's (its status word ``error`` is not our :attr:`FailureCode.ERROR`).
    """
    if stage != FailStage.PACKAGING and code in _MEANINGS:  # a member hashes as its text
        return FailureCode(code).meaning
    if code == NO_CODE:
        return "no code was recorded"
    return _pallycons(code)


def _pallycons(code: str) -> str:
    """The meaning of one of PallyCon's codes, ``HTTPnnn`` or an error class's name."""
    if code in API_CODES:
        return API_CODES[code].meaning
    if code in PACKAGING_ERRORS:
        error = PACKAGING_ERRORS[code]
        return f"{error.meaning} (cause: {error.cause.value})"
    if code.upper() in STATUS_CODES:
        return STATUS_CODES[code.upper()].meaning
    if code.lower() in STATUS_WORDS:
        return STATUS_WORDS[code.lower()].meaning
    if code.startswith("HTTP") and code[4:].isdigit():
        return f"the API answered HTTP {code[4:]}"
    return meaning_of(code)
