"""The HTTP API's operations, over Redis (blocking: the app runs them in its thread pool).

Each takes the caller's token (found by :meth:`Service.caller`) and the parsed input, and
returns the JSON to answer, or raises a :class:`~.problems.Problem`. Requests go in through the
producers package (:class:`Producer`: the same validation and admission as ``submit``), are
read as ``requests show`` and ``requests list`` read them (:class:`Overview`), and are retried
and cancelled by the functions ``retry`` and ``cancel`` use.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pallycon.errors import FieldError, InvalidRequest
from pallycon_config import SiteBook, UnknownSite
from pallycon_pack.errors import Failure
from pallycon_pack.present.records import explained, parse_since
from pallycon_pack.web.http_api import access, paging
from pallycon_pack.web.http_api.limits import DEFAULT_PAGE, MAX_BATCH, MAX_PAGE, MAX_READ
from pallycon_pack.web.http_api.problems import FieldProblem, Problem, field_problems, invalid
from pallycon_producers.api import Producer, RequestConflict, SubmitUnconfirmed
from pallycon_producers.lines import BadLine, Line, line_of
from pallycon_store.admission import REQUEST_ID_RE, Submission, prepare
from pallycon_store.cancel import CancelOutcome
from pallycon_store.cancel import cancel as cancel_one
from pallycon_store.events import State
from pallycon_store.overview import Overview
from pallycon_store.record import Record
from pallycon_store.redrive import retry as redrive
from pallycon_store.tokens import ApiToken, Tokens
from pallycon_store.wiring import Store

#: Why a request id used by a request a token may not see cannot be used (all it is told).
UNAVAILABLE = "unavailable: choose another request id (a UUID, say)"
#: A single request's priority when it gives none; a batch's lines' (as ``submit --batch``).
ONE_PRIORITY = "normal"
BATCH_PRIORITY = "bulk"
_INDEXED = re.compile(r"^\[(\d+)\]\.(.*)$")
_ITEM = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class Limits:
    """The per-token limits (``PALLYCON_HTTP_RATE``, ``_BURST``)."""

    rate: float
    burst: int


def idempotency_key(header: str) -> str:
    """The request id an ``Idempotency-Key`` header gives: as it is, or the content of a
    structured-field string (``"movie-1"``, the IETF draft's form); checked by the caller."""
    key = header.strip()
    inner = key[1:-1]
    if len(key) >= 2 and key[0] == key[-1] == '"' and '"' not in inner and "\\" not in inner:
        return inner
    return key


def not_found(request_id: str) -> Problem:
    return Problem("not-found", f"no request {request_id[:200]} (or its record expired)")


def read_only() -> Problem:
    return Problem("forbidden", "this token is read-only", [FieldProblem(None, "read-only token")])


class Service:
    """The operations of the API over one deployment's Redis."""

    def __init__(
        self, store: Store, limits: Limits, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.producer = _producer(store)
        self.tokens = Tokens(store.redis, store.keys)
        self.limits = limits
        self.clock = clock

    def overview(self) -> Overview:
        return self.store.overview()

    # --- Who calls, and how often ----------------------------------------------------------

    def caller(self, authorization: str | None) -> ApiToken:
        """The token of the request's Authorization header; 401 without one that is."""
        token = access.bearer_token(authorization)
        found = self.tokens.find(token) if token else None
        if found is None:
            detail = (
                "a token that is not one (removed, or mistyped)"
                if token
                else "no token: send Authorization: Bearer <token> (pallycon-pack tokens add)"
            )
            raise Problem(
                "unauthorized",
                detail,
                [FieldProblem("Authorization", "a bearer token is required")],
                {"WWW-Authenticate": 'Bearer realm="pallycon-pack"'},
            )
        return found

    def throttle(self, token: ApiToken) -> None:
        """Take one from the token's bucket; 429 with Retry-After when it is empty."""
        bucket = self.tokens.bucket(token.name, rate=self.limits.rate, burst=self.limits.burst)
        wait = bucket.take()
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise Problem(
                "too-many-requests",
                f"more than {self.limits.rate:g} requests per second (burst "
                f"{self.limits.burst}) for this token: try again in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )

    def ready(self) -> None:
        self.store.redis.ping()

    # --- Submitting --------------------------------------------------------------------------

    def submit(self, token: ApiToken, payload: Any, key: str | None) -> tuple[dict[str, Any], bool]:
        """One request: (its record, whether it is new)."""
        if token.read_only:
            raise read_only()
        try:
            line = line_of(1, payload)
        except BadLine as exc:
            raise invalid([FieldProblem(exc.field, exc.reason)]) from None
        if key is not None:
            key = idempotency_key(key)
            if not REQUEST_ID_RE.match(key):
                message = "1-128 of letters, digits and . _ : - (starting alnum)"
                raise invalid([FieldProblem("Idempotency-Key", message)])
            if line.request_id not in (None, key):
                message = "differs from the Idempotency-Key header (give one, or the same)"
                raise invalid([FieldProblem("request_id", message)])
            line = Line(1, line.body, key, line.metadata, line.site_id, line.priority)
        book = self.producer.site_book()
        self._check_scope(token, book, [line])
        started = self.clock()
        try:
            (request_id,) = self._submit([line], ONE_PRIORITY)
        except InvalidRequest as exc:
            raise invalid(field_problems(exc.errors)) from None
        except RequestConflict as exc:
            raise self._taken(token, book, exc.request_ids, {}) from None
        record = self.producer.get(request_id)
        if record is None:  # expired at once: it was recorded
            raise Problem("unavailable", f"request {request_id} recorded, but not read back")
        return {"record": explained(record)}, record.created_at >= started

    def submit_batch(self, token: ApiToken, items: Sequence[tuple[int, Any]]) -> dict[str, Any]:
        """Many requests, all or nothing: a result per item, each named by its line."""
        if token.read_only:
            raise read_only()
        if len(items) > MAX_BATCH:
            raise Problem(
                "payload-too-large",
                f"{len(items)} items: a batch takes {MAX_BATCH} at most (send several)",
            )
        if not items:
            raise invalid([FieldProblem(None, "no item: send at least one")], "the batch")
        lines, bad = [], []
        for number, data in items:
            try:
                lines.append(line_of(number, data))
            except BadLine as exc:
                bad.append(FieldProblem(exc.field, exc.reason, number))
        book = self.producer.site_book()
        if bad:  # the others checked too, as submit --batch does: every bad item named at once
            bad += self._check(lines, book)
            bad.sort(key=lambda problem: problem.line or 0)
            raise invalid(bad, f"{len({b.line for b in bad})} item(s) of the batch")
        self._check_scope(token, book, lines)
        started = self.clock()
        try:
            ids = self._submit(lines, BATCH_PRIORITY)
        except InvalidRequest as exc:
            problems = [_on_line(error, lines) for error in exc.errors]
            lines_at_fault = len({p.line for p in problems})
            raise invalid(problems, f"{lines_at_fault} item(s) of the batch") from None
        except RequestConflict as exc:
            at = {line.request_id: line.number for line in reversed(lines) if line.request_id}
            raise self._taken(token, book, exc.request_ids, at) from None
        records = self.producer.records.get_many(list(dict.fromkeys(ids)))
        results = []
        for line, request_id in zip(lines, ids, strict=True):
            record = records.get(request_id)
            created = record is not None and record.created_at >= started
            results.append({"line": line.number, "request_id": request_id, "created": created})
        created_ids = {r["request_id"] for r in results if r["created"]}
        return {
            "results": results,
            "created": len(created_ids),
            "existing": len(set(ids) - created_ids),
        }

    def _check(self, lines: Sequence[Line], book: SiteBook) -> list[FieldProblem]:
        """What the admission finds wrong with ``lines`` (nothing is written)."""
        submissions = [
            Submission(
                line.body,
                line.request_id,
                line.metadata,
                line.site_id,
                priority=line.priority_or(BATCH_PRIORITY),
            )
            for line in lines
        ]
        try:
            prepare(submissions, self.clock(), sites=book, limits=self.producer.limits)
        except InvalidRequest as exc:
            return [_on_line(error, lines) for error in exc.errors]
        return []

    def _check_scope(self, token: ApiToken, book: SiteBook, lines: Sequence[Line]) -> None:
        """403 naming ``site_id`` (and the line, in a batch) for a site the token may not
        submit for. A site no worker serves is left to the admission (422)."""
        forms = access.site_forms(token, book)
        if forms is None:
            return
        refused = []
        for line in lines:
            try:
                stored = book.stored(line.site_id)
            except UnknownSite:
                continue
            why = access.scope_refusal(token, forms, stored)
            if why is not None:
                refused.append(
                    FieldProblem("site_id", why, line.number if len(lines) > 1 else None)
                )
        if refused:
            raise Problem("forbidden", refused[0].message, refused)

    def _taken(
        self,
        token: ApiToken,
        book: SiteBook,
        request_ids: Sequence[str],
        lines: dict[str, int],
    ) -> Problem:
        """The problem of ids used by other bodies (``lines``: the line of each, in a batch):
        409; 422 if any is of a request ``token`` may not see, saying only that it is
        unavailable (a scoped token learns nothing of other sites' requests)."""
        forms = access.site_forms(token, book)
        hidden: frozenset[str] = frozenset()
        if forms is not None:
            records = self.producer.records.get_many(list(request_ids))
            sites = {i: (r.site_id if (r := records.get(i)) else None) for i in request_ids}
            hidden = access.hidden_ids(sites, forms)
        problems = [
            FieldProblem(
                "request_id",
                UNAVAILABLE if request_id in hidden else "already used with a different body",
                lines.get(request_id),
            )
            for request_id in request_ids
        ]
        named = ", ".join(request_ids)[:300]
        if hidden:
            return Problem("invalid-request", f"request id(s) unavailable: {named}", problems)
        detail = f"request id(s) used by requests with another body: {named}"
        return Problem("conflict", detail, problems)

    def _submit(self, lines: Sequence[Line], priority: str) -> list[str]:
        try:
            return self.producer.submit_many(
                [line.body for line in lines],
                [line.request_id for line in lines],
                metadata=[line.metadata for line in lines],
                site_ids=[line.site_id for line in lines],
                priorities=[line.priority_or(priority) for line in lines],
            )
        except SubmitUnconfirmed as exc:
            raise Problem(
                "unavailable",
                f"Redis did not confirm the write ({exc.__cause__}); send the same request "
                "again with the same request id (Idempotency-Key), which is safe",
                headers={"Retry-After": "1"},
            ) from None

    # --- Reading -----------------------------------------------------------------------------

    def visible(self, token: ApiToken, request_id: str) -> Record:
        """The record of ``request_id`` if ``token`` may see it; 404 otherwise (another site's
        request is answered as one that does not exist)."""
        if not REQUEST_ID_RE.match(request_id):
            raise not_found(request_id)
        overview = self.overview()
        try:
            record = overview.get(request_id)
        except (ValueError, TypeError) as exc:
            raise Problem(
                "internal-error", f"request {request_id}: a record this version cannot read: {exc}"
            ) from None
        if record is None:
            raise not_found(request_id)
        forms = access.site_forms(token, overview.book()) if token.sites else None
        if not access.may_see(record.site_id, forms):
            raise not_found(request_id)
        return record

    def show(self, token: ApiToken, request_id: str) -> dict[str, Any]:
        record = self.visible(token, request_id)
        return {"record": explained(record), "events": self.overview().timeline(request_id)}

    def page(
        self,
        token: ApiToken,
        *,
        state: str | None,
        site: str | None,
        since: str | None,
        cursor: str | None,
        limit: str | None,
    ) -> tuple[list[dict[str, Any]], str | None, float | None, int]:
        """A page: (its records, the next cursor or None, ``since`` as a time, its limit)."""
        after, position, errors = self._query(state, since, cursor)
        size = DEFAULT_PAGE
        if limit is not None:
            if limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MAX_PAGE:
                size = int(limit)
            else:
                errors.append(FieldProblem("limit", f"a whole number from 1 to {MAX_PAGE}"))
        wanted = None
        overview = self.overview()
        book = overview.book()
        if site:
            try:
                wanted = book.filter(site)
            except UnknownSite as exc:
                errors.append(FieldProblem("site", "one of " + ", ".join(exc.known)))
        if errors:
            raise invalid(errors, "the query")
        forms, allowed = access.forms_of_filter(wanted, book, access.site_forms(token, book))
        if not allowed:
            raise Problem(
                "forbidden",
                f"this token may read site(s) {', '.join(token.sites)} only",
                [FieldProblem("site", "not a site of this token")],
            )
        found, more = overview.page(
            State(state) if state else None,
            since=after,
            after=position,
            limit=size,
            sites=forms,
            max_read=MAX_READ,
        )
        shown = [explained(record) for record in found]
        return shown, (paging.encode(more) if more is not None else None), after, size

    def _query(
        self, state: str | None, since: str | None, cursor: str | None
    ) -> tuple[float | None, tuple[float, str] | None, list[FieldProblem]]:
        """A list's ``since`` as a time, its cursor's position, and what is wrong with them
        (and with ``state``)."""
        errors = []
        if state is not None and state not in {s.value for s in State}:
            errors.append(FieldProblem("state", "one of " + ", ".join(s.value for s in State)))
        after = None
        if since is not None:
            try:
                after = parse_since(since, self.clock())
            except Failure:
                message = "an ISO 8601 time (2026-11-26T10:00Z) or a duration (90s, 30m, 2h, 7d)"
                errors.append(FieldProblem("since", message))
            except (OverflowError, ValueError):
                errors.append(FieldProblem("since", "out of range"))
        position = None
        if cursor is not None:
            try:
                position = paging.decode(cursor)
            except paging.BadCursor as exc:
                errors.append(FieldProblem("cursor", str(exc)))
        return after, position, errors

    # --- Acting ------------------------------------------------------------------------------

    def retry(self, token: ApiToken, request_id: str) -> dict[str, Any]:
        if token.read_only:
            raise read_only()
        self.visible(token, request_id)
        (outcome,) = redrive(self.store.records, self.store.durability, [request_id], self.clock())
        if outcome.action is None:
            raise Problem("conflict", f"request {request_id} not retried: {outcome.reason}")
        return {
            "request_id": outcome.request_id,
            "action": outcome.action.value,
            "reason": outcome.reason,
        }

    def cancel(self, token: ApiToken, request_id: str, reason: str) -> dict[str, Any]:
        if token.read_only:
            raise read_only()
        self.visible(token, request_id)
        outcome = cancel_one(self.store.records, request_id, self.clock(), reason)
        if outcome.outcome is CancelOutcome.UNKNOWN:
            raise not_found(request_id)
        if outcome.outcome is CancelOutcome.BUSY:
            raise Problem("conflict", f"request {request_id}: {outcome.message}")
        return {
            "request_id": outcome.request_id,
            "outcome": outcome.outcome.value,
            "message": outcome.message,
        }


def _producer(store: Store) -> Producer:
    settings = store.settings
    return Producer(
        store.records,
        store.durability,
        max_api_json=settings.max_api_json_bytes,
        max_api_json_any_site=settings.max_api_json_bytes_any_site,
    )


def _on_line(error: FieldError, lines: Sequence[Line]) -> FieldProblem:
    """An admission error of a batch (``[index].field``, or ``field`` for a batch of one) on
    the line of its item."""
    match = _INDEXED.match(error.field)
    index, name = (int(match[1]), match[2]) if match else (0, error.field)
    # "also given at [0] with a different body": the item named by its line too
    message = error.message
    if name == "request_id":
        message = _ITEM.sub(
            lambda at: f"line {lines[int(at[1])].number}" if int(at[1]) < len(lines) else at[0],
            message,
        )
    (problem,) = field_problems([FieldError(name, message)], lines[index].number)
    return problem
