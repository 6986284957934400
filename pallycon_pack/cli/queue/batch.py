"""``submit --batch FILE.jsonl``: many requests from a file, all validated before any is recorded.

Each line of the file is one request, ``{"body": {...}, "request_id": "...", "metadata": {...},
"site_id": "...", "priority": "..."}`` (all but ``body`` optional, but a ``request_id`` given
empty is a bad line: it would be a new id at each run; blank lines are skipped; a line's
priority wins over ``--priority``'s). The file is read twice, a line at a time, so memory
stays bounded whatever its size: first every line is checked (JSON, shape, then the request as
:meth:`Producer.submit_many` admits it (the same :func:`pallycon_store.admission.prepare`: the
job's rules, the metadata, the site: one the workers serve, the default site by None, "" or its
id; the priority), an id given twice with different bodies or sites, an id already used in Redis
for a different body or site) and every bad line is reported with its number; only a file with
none is recorded, :data:`CHUNK` requests per :meth:`Producer.submit_many` call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from pallycon.errors import InvalidRequest
from pallycon_config import SiteBook
from pallycon_pack.cli.inputs import MAX_INPUT_BYTES
from pallycon_producers.lines import BadLine, Line, line_of
from pallycon_store.admission import Submission, prepare

if TYPE_CHECKING:
    from pallycon_producers.api import Producer

#: Requests recorded per ``submit_many`` call (one script, one transaction, one fsync).
CHUNK = 500
#: The longest line, in bytes; a longer one is an error (and is never held in memory whole).
MAX_LINE_BYTES = MAX_INPUT_BYTES
#: Bad lines reported one by one; the rest are counted.
MAX_REPORTED = 20


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
    """A line's request (raises :class:`BadLine`, a ValueError, with the reason)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadLine(None, f"not JSON: {exc}") from None
    return line_of(number, data)


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


def check(producer: Producer, path: str, priority: str) -> Checked:
    """The first pass: every line checked, nothing recorded (``priority``: the batch's, for the
    lines that give none)."""
    checker = _Checker(producer, priority)
    with open(path, "rb") as file:
        for line in lines(file, checker.checked.bad):
            checker.check(line)
    checker.compare()
    return checker.checked


class _Checker:
    """Checks lines one by one; compares the ids given with Redis :data:`CHUNK` at a time."""

    def __init__(self, producer: Producer, priority: str) -> None:
        self.producer = producer
        self.priority = priority
        self.checked = Checked()
        # request id -> (its first line, body hash, site)
        self.first: dict[str, tuple[int, str, str]] = {}
        # (line, id, hash, site) to compare with Redis
        self.pending: list[tuple[int, str, str, str]] = []
        self._book: SiteBook | None = None  # the sites the workers serve, read once

    def book(self) -> SiteBook:
        if self._book is None:
            self._book = self.producer.site_book()
        return self._book

    def check(self, line: Line) -> None:
        given = Submission(
            line.body,
            line.request_id,
            line.metadata,
            line.site_id,
            priority=line.priority_or(self.priority),
        )
        try:
            (ready,) = prepare([given], 0.0, sites=self.book(), limits=self.producer.limits)
        except InvalidRequest as exc:
            self.checked.bad(line.number, "; ".join(str(error) for error in exc.errors))
            return
        site = ready.fields.get("site_id", "")  # as records keep it: "" for the default site
        self.checked.requests += 1
        if line.request_id is None:
            return
        seen = self.first.setdefault(ready.request_id, (line.number, ready.body_hash, site))
        if seen[1] != ready.body_hash:
            other = "site" if seen[2] != site else "body"
            self.checked.bad(line.number, f"request_id also on line {seen[0]} with another {other}")
        elif seen[0] == line.number:
            self.pending.append((line.number, ready.request_id, ready.body_hash, site))
            if len(self.pending) >= CHUNK:
                self.compare()

    def compare(self) -> None:
        """Ids already recorded: with the same body (counted), or another (a bad line)."""
        if not self.pending:
            return
        records = self.producer.records.get_many([rid for _, rid, _, _ in self.pending])
        for number, rid, digest, site in self.pending:
            record = records.get(rid)
            if record is None:
                continue
            if record.body_hash == digest:
                self.checked.existing += 1
            elif record.site_id not in self.book().stored_forms(site):  # a legacy id: the same
                where = f"site {record.site_id}" if record.site_id else "the default site"
                self.checked.bad(number, f"request_id {rid!r} is already used for {where}")
            else:
                message = f"request_id {rid!r} is already used with a different body"
                self.checked.bad(number, message)
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


@dataclass
class Recording:
    """How far the second pass got, for the line an interrupt prints (:meth:`interrupted`)."""

    path: str
    total: int  # the file's requests
    done: int = 0  # recorded (confirmed by Redis)
    last_line: int = 0  # the last line recorded
    unnamed: int = 0  # lines recorded without a request_id (new ids: a second run adds more)
    pending: list[Line] = field(default_factory=list)  # being recorded: maybe recorded

    def recorded(self, chunk: list[Line]) -> None:
        """``chunk`` is recorded (all of it: one call is all or nothing)."""
        self.done += len(chunk)
        self.last_line = chunk[-1].number
        self.unnamed += sum(line.request_id is None for line in chunk)
        self.pending = []

    def interrupted(self) -> str:
        """What an interrupt leaves: how many are recorded, and how to record the rest. Running
        the file again is safe while every line recorded (or maybe recorded) has a request_id:
        those are never recorded twice; a line without one would get a second, new id."""
        head = f"interrupted: {self.done} of {self.total} recorded"
        if self.pending:
            first, last = self.pending[0].number, self.pending[-1].number
            head += f" (lines {first}-{last} maybe)"
        unnamed = self.unnamed + sum(line.request_id is None for line in self.pending)
        if not unnamed:
            return f"{head}; run the same command again to record the rest"
        after = self.pending[0].number - 1 if self.pending else self.last_line
        return (
            f"{head}; submit only the lines after line {after} (tail -n +{after + 1} "
            f"{self.path} > rest.jsonl, then --batch rest.jsonl): {unnamed} recorded line(s) "
            "have no request_id and would be recorded again"
        )
