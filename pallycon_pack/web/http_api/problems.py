"""RFC 9457 problem details: every error the HTTP API answers, as ``application/problem+json``.

A problem is ``{"type", "title", "status", "detail", "errors"}``: ``type`` a URN naming the kind
(:data:`TYPES`), ``detail`` one line, ``errors`` one item per field at fault, each
``{"field", "message"}`` and, in a batch, the ``line`` (1-based) it is on. Never a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse

from pallycon.errors import FieldError

MEDIA_TYPE = "application/problem+json"
#: Headers of every answer of the API: never cached, never sniffed as another type.
ANSWER_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
#: Where a problem's type is named.
TYPE_PREFIX = "urn:pallycon-pack:problem:"

#: Each kind of problem: its type's last part -> the status it goes with.
TYPES: dict[str, int] = {
    "bad-request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not-found": 404,
    "method-not-allowed": 405,
    "request-timeout": 408,
    "conflict": 409,
    "payload-too-large": 413,
    "unsupported-media-type": 415,
    "invalid-request": 422,
    "too-many-requests": 429,
    "internal-error": 500,
    "unavailable": 503,
}
#: The kind of problem of a bare HTTP status (a route missing, a method not allowed).
BY_STATUS = {status: kind for kind, status in TYPES.items()}

#: Fields of a request other than its job body's; any other field an error names is in "body".
TOP_FIELDS = frozenset({"body", "request_id", "metadata", "site_id", "priority"})


@dataclass(frozen=True)
class FieldProblem:
    """One field at fault: where (dotted), why, and in a batch which line (1-based)."""

    field: str | None
    message: str
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {} if self.line is None else {"line": self.line}
        return {**item, "field": self.field, "message": self.message}


@dataclass(eq=False)
class Problem(Exception):
    """An error answered as a problem document."""

    kind: str
    detail: str
    errors: Sequence[FieldProblem] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return TYPES[self.kind]

    def body(self) -> dict[str, Any]:
        return {
            "type": TYPE_PREFIX + self.kind,
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
            "errors": [error.to_dict() for error in self.errors],
        }

    def all_headers(self) -> dict[str, str]:
        """Its headers besides the type and length: its own, and those of every answer."""
        return {**ANSWER_HEADERS, **self.headers}

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body(), self.status, headers=self.all_headers(), media_type=MEDIA_TYPE
        )


def body_field(name: str) -> str:
    """A field an error of the admission names, as the API's request names it: the job body's
    own fields (``job_name``) under ``body`` (``body.job_name``), the others as they are."""
    head = name.split(".", 1)[0].split("[", 1)[0]
    return name if head in TOP_FIELDS else f"body.{name}"


def field_problems(errors: Sequence[FieldError], line: int | None = None) -> list[FieldProblem]:
    """The admission's field errors as the API names them (:func:`body_field`)."""
    return [FieldProblem(body_field(error.field), error.message, line) for error in errors]


def invalid(errors: Sequence[FieldProblem], what: str = "the request") -> Problem:
    """A 422 naming every field at fault."""
    fields = ", ".join(dict.fromkeys(str(e.field) for e in errors if e.field)) or "its shape"
    return Problem("invalid-request", f"{what} is invalid: {fields}", errors)
