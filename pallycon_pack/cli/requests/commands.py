"""The operator's commands on requests: ``requests list``, ``requests show`` and ``retry``.

They read the state indexes (:mod:`store.overview`) and re-drive failed requests
(:mod:`store.redrive`); they need Redis only, not the API. Each imports what it runs on when it
runs, so that showing its help loads none of it (but the failure codes ``retry --code`` names,
from the pure :mod:`pallycon_store.failures`).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click
from pallycon_store.failures import FailureCode

from pallycon_pack.errors import EXIT_FAILED, EXIT_INVALID, Failure
from pallycon_pack.present.records import (
    SINCE_HELP,
    STATES,
    detail,
    explained,
    parse_since,
    shown,
    timeline_line,
)

if TYPE_CHECKING:
    from pallycon_store.overview import Overview
    from pallycon_store.record import Record


def _overview() -> Overview:
    from pallycon_config import load_settings
    from pallycon_store.wiring import Store

    return Store.of(load_settings()).overview()


CODE_HELP = (
    "With --state: only failures with this code (repeatable): PallyCon's (A1003, WM900013, "
    f"HTTP503, ...) or one of ours: {', '.join(FailureCode)}."
)
SITE_HELP = (
    "Only the requests of this PallyCon site (the default site by its id, or 'default' when "
    "PALLYCON_SITE_ID is not set)."
)


def site_option(overview: Overview, site: str | None) -> str | None:
    """``--site``: None for every site, "" for the default one, else a site the workers serve
    (Failure naming the sites otherwise)."""
    from pallycon_config import UnknownSite

    try:
        return overview.site_filter(site)
    except UnknownSite as exc:
        served = ", ".join(exc.known)
        raise Failure(f"--site {site!r}: unknown site (sites: {served})", EXIT_INVALID) from None


@click.group()
def requests() -> None:
    """List the requests by state, or show one with its history."""


@requests.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only the requests in this state.")
@click.option("--since", help=SINCE_HELP)
@click.option("--site", help=SITE_HELP)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of records.")
def list_requests(
    state: str | None, since: str | None, site: str | None, limit: int, as_json: bool
) -> None:
    """Newest first, by when each entered its state; read from an index kept by state.

    A SITE column when a listed request named a site (in JSON: its ``site_id``).
    """
    from pallycon_store.events import State

    from pallycon_pack.present import render

    after = parse_since(since, time.time()) if since else None
    overview = _overview()
    of = site_option(overview, site)
    found = overview.list(State(state) if state else None, since=after, limit=limit, site=of)
    if overview.unreadable:
        click.echo(f"({overview.unreadable} records this version cannot read left out)", err=True)
    if as_json:
        render.emit_json([shown(record) for record in found])
        return
    by_site = any(record.site_id for record in found)
    default = overview.default_label() if by_site else ""
    columns = ["request", "state", "updated (UTC)", "job", "status / error", "content"]
    table = _table(*columns[:2], *(["site"] if by_site else []), *columns[2:])
    for record in found:
        table.add_row(
            record.request_id,
            record.state.value,
            *([record.site_id or default] if by_site else []),
            _updated(record),
            record.job_id or "-",
            detail(record)[:120] or "-",
            record.content_id or "-",
        )
    render.console().print(table)
    if not found:
        where = (f" in state {state}" if state else "") + (f" of site {site}" if site else "")
        click.echo("no requests" + where, err=True)


def _table(*columns: str) -> Any:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _updated(record: Record) -> str:
    from pallycon_store.events import iso

    when = record.updated_at or record.created_at
    return iso(when)[:19].replace("T", " ") if when else "-"


@requests.command("show")
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help='Print {"record": ..., "events": [...]}.')
def show(request_id: str, as_json: bool) -> None:
    """A request's record and the timeline of its events, readable by a person.

    A failed request's record says what its error code means (``error_meaning``).
    """
    from pallycon_pack.present import render

    overview = _overview()
    try:
        record = overview.get(request_id)
    except (ValueError, TypeError) as exc:
        raise Failure(
            f"request {request_id}: a record this version cannot read: {exc}", EXIT_FAILED
        ) from None
    if record is None:
        raise Failure(f"no request {request_id} (or its record expired)", EXIT_FAILED)
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


@requests.command("reindex")
def reindex() -> None:
    """Put every request in the index of its state (after upgrading from a version without).

    Scans every request record once (SCAN, in batches) and drops index entries whose request is
    gone or in another state. Safe to run while workers run, and more than once.
    """
    added, dropped = _overview().reindex()
    click.echo(f"{added} index entries added, {dropped} dropped")


@click.command()
@click.argument("request_ids", nargs=-1)
@click.option(
    "--state",
    type=click.Choice(["failed"]),
    help="Retry the requests in this state (with --since, --code, --limit) instead of IDs.",
)
@click.option("--since", help=SINCE_HELP)
@click.option("--code", "codes", multiple=True, help=CODE_HELP)
@click.option("--site", help="With --state: only the failures of this site (as requests list).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--dry-run", is_flag=True, help="Say what each retry would do; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per request.")
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
    """Re-drive failed requests under the same request id (their history goes on).

    A new remote job only when the previous one failed or never existed: a job that may still
    run is polled again, one that may exist is looked up first. Retrying a request that is not
    failed changes nothing. Exit 0 when every request given was retried, 1 otherwise.
    """
    from pallycon_config import load_settings
    from pallycon_store.events import State
    from pallycon_store.redrive import plan_retry
    from pallycon_store.redrive import retry as redrive
    from pallycon_store.wiring import Store

    from pallycon_pack.present import render

    if (since or codes or site) and not state:
        raise Failure("--since, --code and --site select with --state failed", EXIT_INVALID)
    if bool(request_ids) == bool(state):
        raise Failure("give request ids, or --state failed (not both)", EXIT_INVALID)
    store = Store.of(load_settings())
    records = store.records
    now = time.time()
    try:
        if state:
            after = parse_since(since, now) if since else None
            overview = store.overview()
            failed = overview.list(
                State.FAILED,
                since=after,
                limit=limit,
                where=(lambda r: r.error_code in codes) if codes else None,
                site=site_option(overview, site),
            )
            request_ids = tuple(r.request_id for r in failed)
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
        else:
            verb = (outcome.action.value if outcome.action else "skipped").ljust(9)
            would = "would " if dry_run and outcome.action else ""
            click.echo(f"{outcome.request_id}  {would}{verb}  {outcome.reason}")
    if not all(outcome.done for outcome in done) and not state:
        raise Failure(
            f"{sum(not o.done for o in done)} of {len(done)} requests not retried", EXIT_FAILED
        )
