"""Commands of the queue: submit, status, results (their options and help; the work is in
:mod:`.run`, imported when a command runs, so that showing its help loads none of it)."""

from __future__ import annotations

from typing import Any

import click

from pallycon_pack.cli.inputs import PRIORITY_HELP, PRIORITY_NAMES

DEFAULT_WAIT = 24 * 3600.0


@click.command()
@click.argument("file", type=click.File("rb"), required=False)
@click.option("--request-id", help="Your id for this request (default: a new UUID).")
@click.option(
    "--metadata",
    "metadata_text",
    metavar="JSON",
    help="Your own JSON object (at most 2 KiB), kept with the request and in all its events.",
)
@click.option(
    "--site",
    "site_id",
    metavar="SITE_ID",
    help="The PallyCon site to package for: one the workers serve (PALLYCON_SITE_ID or a "
    "site of PALLYCON_SITES); default: the workers' default site.",
)
@click.option(
    "--priority",
    type=click.Choice(PRIORITY_NAMES),
    help=f"{PRIORITY_HELP} Default: normal; with --batch, bulk (a backfill must not hold up live "
    'work unless told so), a line\'s own "priority" winning.',
)
@click.option(
    "--batch",
    "batch_path",
    type=click.Path(dir_okay=False),
    metavar="FILE.jsonl",
    help="Many requests: one JSON object per line, "
    '{"body": {...}, "request_id": "...", "metadata": {...}, "site_id": "...", '
    '"priority": "..."} (all but body optional). Every line is checked first (nothing is '
    "recorded if one is bad); their ids are printed.",
)
@click.option("--quiet", is_flag=True, help="With --batch: print no ids, only the summary.")
@click.option(
    "--wait",
    is_flag=True,
    help="Show progress until it ends; exit 0 completed, 1 failed (or cancelled, or stopped at "
    "PallyCon), 4 timed out.",
)
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_WAIT,
    show_default=True,
    help="With --wait: give up after this many seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="With --wait: print events as JSON lines.")
def submit(
    file: Any,
    request_id: str | None,
    metadata_text: str | None,
    site_id: str | None,
    priority: str | None,
    batch_path: str | None,
    quiet: bool,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Enqueue the packaging request in FILE ('-': stdin); print its request id.

    The request is validated first: an invalid one, or one for a site no worker serves, is
    refused (exit 2) and nothing is enqueued.
    With --batch, every line of the file is a request: all are checked first (each bad line is
    named by its number, exit 2, nothing recorded), then recorded 500 at a time, with progress
    on standard error. A request id that was submitted before is not submitted again: its state
    is shown instead (a line without one gets a new id; an empty one is a bad line). Ctrl-C
    during the recording lets the chunk under way finish, then says how many lines are recorded
    and how to record the rest (exit 130).
    Requests wait for their site's turn by priority: one request is normal unless --priority
    says otherwise, a batch's lines bulk (so that a backfill does not delay live work).
    """
    from pallycon_pack.cli.queue import run

    run.submit(
        file,
        request_id,
        metadata_text,
        site_id,
        priority,
        batch_path,
        quiet,
        wait,
        timeout,
        as_json,
    )


@click.command()
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (times in ISO 8601, UTC).")
def status(request_id: str, as_json: bool) -> None:
    """Print a request's state: job id, last status, error.

    Exit code by its state: 0 completed, 1 failed, cancelled or stopped at PallyCon, 4 still in
    flight (accepted, submitting, submitted); 2 if there is no such request.
    """
    from pallycon_pack.cli.queue import run

    run.status(request_id, as_json)


@click.command()
@click.option("--follow", is_flag=True, help="Keep printing new events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
@click.option(
    "--from",
    "after",
    default="0-0",
    show_default=True,
    help="Start after this stream entry id ('$': only new events).",
)
def results(follow: bool, as_json: bool, after: str) -> None:
    """Read the result channel: one event per change of every request."""
    from pallycon_pack.cli.queue import run

    run.results(follow, as_json, after)
