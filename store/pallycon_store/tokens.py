"""The HTTP API's bearer tokens in Redis: one per upstream system, kept as the SHA-256 of the
token only (``Keys.http_tokens``: hash -> JSON of its name, sites and whether it is read-only),
and a name -> hash index (``Keys.http_token_names``) for ``tokens list`` and ``tokens remove``.

A token is ``pph_`` + 43 URL-safe base64 characters (32 random bytes): it is printed once, when
added, and never stored. A request's token is found by hashing it and reading that one field
(:meth:`Tokens.find`): no comparison of secrets, so nothing to time. Every process sees a change
at its next request (the API server reads the token on each one).

The exception tree::

    TokenError            a token's name or sites cannot be used
     ├── TokenNameTaken   a token of that name exists
     └── UnknownToken     no token of that name
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis

from pallycon_config.rules import check_site_id
from pallycon_store.keys import Keys
from pallycon_store.ratelimit import TokenBucket
from pallycon_store.scripts import register

#: What every token starts with (so that a secret scanner, or a person, knows one).
TOKEN_PREFIX = "pph_"  # noqa: S105 - a prefix, not a secret
#: The random bytes of a token.
TOKEN_BYTES = 32
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class TokenError(Exception):
    """A token's name or sites cannot be used; the message says what (never a token)."""


class TokenNameTaken(TokenError):
    """A token of that name exists already."""


class UnknownToken(TokenError):
    """No token has that name."""


def new_token(token_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """A new token: :data:`TOKEN_PREFIX` + URL-safe base64 (unpadded) of 32 random bytes."""
    text = base64.urlsafe_b64encode(token_bytes(TOKEN_BYTES)).decode("ascii").rstrip("=")
    return TOKEN_PREFIX + text


def token_hash(token: str) -> str:
    """What a token is kept and looked up under: the hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    """``name`` if it can name a token: 1 to 64 letters, digits, ``.``, ``_``, ``-``,
    starting with a letter or digit; a TokenError otherwise."""
    if not _NAME.match(name):
        raise TokenError(
            f"token name {name[:80]!r}: 1 to 64 letters, digits, '.', '_' or '-', starting with "
            "a letter or a digit"
        )
    return name


def check_sites(sites: Iterable[str]) -> tuple[str, ...]:
    """The sites a token is scoped to, sorted and each once; a TokenError naming a bad one."""
    for site in sites:
        try:
            check_site_id(site)
        except ValueError as exc:
            raise TokenError(f"--site {site!r}: {exc}") from None
    return tuple(sorted(set(sites)))


@dataclass(frozen=True)
class ApiToken:
    """A token as stored: never the token itself."""

    name: str
    sites: tuple[str, ...]  # the sites its requests may be of; empty: every site
    read_only: bool
    created_at: float

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "sites": list(self.sites),
                "read_only": self.read_only,
                "created_at": self.created_at,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ApiToken:
        data: dict[str, Any] = json.loads(text)
        return cls(
            name=str(data["name"]),
            sites=tuple(str(site) for site in data.get("sites", [])),
            read_only=bool(data.get("read_only", False)),
            created_at=float(data.get("created_at", 0.0)),
        )


class Tokens:
    """The HTTP API tokens of one deployment (its keys), in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._add = register(client, "token_add")
        self._remove = register(client, "token_remove")

    def add(
        self,
        name: str,
        now: float,
        *,
        sites: Iterable[str] = (),
        read_only: bool = False,
        token_bytes: Callable[[int], bytes] = os.urandom,
    ) -> tuple[str, ApiToken]:
        """Add a token: (the token, to be shown once; what is stored). TokenNameTaken when
        ``name`` is used (nothing written)."""
        stored = ApiToken(check_name(name), check_sites(sites), read_only, now)
        token = new_token(token_bytes)
        keys = [self.keys.http_tokens, self.keys.http_token_names]
        if not int(self._add(keys=keys, args=[name, token_hash(token), stored.to_json()])):
            raise TokenNameTaken(
                f"a token named {name!r} exists: remove it first (tokens remove {name}), or "
                "choose another name"
            )
        return token, stored

    def list(self) -> list[ApiToken]:
        """Every token, by name (never a token)."""
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.http_tokens))
        return sorted((ApiToken.from_json(text) for text in raw.values()), key=lambda t: t.name)

    def remove(self, name: str) -> None:
        """Remove the token ``name``: it is refused from the next request on (UnknownToken
        when there is none)."""
        keys = [self.keys.http_tokens, self.keys.http_token_names]
        if not int(self._remove(keys=keys, args=[name])):
            raise UnknownToken(f"no token named {name!r} (tokens list shows them)")

    def find(self, token: str) -> ApiToken | None:
        """The token presented in a request, or None: one HGET by its hash."""
        text = cast(str | None, self.redis.hget(self.keys.http_tokens, token_hash(token)))
        return ApiToken.from_json(text) if text else None

    def bucket(self, name: str, *, rate: float, burst: int) -> TokenBucket:
        """The token bucket that limits the requests made with the token ``name``."""
        return TokenBucket(
            self.redis,
            self.keys,
            rate=rate,
            burst=burst,
            site_id="",
            key=self.keys.http_rate_limit(name),
        )
