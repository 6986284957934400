"""A request's record and events as the CLI, the console and the demo show them: each form
written once."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from pallycon_pack.errors import EXIT_INVALID, Failure
from pallycon_store.events import State, iso
from pallycon_store.failures import explain
from pallycon_store.record import Record

#: The states a request can be in, in the order it goes through them.
STATES = tuple(state.value for state in State)
#: Fields of a record shown as times (ISO 8601, UTC).
TIME_FIELDS = tuple(f.name for f in fields(Record) if f.name.endswith("_at"))

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}

SINCE_HELP = (
    "Only those that entered their state since T: an ISO 8601 time (2026-11-26T10:00Z) or a "
    "duration back from now (90s, 30m, 2h, 7d)."
)
#: An event's fields left out of its one-line form (said by its place in the line, or bulky).
_NOT_DETAILS = frozenset({"schema", "event_id", "type", "request_id", "ts"})


def parse_since(text: str, now: float) -> float:
    """``--since``: an ISO 8601 time (UTC unless it says) or a duration back from ``now``."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        return now - float(relative.group(1)) * _UNIT[relative.group(2)]
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Failure(
            f"--since {text!r}: not an ISO 8601 time nor a duration like 30m, 2h, 7d",
            EXIT_INVALID,
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def shown(record: Record) -> dict[str, Any]:
    """A record as the commands print it: the fields that are set, times in ISO 8601."""
    data = record.public()
    for name in TIME_FIELDS:
        if name in data:
            data[name] = iso(data[name])
    return data


def explained(record: Record) -> dict[str, Any]:
    """:func:`shown`, with what its error code means (``error_meaning``, after the message)
    when the code is one anybody knows (:func:`pallycon_store.failures.explain`)."""
    data = shown(record)
    meaning = explain(record.error_code, record.error_stage) if record.error_code else ""
    if not meaning:
        return data
    after = "error_message" if "error_message" in data else "error_code"
    out: dict[str, Any] = {}
    for key, value in data.items():
        out[key] = value
        if key == after:
            out["error_meaning"] = meaning
    return out


def detail(record: Record) -> str:
    """A record's outcome in one line: ``<stage> <code>: <message>`` when it failed, what its
    cancel did when it was cancelled, else its last job status and what it means; "" when it
    has none of these."""
    if record.state is State.CANCELLED and record.error_message:
        return record.error_message
    if record.error_code:
        message = (record.error_message or "").removeprefix(f"{record.error_code}: ")
        head = " ".join(part for part in (record.error_stage, record.error_code) if part)
        return f"{head}: {message}"
    if record.status:
        return f"{record.status} {record.status_meaning}".strip()
    return ""


def state_text(record: Record) -> str:
    """``completed``, ``failed (submit A1003: ...)``, ``submitted (job 1001, WM022100 ...)``,
    ``cancelled (cancelled before it was registered; reason: ...)``."""
    if record.state in (State.FAILED, State.CANCELLED) and detail(record):
        return f"{record.state.value} ({detail(record)})"
    details = [f"job {record.job_id}"] if record.job_id else []
    if record.status:
        details.append(detail(record))
    return f"{record.state.value} ({', '.join(details)})" if details else record.state.value


def _details(event: dict[str, Any], leave_out: frozenset[str]) -> str:
    return " ".join(
        f"{k}={json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v}"
        for k, v in event.items()
        if k not in leave_out
    )


def event_line(event: dict[str, Any]) -> str:
    """An event as one plain line: ``<ts> <request id> <type> key=value ...``."""
    details = _details(event, _NOT_DETAILS)
    return f"{event['ts']} {event['request_id']} {event['type']:9} {details}"


def timeline_line(event: dict[str, Any]) -> str:
    """An event in one request's timeline: ``<ts to the ms>  <type>  key=value ...`` (its
    request and metadata said once, above)."""
    details = _details(event, _NOT_DETAILS | {"metadata"})
    return f"{event['ts'][:23]}  {event['type']:9}  {details}"
