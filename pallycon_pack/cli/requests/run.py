"""The work of requests list|show|reindex, retry and cancel: the state indexes, re-drive and
cancel."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.table import Table

from pallycon_config import UnknownSite, load_settings
from pallycon_pack.errors import EXIT_FAILED, EXIT_INVALID, EXIT_NOT_FOUND, Failure
from pallycon_pack.interrupts import on_interrupt
from pallycon_pack.present import render
from pallycon_pack.present.flow import cancel_line
from pallycon_pack.present.records import (
    detail,
    explained,
    parse_since,
    shown,
    timeline_line,
)
from pallycon_store.cancel import Cancel, CancelOutcome, plan_cancel
from pallycon_store.cancel import cancel as cancel_one
from pallycon_store.events import State, iso
from pallycon_store.flow import Priority, stored_priority
from pallycon_store.overview import Overview
from pallycon_store.record import Record
from pallycon_store.redrive import Retry, plan_retry
from pallycon_store.redrive import retry as redrive
from pallycon_store.wiring import Store


def _overview() -> Overview:
    return Store.of(load_settings()).overview()


def site_option(overview: Overview, site: str | None) -> str | None:
    """``--site``: None for every site, "" for the default one, else a site the workers serve
    (Failure naming the sites otherwise)."""
    try:
        return overview.site_filter(site)
    except UnknownSite as exc:  # worded as every command words it
        raise Failure(f"--site: {exc.reason}", EXIT_INVALID) from None


def of_priority(priority: str | None) -> Callable[[Record], bool] | None:
    """``--priority``: whether a record has it (a record's "" is normal); None for every
    priority."""
    if priority is None:
        return None
    wanted = Priority(priority)
    return lambda record: stored_priority(record.priority) == wanted


def list_requests(
    state: str | None,
    since: str | None,
    site: str | None,
    priority: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Newest first, by when each entered its state; read from an index kept by state."""
    after = parse_since(since, time.time()) if since else None
    overview = _overview()
    of = site_option(overview, site)
    found = overview.list(
        State(state) if state else None,
        since=after,
        limit=limit,
        site=of,
        where=of_priority(priority),
    )
    if overview.unreadable:
        click.echo(f"({overview.unreadable} records this version cannot read left out)", err=True)
    if as_json:
        render.emit_json([shown(record) for record in found])
        return
    by_site = any(record.site_id for record in found)
    book = overview.book()
    columns = ["request", "state", "updated (UTC)", "job", "status / error", "content"]
    table = _table(*columns[:2], *(["site"] if by_site else []), "priority", *columns[2:])
    for record in found:
        table.add_row(
            record.request_id,
            record.state.value,
            *([book.label(record.site_id)] if by_site else []),
            stored_priority(record.priority).value,
            _updated(record),
            record.job_id or "-",
            detail(record)[:120] or "-",
            record.content_id or "-",
        )
    render.console().print(table)
    if not found:
        where = (
            (f" in state {state}" if state else "")
            + (f" of site {site}" if site else "")
            + (f" of priority {priority}" if priority else "")
        )
        click.echo("no requests" + where, err=True)


def _table(*columns: str) -> Any:
    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _updated(record: Record) -> str:
    when = record.updated_at or record.created_at
    return iso(when)[:19].replace("T", " ") if when else "-"


def show(request_id: str, as_json: bool) -> None:
    """A request's record and the timeline of its events, readable by a person."""
    overview = _overview()
    try:
        record = overview.get(request_id)
    except (ValueError, TypeError) as exc:
        raise Failure(
            f"request {request_id}: a record this version cannot read: {exc}", EXIT_FAILED
        ) from None
    if record is None:
        raise Failure(f"no request {request_id} (or its record expired)", EXIT_NOT_FOUND)
    events = overview.timeline(request_id)
    if as_json:
        render.emit_json({"record": explained(record), "events": events})
        return
    data = explained(record)
    if "site_id" not in data:  # the default site: said, not left to be guessed
        site = {"site_id": f"{overview.default_label()} (the default site)"}
        data = {**{k: data[k] for k in ("request_id", "state")}, **site, **data}
    for key, value in data.items():
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
        click.echo(f"{key:17} {text}")
    click.echo("")
    if len(events) < len(record.events.split()):
        click.echo(f"(older events trimmed from the result stream: {len(events)} left)")
    for item in events:
        click.echo(timeline_line(item))


def reindex() -> None:
    """Put every request in the index of its state (after upgrading from a version without)."""
    added, dropped = _overview().reindex()
    click.echo(f"{added} index entries added, {dropped} dropped")


def retry(
    request_ids: tuple[str, ...],
    state: str | None,
    since: str | None,
    codes: tuple[str, ...],
    site: str | None,
    limit: int,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Re-drive failed requests under the same request id (their history goes on)."""
    if (since or codes or site) and not state:
        raise Failure("--since, --code and --site select with --state failed", EXIT_INVALID)
    if bool(request_ids) == bool(state):
        raise Failure("give request ids, or --state failed (not both)", EXIT_INVALID)
    store = Store.of(load_settings())
    records = store.records
    now = time.time()
    on_interrupt(
        "interrupted: some requests may be retried already; running the same command again "
        "is safe (a request no longer failed is skipped)"
    )
    more = False  # --limit left some matching requests out
    try:
        if state:
            request_ids, more = _failed(store, since, codes, site, limit, now)
            if not request_ids:
                click.echo("no failed requests match", err=True)
                return
        if dry_run:
            found = records.get_many(request_ids)
            done = [plan_retry(found.get(r), r, now) for r in dict.fromkeys(request_ids)]
        else:
            done = redrive(records, store.durability, request_ids, now)
    except (ValueError, TypeError) as exc:  # a record written by a newer version, say
        raise Failure(f"a record this version cannot read: {exc}", EXIT_FAILED) from None
    for outcome in done:
        _say_retry(outcome, dry_run, as_json)
    if state and more:
        _more_match("failed", limit, dry_run)
    if not all(outcome.done for outcome in done) and not state:
        raise Failure(
            f"{sum(not o.done for o in done)} of {len(done)} requests not retried", EXIT_FAILED
        )


def _say_retry(outcome: Retry, dry_run: bool, as_json: bool) -> None:
    """One retry's line (or JSON object)."""
    if as_json:
        action = outcome.action.value if outcome.action else None
        render.emit_json(
            {
                "request_id": outcome.request_id,
                "action": action,
                "reason": outcome.reason,
                "dry_run": dry_run,
            }
        )
        return
    verb = (outcome.action.value if outcome.action else "skipped").ljust(9)
    would = "would " if dry_run and outcome.action else ""
    click.echo(f"{outcome.request_id}  {would}{verb}  {outcome.reason}")


T = TypeVar("T")


def _failed(
    store: Store,
    since: str | None,
    codes: tuple[str, ...],
    site: str | None,
    limit: int,
    now: float,
) -> tuple[tuple[str, ...], bool]:
    """The failed requests ``retry --state failed`` selects (at most ``limit``), and whether
    more match."""
    after = parse_since(since, now) if since else None
    overview = store.overview()
    failed, more = _at_most(
        overview.list(
            State.FAILED,
            since=after,
            limit=limit + 1,  # one more: to tell the user that more match
            where=(lambda r: r.error_code in codes) if codes else None,
            site=site_option(overview, site),
        ),
        limit,
    )
    return tuple(r.request_id for r in failed), more


def _at_most(found: list[T], limit: int) -> tuple[list[T], bool]:
    """The first ``limit`` of ``found`` (read with one more), and whether more matched."""
    return found[:limit], len(found) > limit


def _more_match(state: str, limit: int, dry_run: bool) -> None:
    """One line on stderr: --limit left matching requests alone."""
    again = "raise --limit" if dry_run else "run the same command again (or raise --limit)"
    click.echo(f"more {state} requests match than --limit {limit}: {again}", err=True)


#: Outcomes of a cancel that leave a request given by id not cancelled (exit 1).
NOT_CANCELLED = (CancelOutcome.UNKNOWN, CancelOutcome.BUSY)


def cancel(
    request_ids: tuple[str, ...],
    state: str | None,
    since: str | None,
    site: str | None,
    limit: int,
    reason: str,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Cancel unfinished requests, given by id or selected by state: one line each."""
    if (since or site) and not state:
        raise Failure("--since and --site select with --state", EXIT_INVALID)
    if bool(request_ids) == bool(state):
        raise Failure("give request ids, or --state (not both)", EXIT_INVALID)
    store = Store.of(load_settings())
    now = time.time()
    on_interrupt(
        "interrupted: some requests may be cancelled already; running the same command again "
        "is safe (an ended request is left alone)"
    )
    more = False  # --limit left some matching requests out
    try:
        if state:
            overview = store.overview()
            after = parse_since(since, now) if since else None
            chosen, more = _at_most(
                overview.list(
                    State(state), since=after, limit=limit + 1, site=site_option(overview, site)
                ),
                limit,
            )
            request_ids = tuple(record.request_id for record in chosen)
            if not request_ids:
                click.echo(f"no {state} requests match", err=True)
                return
        ids = list(dict.fromkeys(request_ids))
        if dry_run:
            found = store.records.get_many(ids)
            done = [plan_cancel(found.get(r), r, now, reason) for r in ids]
        else:
            done = [cancel_one(store.records, r, now, reason) for r in ids]
    except (ValueError, TypeError) as exc:  # a record written by a newer version, say
        raise Failure(f"a record this version cannot read: {exc}", EXIT_FAILED) from None
    for outcome in done:
        _say_cancel(outcome, dry_run, as_json)
    if state and more:
        _more_match(state, limit, dry_run)
    left = [o for o in done if o.outcome in NOT_CANCELLED]
    if left:
        counts = ", ".join(
            f"{sum(o.outcome is kind for o in left)} {kind.value}"
            for kind in NOT_CANCELLED
            if any(o.outcome is kind for o in left)
        )
        # Only unknown ids: bad input, as for status; one kept changing: run it again.
        code = (
            EXIT_NOT_FOUND if all(o.outcome is CancelOutcome.UNKNOWN for o in left) else EXIT_FAILED
        )
        raise Failure(f"{len(left)} of {len(done)} requests not cancelled ({counts})", code)


def _say_cancel(outcome: Cancel, dry_run: bool, as_json: bool) -> None:
    if as_json:
        render.emit_json(
            {
                "request_id": outcome.request_id,
                "outcome": outcome.outcome.value,
                "message": outcome.message,
                "dry_run": dry_run,
            }
        )
    else:
        click.echo(cancel_line(outcome, dry_run))
