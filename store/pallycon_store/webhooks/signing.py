"""Standard Webhooks 1.0 signatures and secrets. Pure: the time is an argument.

A secret is written ``whsec_`` + base64 of its bytes (24 to 64 of them, as the specification
says). A delivery carries three headers:

- ``webhook-id``: the message's id, the same on every attempt (the receiver's dedupe key);
- ``webhook-timestamp``: the attempt's time, integer Unix seconds;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` for each
  active secret, separated by spaces (several during a rotation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pallycon_store.webhooks.errors import MalformedSecret

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix every secret is written with, not a secret)
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
#: The size of a generated secret, in bytes.
GENERATED_SECRET_BYTES = 32
SIGNATURE_VERSION = "v1"


@dataclass(frozen=True)
class Secret:
    """One endpoint's signing key (its repr never shows it)."""

    key: bytes = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> Secret:
        """The secret written ``text`` (``whsec_`` + base64; surrounding whitespace ignored); a
        :class:`MalformedSecret` saying why not (never quoting it)."""
        text = text.strip()
        if not text.startswith(SECRET_PREFIX):
            raise MalformedSecret(f"a webhook secret starts with {SECRET_PREFIX!r}")
        try:
            key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise MalformedSecret(
                f"a webhook secret is {SECRET_PREFIX!r} followed by base64 (A-Z a-z 0-9 + / =)"
            ) from None
        if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
            raise MalformedSecret(
                f"a webhook secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes "
                f"(this one {len(key)})"
            )
        return cls(key)

    @classmethod
    def generate(cls, token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> Secret:
        """A new random secret of :data:`GENERATED_SECRET_BYTES` bytes."""
        return cls(token_bytes(GENERATED_SECRET_BYTES))

    def text(self) -> str:
        """The secret as written: ``whsec_`` + base64."""
        return SECRET_PREFIX + base64.b64encode(self.key).decode("ascii")


def signature(secret: Secret, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{webhook_id}.{timestamp}.{body}">``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def headers(
    webhook_id: str, timestamp: int, body: bytes, secrets: Sequence[Secret]
) -> dict[str, str]:
    """The three ``webhook-*`` headers of one attempt, one signature per secret (in order)."""
    if not secrets:
        raise MalformedSecret("a delivery needs at least one secret to sign with")
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret, webhook_id, timestamp, body) for secret in secrets
        ),
    }
