"""The shape of one request as a batch gives it (a line of ``submit --batch``'s file, an item of
the HTTP API's ``POST /v1/requests/batch``): ``{"body": {...}, "request_id": "...", "metadata":
{...}, "site_id": "...", "priority": "..."}``, all but ``body`` optional. Parsed here, validated
by :func:`pallycon_store.admission.prepare` as every other submission is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["KEYS", "BadLine", "Line", "line_of"]


#: The keys of a line, in the order messages name them.
KEYS = ("body", "request_id", "metadata", "site_id", "priority")


@dataclass(frozen=True)
class Line:
    """One request of the file."""

    number: int
    body: Any
    request_id: str | None
    metadata: Any
    site_id: str | None = None  # the PallyCon site (None: the workers' default site)
    priority: Any = None  # as given (None: the batch's; checked by prepare)

    def priority_or(self, default: str) -> Any:
        """The line's priority, or ``default`` (the batch's) when it gives none (or "")."""
        return default if self.priority is None or self.priority == "" else self.priority


class BadLine(ValueError):
    """A line that is not a request; :attr:`field` is the key it is about (None: the line as a
    whole), and the message starts with it."""

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


def line_of(number: int, data: Any) -> Line:
    """The request of a line (or of an item of a JSON array: the HTTP API's batch), parsed
    from its JSON; :class:`BadLine` naming the key and why otherwise."""
    if not isinstance(data, dict):
        raise BadLine(
            None,
            'not a JSON object {"body": {...}, "request_id": ..., "metadata": ..., "site_id": ..., '
            '"priority": ...}',
        )
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise BadLine(None, f"unknown key(s) {', '.join(unknown)} ({', '.join(KEYS)})")
    if "body" not in data:
        raise BadLine("body", "missing (the job registration)")
    request_id = data.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadLine("request_id", "must be a string")
    if request_id == "":
        raise BadLine(
            "request_id",
            "empty; leave it out for a new id (an empty one would be a new id at each run, so "
            "running the file again would submit the request again)",
        )
    site_id = data.get("site_id")
    if site_id is not None and not isinstance(site_id, str):
        raise BadLine("site_id", "must be a string (a site id such as TUTO)")
    return Line(
        number,
        data["body"],
        request_id,
        data.get("metadata"),
        site_id or None,
        data.get("priority"),
    )
