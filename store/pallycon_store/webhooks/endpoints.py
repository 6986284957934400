"""Webhook endpoints in Redis: one hash (``pp:webhooks:endpoints``), endpoint id -> JSON, read
by every process at once (a change holds for every worker's next delivery).

An endpoint is its id (``ep_`` + 12 base32 characters), URL, event types, site (``""``: every
site), whether private addresses are allowed, when it was added, whether it is disabled (why
and when) and its secrets, sealed (:mod:`.sealing`): the current one, and during a rotation the
previous ones with the time each stops signing. Reading, listing, removing, disabling and
enabling need no key; adding, rotating and opening the secrets need the :class:`Sealer`.
"""

from __future__ import annotations

import base64
import builtins
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import redis

from pallycon_store.keys import Keys
from pallycon_store.webhooks.addresses import check_url
from pallycon_store.webhooks.errors import UnknownEndpoint
from pallycon_store.webhooks.payload import parse_events
from pallycon_store.webhooks.sealing import Sealer
from pallycon_store.webhooks.signing import Secret

#: The prefix of an endpoint's id.
ID_PREFIX = "ep_"
#: The random characters of an endpoint's id (base32: 5 bits each).
ID_CHARS = 12
#: How long a rotated-out secret keeps signing beside the new one, in seconds.
ROTATION_OVERLAP = 24 * 3600.0


def new_id(token_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """A new endpoint id: ``ep_`` + 12 lowercase base32 characters (60 random bits)."""
    text = base64.b32encode(token_bytes(8)).decode("ascii").lower()
    return ID_PREFIX + text[:ID_CHARS]


def unknown(endpoint_id: str) -> UnknownEndpoint:
    """The error of an endpoint id that names none."""
    return UnknownEndpoint(f"no webhook endpoint {endpoint_id} (webhooks list shows them)")


@dataclass(frozen=True)
class SealedSecret:
    """One secret as stored: sealed, and when it stops signing (``None``: the current one)."""

    sealed: str
    expires_at: float | None = None

    def active(self, now: float) -> bool:
        """Whether it still signs at ``now``."""
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class Disabled:
    """Why and when an endpoint was disabled."""

    reason: str
    at: float


@dataclass(frozen=True)
class Endpoint:
    """One webhook endpoint as stored (its secrets sealed)."""

    id: str
    url: str
    events: frozenset[str]
    site: str
    allow_private: bool
    created_at: float
    secrets: tuple[SealedSecret, ...]
    disabled: Disabled | None = None

    def active_secrets(self, now: float) -> tuple[SealedSecret, ...]:
        """The secrets that sign at ``now``: the current one first."""
        return tuple(secret for secret in self.secrets if secret.active(now))

    def rotation_ends(self, now: float) -> float | None:
        """When the last rotated-out secret stops signing; ``None`` if none signs at ``now``."""
        ends = [s.expires_at for s in self.active_secrets(now) if s.expires_at is not None]
        return max(ends) if ends else None

    def wants(self, event_type: str, site_id: str) -> bool:
        """Whether an event of ``event_type`` about a request of ``site_id`` is delivered to
        it (a disabled endpoint wants none)."""
        if self.disabled is not None or event_type not in self.events:
            return False
        return not self.site or self.site == site_id

    def to_json(self) -> str:
        """The stored JSON."""
        return json.dumps(
            {
                "id": self.id,
                "url": self.url,
                "events": sorted(self.events),
                "site": self.site,
                "allow_private": self.allow_private,
                "created_at": self.created_at,
                "secrets": [{"sealed": s.sealed, "expires_at": s.expires_at} for s in self.secrets],
                "disabled": (
                    None
                    if self.disabled is None
                    else {"reason": self.disabled.reason, "at": self.disabled.at}
                ),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Endpoint:
        """The endpoint stored as ``text``."""
        data: dict[str, Any] = json.loads(text)
        disabled = data.get("disabled")
        return cls(
            id=data["id"],
            url=data["url"],
            events=frozenset(data["events"]),
            site=data.get("site", ""),
            allow_private=bool(data.get("allow_private", False)),
            created_at=float(data["created_at"]),
            secrets=tuple(SealedSecret(s["sealed"], s.get("expires_at")) for s in data["secrets"]),
            disabled=None if disabled is None else Disabled(disabled["reason"], disabled["at"]),
        )


class Endpoints:
    """The webhook endpoints of one deployment (its keys), in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def add(
        self,
        sealer: Sealer,
        url: str,
        secret: Secret,
        now: float,
        *,
        events: Iterable[str] = (),
        site: str = "",
        allow_private: bool = False,
    ) -> Endpoint:
        """A new endpoint (checked: :func:`check_url`, :func:`parse_events`), stored."""
        checked = check_url(url, allow_private)
        chosen = parse_events(events)
        while True:
            endpoint_id = new_id()
            endpoint = Endpoint(
                id=endpoint_id,
                url=checked,
                events=chosen,
                site=site,
                allow_private=allow_private,
                created_at=now,
                secrets=(SealedSecret(sealer.seal(endpoint_id, secret)),),
            )
            if self.redis.hsetnx(self.keys.webhook_endpoints, endpoint_id, endpoint.to_json()):
                return endpoint

    def list(self) -> list[Endpoint]:
        """Every endpoint, oldest first."""
        found: dict[str, str] = self.redis.hgetall(self.keys.webhook_endpoints)  # type: ignore[assignment]
        endpoints = [Endpoint.from_json(text) for text in found.values()]
        return sorted(endpoints, key=lambda e: (e.created_at, e.id))

    def get(self, endpoint_id: str) -> Endpoint:
        """The endpoint ``endpoint_id``; an :class:`UnknownEndpoint` if there is none."""
        text = self.redis.hget(self.keys.webhook_endpoints, endpoint_id)
        if text is None:
            raise unknown(endpoint_id)
        return Endpoint.from_json(str(text))

    def remove(self, endpoint_id: str) -> Endpoint:
        """Remove the endpoint ``endpoint_id``: what it was; an :class:`UnknownEndpoint` if
        there is none."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hget(self.keys.webhook_endpoints, endpoint_id)
        pipe.hdel(self.keys.webhook_endpoints, endpoint_id)
        text, _ = pipe.execute()
        if text is None:
            raise unknown(endpoint_id)
        return Endpoint.from_json(str(text))

    def rotate(self, sealer: Sealer, endpoint_id: str, secret: Secret, now: float) -> Endpoint:
        """Make ``secret`` the endpoint's current one; the secrets that signed until now keep
        signing beside it for :data:`ROTATION_OVERLAP` (expired ones are dropped, and so are
        those this key cannot open: sealed under a key since changed, they could not sign)."""

        def rotated(endpoint: Endpoint) -> Endpoint:
            ends = now + ROTATION_OVERLAP
            kept = tuple(
                SealedSecret(s.sealed, ends if s.expires_at is None else min(s.expires_at, ends))
                for s in endpoint.active_secrets(now)
                if sealer.opens(endpoint_id, s.sealed)
            )
            new = SealedSecret(sealer.seal(endpoint_id, secret))
            return replace(endpoint, secrets=(new, *kept))

        return self._change(endpoint_id, rotated)

    def disable(self, endpoint_id: str, reason: str, now: float) -> Endpoint:
        """Disable the endpoint (no deliveries to it) saying why; disabling again keeps the
        first reason and time."""
        return self._change(
            endpoint_id,
            lambda e: e if e.disabled is not None else replace(e, disabled=Disabled(reason, now)),
        )

    def enable(self, endpoint_id: str) -> Endpoint:
        """Enable the endpoint again."""
        return self._change(endpoint_id, lambda e: replace(e, disabled=None))

    def open_secrets(self, sealer: Sealer, endpoint: Endpoint, now: float) -> builtins.list[Secret]:
        """The secrets that sign a delivery to ``endpoint`` at ``now``, current first."""
        return [sealer.open(endpoint.id, s.sealed) for s in endpoint.active_secrets(now)]

    def _change(self, endpoint_id: str, change: Callable[[Endpoint], Endpoint]) -> Endpoint:
        """Apply ``change`` to the stored endpoint, atomically (again if another process
        changed it meanwhile); the endpoint as changed."""
        key = self.keys.webhook_endpoints
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    text = pipe.hget(key, endpoint_id)
                    if text is None:
                        pipe.unwatch()
                        raise unknown(endpoint_id)
                    changed = change(Endpoint.from_json(str(text)))
                    pipe.multi()
                    pipe.hset(key, endpoint_id, changed.to_json())
                    pipe.execute()
                    return changed
                except redis.WatchError:
                    continue
