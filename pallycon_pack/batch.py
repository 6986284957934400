"""``submit --batch FILE.jsonl``: many requests from a file, all validated before any is recorded.

Each line of the file is one request, ``{"body": {...}, "request_id": "...", "metadata": {...}}``
(``request_id`` and ``metadata`` optional; blank lines are skipped). The file is read twice, a
line at a time, so memory stays bounded whatever its size: first every line is checked (JSON,
shape, the job's rules, the metadata, an id given twice with different bodies, an id already
used in Redis for a different body) and every bad line is reported with its number; only a file
with none is recorded, :data:`CHUNK` requests per :meth:`Producer.submit_many` call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from pallycon.errors import InvalidRequest
from store.admission import prepare

if TYPE_CHECKING:
    from producers.api import Producer

#: Requests recorded per ``submit_many`` call (one script, one transaction, one fsync).
CHUNK = 500
#: The longest line, in bytes; a longer one is an error (and is never held in memory whole).
MAX_LINE_BYTES = 256 * 1024
#: Bad lines reported one by one; the rest are counted.
MAX_REPORTED = 20
_KEYS = {"body", "request_id", "metadata"}


@dataclass(frozen=True)
class Line:
    """One request of the file."""

    number: int
    body: Any
    request_id: str | None
    metadata: Any


@dataclass
class Checked:
    """What the first pass found."""

    requests: int = 0
    existing: int = 0  # ids already recorded with the same body (nothing new enqueued for them)
    bad_lines: int = 0
    errors: list[str] = field(default_factory=list)  # at most MAX_REPORTED

    def bad(self, number: int, message: str) -> None:
        self.bad_lines += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(f"line {number}: {message}")


def parse(number: int, text: str) -> Line:
    """A line's request (raises ValueError with the reason)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError('not a JSON object {"body": {...}, "request_id": ..., "metadata": ...}')
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} (body, request_id, metadata)")
    if "body" not in data:
        raise ValueError("body: missing (the job registration)")
    request_id = data.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise ValueError("request_id: must be a string")
    return Line(number, data["body"], request_id or None, data.get("metadata"))


def lines(file: IO[bytes], on_error: Callable[[int, str], None]) -> Iterator[Line]:
    """The file's requests; each bad line goes to ``on_error`` (its number, why)."""
    number = 0
    while True:
        raw = file.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of it, a piece at a time
                raw = file.readline(MAX_LINE_BYTES)
            on_error(number, f"longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            on_error(number, f"not valid UTF-8 (byte {exc.start})")
            continue
        if not text.strip():
            continue
        try:
            yield parse(number, text)
        except ValueError as exc:
            on_error(number, str(exc))


def check(producer: Producer, path: str) -> Checked:
    """The first pass: every line checked, nothing recorded."""
    checker = _Checker(producer)
    with open(path, "rb") as file:
        for line in lines(file, checker.checked.bad):
            checker.check(line)
    checker.compare()
    return checker.checked


class _Checker:
    """Checks lines one by one; compares the ids given with Redis :data:`CHUNK` at a time."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.checked = Checked()
        self.first: dict[str, tuple[int, str]] = {}  # request id -> (its first line, body hash)
        self.pending: list[tuple[int, str, str]] = []  # (line, id, hash) to compare with Redis

    def check(self, line: Line) -> None:
        try:
            ready = prepare(
                line.body,
                line.request_id,
                0.0,
                max_api_json=self.producer.max_api_json,
                metadata=line.metadata,
            )
        except InvalidRequest as exc:
            self.checked.bad(line.number, "; ".join(str(error) for error in exc.errors))
            return
        self.checked.requests += 1
        if line.request_id is None:
            return
        seen = self.first.setdefault(ready.request_id, (line.number, ready.body_hash))
        if seen[1] != ready.body_hash:
            self.checked.bad(line.number, f"request_id also on line {seen[0]} with another body")
        elif seen[0] == line.number:
            self.pending.append((line.number, ready.request_id, ready.body_hash))
            if len(self.pending) >= CHUNK:
                self.compare()

    def compare(self) -> None:
        """Ids already recorded: with the same body (counted), or another (a bad line)."""
        if not self.pending:
            return
        records = self.producer.records.get_many([rid for _, rid, _ in self.pending])
        for number, rid, digest in self.pending:
            record = records.get(rid)
            if record is None:
                continue
            if record.body_hash != digest:
                message = f"request_id {rid!r} is already used with a different body"
                self.checked.bad(number, message)
            else:
                self.checked.existing += 1
        self.pending.clear()


def chunks(path: str, size: int = CHUNK) -> Iterator[list[Line]]:
    """The second pass: the file's requests (already checked), ``size`` at a time."""

    def invalid(number: int, message: str) -> None:
        raise ValueError(f"line {number} changed since it was checked: {message}")

    chunk: list[Line] = []
    with open(path, "rb") as file:
        for line in lines(file, invalid):
            chunk.append(line)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk
