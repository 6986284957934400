"""``pallycon-pack tokens``: the HTTP API's bearer tokens (their options and help; the work is in
:mod:`.run`). A token is printed once, when added; Redis keeps only its SHA-256 (docs/HTTP.md).
"""

from __future__ import annotations

import click


@click.group()
def tokens() -> None:
    """Manage the bearer tokens of the HTTP API: one per upstream system.

    Kept in Redis as their SHA-256 only: a token is printed once, by add, and never again.
    A change holds for every pallycon-pack http process at its next request.
    """


@tokens.command()
@click.argument("name")
@click.option(
    "--site",
    "sites",
    multiple=True,
    metavar="SITE_ID",
    help="Only the requests of this site (repeatable): others are not found, and submitting "
    "for another is refused. Default: every site.",
)
@click.option("--read-only", is_flag=True, help="May read requests, never submit or change one.")
def add(name: str, sites: tuple[str, ...], read_only: bool) -> None:
    """Add a token named NAME: print it (this once) on standard output.

    NAME: 1 to 64 letters, digits, '.', '_' or '-' (the upstream system's name). Exit 2 when
    the name is taken or a site is not a site id; 3 when Redis is unavailable.
    """
    from pallycon_pack.cli.tokens import run

    run.add(name, sites, read_only)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array (never a token).")
def list_(as_json: bool) -> None:
    """List the tokens: name, sites, read-only, when added (never a token)."""
    from pallycon_pack.cli.tokens import run

    run.list_(as_json)


@tokens.command()
@click.argument("name")
def remove(name: str) -> None:
    """Remove the token NAME: refused from the next request on. Exit 2 for an unknown name."""
    from pallycon_pack.cli.tokens import run

    run.remove(name)
