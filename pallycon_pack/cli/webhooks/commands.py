"""``pallycon-pack webhooks``: the endpoints signed webhooks go to (their options and help; the
work is in :mod:`.run`). Endpoints are kept in Redis; their secrets are encrypted there with
PALLYCON_WEBHOOK_KEY and never printed, but once when generated (docs/WEBHOOKS.md).
"""

from __future__ import annotations

import click

#: ``--since`` of ``failures`` and ``replay``: by when each went to the dead-letter list.
DEAD_SINCE_HELP = (
    "Only those that went to the dead-letter list since T: an ISO 8601 time "
    "(2026-11-26T10:00Z) or a duration back from now (90s, 30m, 2h, 7d)."
)
FILE_OPTION_HELP = (
    "Read the endpoint's secret (whsec_ + base64 of 24 to 64 bytes) from FILE ('-' = standard "
    "input). Without it a secret is generated and printed once."
)


@click.group()
def webhooks() -> None:
    """Manage the endpoints signed webhooks (Standard Webhooks) go to.

    Endpoints are kept in Redis: a change holds for every process at once. Their secrets are
    encrypted there with PALLYCON_WEBHOOK_KEY (needed by add, rotate-secret, test and the
    workers, which deliver the result events to the endpoints: docs/WEBHOOKS.md).
    """


@webhooks.command()
@click.argument("url")
@click.option("--secret-file", metavar="FILE", help=FILE_OPTION_HELP)
@click.option(
    "--events",
    default="",
    metavar="TYPES",
    help="Comma-separated event types to receive (completed,failed,...); by default the "
    "outcomes: completed, failed, cancelled, stopped, rejected.",
)
@click.option("--site", metavar="SITE_ID", help="Only the requests of this site (default: all).")
@click.option(
    "--allow-private",
    is_flag=True,
    help="Allow loopback, private and link-local addresses, and plain http:// (a receiver "
    "inside your network); refused otherwise (SSRF).",
)
def add(
    url: str, secret_file: str | None, events: str, site: str | None, allow_private: bool
) -> None:
    """Add an endpoint: print its id (and a generated secret, this once).

    The URL is https:// (http:// only with --allow-private), with a host and no user or
    password; a host written as an address is checked at once, a name at each delivery (and
    resolved once now: a warning line if a delivery could not reach it now).
    Exit 0; 2 for a URL, secret, event type or site that cannot be used, or
    PALLYCON_WEBHOOK_KEY unset; 3 when Redis is unavailable.
    """
    from pallycon_pack.cli.webhooks import run

    run.add(url, secret_file, events, site, allow_private)


@webhooks.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array (no secrets).")
def list_(as_json: bool) -> None:
    """List the endpoints: URL, state, events, site, secrets signing (never a secret), and
    their deliveries: pending (due, in flight, the oldest's age), dead-lettered, the last 2xx,
    failing since when and the last attempt's outcome."""
    from pallycon_pack.cli.webhooks import run

    run.list_(as_json)


@webhooks.command()
@click.argument("endpoint_id", metavar="ID")
def remove(endpoint_id: str) -> None:
    """Remove an endpoint: nothing more is sent to it. Exit 2 for an unknown id."""
    from pallycon_pack.cli.webhooks import run

    run.remove(endpoint_id)


@webhooks.command("rotate-secret")
@click.argument("endpoint_id", metavar="ID")
@click.option("--secret-file", metavar="FILE", help=FILE_OPTION_HELP)
def rotate_secret(endpoint_id: str, secret_file: str | None) -> None:
    """Give an endpoint a new secret; the old one signs beside it for 24 hours.

    Each delivery meanwhile carries one signature per secret, so the receiver can switch to
    the new secret at any time in those 24 hours. Exit 2 for an unknown id.
    """
    from pallycon_pack.cli.webhooks import run

    run.rotate(endpoint_id, secret_file)


@webhooks.command()
@click.argument("endpoint_id", metavar="ID")
def test(endpoint_id: str) -> None:
    """Send one signed test event (type webhook.test) to an endpoint now; print the outcome.

    As a delivery would: the host resolved and its addresses checked (unless the endpoint
    allows private ones), PALLYCON_WEBHOOK_TIMEOUT (15 s) to connect and per read, redirects
    not followed, only a 2xx counts. One line says the status and what it would mean for a
    delivery. Exit 0 when delivered, 1 when not,
    2 for an unknown id.
    """
    from pallycon_pack.cli.webhooks import run

    run.test(endpoint_id)


@webhooks.command()
@click.option("--endpoint", "endpoint_id", metavar="ID", help="Only this endpoint's.")
@click.option("--since", metavar="T", help=DEAD_SINCE_HELP)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def failures(endpoint_id: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """List the dead-letter list: deliveries that ran out of attempts, or whose endpoint was
    disabled, newest first.

    Each: the endpoint, the webhook-id, the webhook's type as the receiver sees it
    (request.completed), the attempts and when it went there; then why, and the last
    attempt's outcome. Exit 2 for an unknown endpoint id.
    """
    from pallycon_pack.cli.webhooks import run

    run.failures(endpoint_id, since, limit, as_json)


@webhooks.command()
@click.option("--endpoint", "endpoint_id", metavar="ID", help="Only this endpoint's.")
@click.option("--since", metavar="T", help=DEAD_SINCE_HELP)
def replay(endpoint_id: str | None, since: str | None) -> None:
    """Send the dead-lettered deliveries again (their attempts reset, due now); one line says
    how many.

    The same webhook-id as before (the receiver dedupes on it). A disabled endpoint's are
    refused (enable it first); without --endpoint, those of disabled endpoints are left. Exit
    2 for an unknown or disabled endpoint.
    """
    from pallycon_pack.cli.webhooks import run

    run.replay(endpoint_id, since)


@webhooks.command()
@click.argument("endpoint_id", metavar="ID")
def enable(endpoint_id: str) -> None:
    """Enable an endpoint again: deliveries resume (its dead-letter list stays: replay it).

    Exit 2 for an unknown id.
    """
    from pallycon_pack.cli.webhooks import run

    run.enable(endpoint_id)


@webhooks.command()
@click.argument("endpoint_id", metavar="ID")
@click.option(
    "--reason", default="disabled by hand", show_default=True, help="Why (shown by list)."
)
def disable(endpoint_id: str, reason: str) -> None:
    """Disable an endpoint: nothing more is sent to it, no event is kept for it, and its
    pending deliveries go to its dead-letter list. Exit 2 for an unknown id.
    """
    from pallycon_pack.cli.webhooks import run

    run.disable(endpoint_id, reason)
