"""The work of ``tokens add|list|remove``: the tokens in Redis (:mod:`pallycon_store.tokens`)."""

from __future__ import annotations

import time
from typing import Any

import click

from pallycon_config import load_settings
from pallycon_pack.present import render
from pallycon_pack.present.flow import unserved_sites_line
from pallycon_store import sites
from pallycon_store.events import iso
from pallycon_store.tokens import ApiToken, Tokens
from pallycon_store.wiring import Store


def _tokens() -> Tokens:
    store = Store.of(load_settings())
    return Tokens(store.redis, store.keys)


def _warn_unserved(tokens: Tokens, requested: tuple[str, ...]) -> None:
    """One warning line when a site of ``--site`` is served by no worker (as ``webhooks add
    --site`` says it)."""
    known = sites.book(tokens.redis, tokens.keys, default=load_settings().site_id)
    line = unserved_sites_line(
        requested, known.ids, "requests submitted for it fail (unknown site) until one does"
    )
    if line:
        click.echo(line, err=True)


def _row(token: ApiToken) -> dict[str, Any]:
    return {
        "name": token.name,
        "sites": list(token.sites),
        "read_only": token.read_only,
        "created_at": iso(token.created_at),
    }


def add(name: str, sites: tuple[str, ...], read_only: bool) -> None:
    """``add``: the token on stdout (this once), what it may do on stderr."""
    tokens = _tokens()
    token, stored = tokens.add(name, time.time(), sites=sites, read_only=read_only)
    click.echo(token)
    scope = f"sites {', '.join(stored.sites)}" if stored.sites else "every site"
    mode = "read-only" if stored.read_only else "read and write"
    click.echo(
        f"token {stored.name} added ({mode}, {scope}); it is shown this once: keep it now",
        err=True,
    )
    if stored.sites:
        _warn_unserved(tokens, stored.sites)


def list_(as_json: bool) -> None:
    """``list``: every token, never one's value."""
    found = _tokens().list()
    if as_json:
        render.emit_json([_row(token) for token in found])
        return
    if not found:
        click.echo("no tokens (add one with: pallycon-pack tokens add NAME)", err=True)
        return
    width = max(len(token.name) for token in found)
    for token in found:
        row = _row(token)
        sites = ",".join(row["sites"]) or "*"
        mode = "read-only" if token.read_only else "read-write"
        click.echo(f"{token.name:<{width}}  {mode:<10}  sites={sites}  added {row['created_at']}")


def remove(name: str) -> None:
    """``remove``: the token is refused from the next request on."""
    _tokens().remove(name)
    click.echo(f"token {name} removed", err=True)
