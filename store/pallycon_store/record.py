"""The request record: its typed fields and the one codec between them and the Redis hash.

A record is a Redis hash of strings. :class:`Record` is what code reads, with each field's type;
:class:`Fields` is what a change writes (any subset of the fields, type-checked); :func:`encode`
and :func:`decode` are the only places that turn one into the other. A field in Redis that this
version does not know is ignored, and one it knows but cannot find reads as its default, so
records written by an older or newer version stay readable.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from pallycon_store.events import State


@dataclass(frozen=True)
class Record:
    """A request's record, as read from Redis (see docs/RESULTS.md for each field)."""

    request_id: str
    state: State
    version: int
    # What was asked
    body: str = ""  # the job registration, API JSON text ("null" for a refused entry)
    body_hash: str = ""
    job_name: str = ""  # the remote job's unique name
    content_id: str = ""
    entry_id: str = ""  # the intake stream entry it came from
    metadata: str = ""  # the producer's metadata object, compact JSON ("" when none)
    site_id: str = ""  # the PallyCon site the request named ("": the default site)
    priority: str = ""  # high | normal | bulk ("": normal, as before priorities existed)
    created_at: float = 0.0
    updated_at: float = 0.0
    # Submitting
    attempts: int = 0  # registrations sent
    deliveries: int = 0  # task deliveries since the request last moved on
    submitting_at: float = 0.0  # when the last registration was marked
    mark_run: str = ""  # the Redis server (run id/replication id) the mark was made on
    sent_at: float = 0.0  # when the last registration was about to leave (its token taken)
    attempt_ended_at: float = 0.0  # when the last registration's outcome was recorded
    last_error: str = ""
    last_code: str = ""
    # The last registration was answered with an API code nobody knows (and what it said):
    # should no job have come of it, the request fails with that code.
    unknown_code: str = ""
    unknown_message: str = ""
    lookup_failures: int = 0
    retries: int = 0  # times an operator re-drove it after it failed (`pallycon-pack retry`)
    retried_at: float = 0.0  # when it was last re-driven
    # Polling
    job_id: str = ""
    submitted_at: float = 0.0
    status: str = ""
    status_meaning: str = ""
    poll_failures: int = 0
    last_seen: str = ""
    # The end
    output_path: str = ""
    finished_at: float = 0.0
    error_stage: str = ""
    error_code: str = ""
    error_message: str = ""
    # The stream entry ids of its result events, space-separated, oldest first (written by the
    # scripts; older entries may have been trimmed from the stream)
    events: str = ""

    def parsed_body(self) -> dict[str, Any]:
        """The job registration, parsed."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    def moved(self, fields: Fields) -> Record:
        """This record as it is after a change writing ``fields`` was applied."""
        return dataclasses.replace(self, version=self.version + 1, **fields)

    def public(self) -> dict[str, Any]:
        """The record as ``status`` shows it: the fields that are set, the body left out."""
        shown = {"request_id": self.request_id, "state": self.state.value, "version": self.version}
        for name in _CODECS:
            value = getattr(self, name)
            if name not in _HIDDEN and value != _DEFAULTS[name]:
                shown[name] = value.value if isinstance(value, State) else value
        if self.metadata:
            shown["metadata"] = json.loads(self.metadata)
        return shown


class Fields(TypedDict, total=False):
    """Fields a change writes (a subset of :class:`Record`'s, with the same types)."""

    state: State
    body: str
    body_hash: str
    job_name: str
    content_id: str
    entry_id: str
    metadata: str
    site_id: str
    priority: str
    created_at: float
    updated_at: float
    attempts: int
    deliveries: int
    submitting_at: float
    mark_run: str
    sent_at: float
    attempt_ended_at: float
    last_error: str
    last_code: str
    unknown_code: str
    unknown_message: str
    lookup_failures: int
    retries: int
    retried_at: float
    job_id: str
    submitted_at: float
    status: str
    status_meaning: str
    poll_failures: int
    last_seen: str
    output_path: str
    finished_at: float
    error_stage: str
    error_code: str
    error_message: str


# --- The codec --------------------------------------------------------------------------------

_Codec = tuple[Callable[[Any], str], Callable[[str], Any]]

_BY_TYPE: dict[Any, _Codec] = {
    str: (str, str),
    int: (str, lambda text: int(text) if text else 0),
    float: (repr, lambda text: float(text) if text else 0.0),
    State: (lambda value: State(value).value, State),
}
_HINTS = typing.get_type_hints(Record)
#: Each stored field's (encode, decode), from Record's annotations (request_id is the key).
_CODECS: dict[str, _Codec] = {
    f.name: _BY_TYPE[_HINTS[f.name]] for f in dataclasses.fields(Record) if f.name != "request_id"
}
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Record) if f.name in _CODECS}
_HIDDEN = {"body", "body_hash", "state", "version", "events"}

#: Fields only the scripts write.
_SCRIPTED = {"version", "events"}
_WRITABLE = {name: _HINTS[name] for name in _CODECS if name not in _SCRIPTED}
if typing.get_type_hints(Fields) != _WRITABLE:  # pragma: no cover
    raise TypeError("Fields must have Record's fields (but version), with the same types")


def encode(fields: Mapping[str, Any]) -> dict[str, str]:
    """The hash fields that store ``fields`` (a :class:`Fields`: never ``version`` or
    ``events``, which only the scripts write)."""
    unknown = sorted(set(fields) - _WRITABLE.keys())
    if unknown:
        raise ValueError(f"not a writable field of the request record: {', '.join(unknown)}")
    return {name: _CODECS[name][0](value) for name, value in fields.items()}


def decode(request_id: str, raw: Mapping[str, str]) -> Record:
    """The record stored as ``raw`` (fields it does not know are ignored)."""
    values = {name: _CODECS[name][1](text) for name, text in raw.items() if name in _CODECS}
    return Record(request_id, **values)
