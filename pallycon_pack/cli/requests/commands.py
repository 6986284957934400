"""The operator's commands on requests: ``requests list``, ``requests show``, ``retry`` and
``cancel``: their options and help.

They read the state indexes (:mod:`pallycon_store.overview`), re-drive failed requests
(:mod:`pallycon_store.redrive`) and cancel unfinished ones (:mod:`pallycon_store.cancel`); they
need Redis only, not the API. The work is in :mod:`.run`,
imported when a command runs, so that showing its help loads none of it.
"""

from __future__ import annotations

import click

from pallycon_config.site_ref import DEFAULT_LABEL
from pallycon_pack.cli.inputs import PRIORITY_NAMES
from pallycon_pack.present.records import SINCE_HELP, STATES
from pallycon_store.failures import FailureCode

CODE_HELP = (
    "With --state: only failures with this code (repeatable): PallyCon's (A1003, WM900013, "
    f"HTTP503, ...) or one of ours: {', '.join(FailureCode)}."
)
SITE_HELP = (
    "Only the requests of this PallyCon site (the default site by its id, or "
    f"'{DEFAULT_LABEL}' when PALLYCON_SITE_ID is not set)."
)


@click.group()
def requests() -> None:
    """List the requests by state, or show one with its history."""


@requests.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only the requests in this state.")
@click.option("--since", help=SINCE_HELP)
@click.option("--site", help=SITE_HELP)
@click.option(
    "--priority",
    type=click.Choice(PRIORITY_NAMES),
    help="Only the requests of this priority (a request given none is normal).",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of records.")
def list_requests(
    state: str | None,
    since: str | None,
    site: str | None,
    priority: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Newest first, by when each entered its state; read from an index kept by state.

    A SITE column when a listed request named a site (in JSON: its site_id); a PRIORITY
    column (in JSON: priority, left out for normal).
    """
    from pallycon_pack.cli.requests import run

    run.list_requests(state, since, site, priority, limit, as_json)


@requests.command("show")
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help='Print {"record": ..., "events": [...]}.')
def show(request_id: str, as_json: bool) -> None:
    """A request's record and the timeline of its events, readable by a person.

    A failed request's record says what its error code means (in JSON: error_meaning).
    """
    from pallycon_pack.cli.requests import run

    run.show(request_id, as_json)


@requests.command("reindex")
def reindex() -> None:
    """Put every request in the index of its state (after upgrading from a version without).

    Scans every request record once (SCAN, in batches) and drops index entries whose request is
    gone or in another state. Safe to run while workers run, and more than once.
    """
    from pallycon_pack.cli.requests import run

    run.reindex()


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
    from pallycon_pack.cli.requests import run

    run.retry(request_ids, state, since, codes, site, limit, dry_run, as_json)


#: The states ``cancel --state`` selects from: the unfinished ones.
CANCELLABLE = ("accepted", "submitting", "submitted")


@click.command()
@click.argument("request_ids", nargs=-1)
@click.option(
    "--state",
    type=click.Choice(CANCELLABLE),
    help="Cancel the requests in this state (with --site, --since, --limit) instead of IDs. "
    "Those submitting or submitted may have a job at PallyCon, which goes on running.",
)
@click.option("--since", help=SINCE_HELP)
@click.option("--site", help="With --state: only the requests of this site (as requests list).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--reason", default="", help="Why, kept in the record and the cancelled event.")
@click.option("--dry-run", is_flag=True, help="Say what each cancel would do; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per request.")
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
    """Cancel requests that have not finished: they end cancelled, one line each saying how.

    One not yet registered (accepted) is never registered. For one that may be (submitting,
    submitted), tracking stops, but its job may still run at PallyCon, which has no cancel
    call: stop it in PallyCon Console. A finished request is left as it is. Kept in Redis: a
    cancel outlives any restart. Exit 0 when every request given was cancelled or had already
    finished, 2 when those left are unknown ids (as status), 1 when one kept changing (run it
    again).
    """
    from pallycon_pack.cli.requests import run

    run.cancel(request_ids, state, since, site, limit, reason, dry_run, as_json)
