"""The sites the workers serve, as they announce them in Redis
(:attr:`pallycon_store.keys.Keys.sites`): site id -> JSON ``{"region", "default",
"max_in_flight"}``, never a secret. Workers write it at start-up and every minute; producers
and readers read it to check or name a request's site."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

import redis

from pallycon_config.site_ref import SiteBook
from pallycon_store.keys import Keys


def announce(
    client: redis.Redis,
    keys: Keys,
    regions: Mapping[str, str],
    default: str | None,
    caps: Mapping[str, int] | None = None,
) -> None:
    """Add these sites (site id -> region; ``default``: the default site's id; ``caps``: each
    one's ``max_in_flight``) to the announced ones. Never removes one: during a rolling update
    an older worker would remove a site the newer ones serve."""
    caps = caps or {}
    mapping: dict[Any, Any] = {
        site: json.dumps(
            {"region": region, "default": site == default, "max_in_flight": caps.get(site, 0)}
        )
        for site, region in regions.items()
    }
    if mapping:
        client.hset(keys.sites, mapping=mapping)


def caps(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """Each announced site's cap of jobs in flight at PallyCon (0: none), by site id."""
    raw = cast(dict[str, str], client.hgetall(keys.sites))
    found = {}
    for site, about in raw.items():
        try:
            found[site] = int(json.loads(about).get("max_in_flight") or 0)
        except (ValueError, AttributeError, TypeError):
            found[site] = 0
    return found


def announced(client: redis.Redis, keys: Keys) -> tuple[str | None, list[str]]:
    """(the default site, if the workers announced one; every site announced, sorted)."""
    raw = cast(dict[str, str], client.hgetall(keys.sites))
    default = None
    for site, about in raw.items():
        try:
            if json.loads(about).get("default") is True:
                default = site
        except (ValueError, AttributeError):  # not written by a worker: not a default
            continue
    return default, sorted(raw)


def book(client: redis.Redis, keys: Keys, *, default: str | None = None) -> SiteBook:
    """The sites the workers announce, as a :class:`SiteBook` worded for the sites served (one
    ``HGETALL``). ``default``: a reader's own default site (its ``PALLYCON_SITE_ID``), which
    wins over the one the workers announce and is among the ids even if none announced it."""
    flagged, every = announced(client, keys)
    chosen = default if default is not None else flagged
    ids = set(every) | ({chosen} if chosen else set())
    return SiteBook(chosen, tuple(sorted(ids)), served=True)
