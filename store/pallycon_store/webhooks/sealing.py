"""Webhook secrets encrypted at rest: what Redis holds of them. Pure (no I/O).

A secret is sealed with AES-256-GCM under a key derived from ``PALLYCON_WEBHOOK_KEY`` by
HKDF-SHA256 (the label :data:`LABEL`), a random 96-bit nonce per sealing, and the endpoint's id
as associated data: a sealed secret copied onto another endpoint does not open. Sealed, it is
written ``v1:`` + base64 of nonce and ciphertext. Whoever holds both a Redis dump and the key
can open the secrets: the workers need them to sign.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pallycon_store.webhooks.errors import UnreadableSecret
from pallycon_store.webhooks.signing import Secret

#: What the derived key is for (HKDF's info): another use of the same setting gets another key.
LABEL = b"pallycon-pack webhook endpoint secrets v1"
#: The prefix of a sealed secret: the format's version.
VERSION = "v1:"
NONCE_BYTES = 12


def derive(setting: str) -> bytes:
    """The 32-byte AES key derived from the setting's text."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LABEL)
    return hkdf.derive(setting.encode("utf-8"))


@dataclass(frozen=True)
class Sealer:
    """Seals and opens the secrets of endpoints with one derived key (its repr never shows
    it)."""

    key: bytes = field(repr=False)

    @classmethod
    def of(cls, setting: str) -> Sealer:
        """The sealer keyed by the setting's text (``PALLYCON_WEBHOOK_KEY``)."""
        return cls(derive(setting))

    def seal(
        self, endpoint_id: str, secret: Secret, nonce: Callable[[int], bytes] = os.urandom
    ) -> str:
        """``secret`` sealed for the endpoint ``endpoint_id``."""
        once = nonce(NONCE_BYTES)
        sealed = AESGCM(self.key).encrypt(once, secret.key, endpoint_id.encode())
        return VERSION + base64.b64encode(once + sealed).decode("ascii")

    def opens(self, endpoint_id: str, sealed: str) -> bool:
        """Whether this key opens ``sealed`` for ``endpoint_id``."""
        try:
            self.open(endpoint_id, sealed)
        except UnreadableSecret:
            return False
        return True

    def open(self, endpoint_id: str, sealed: str) -> Secret:
        """The secret ``sealed`` holds for ``endpoint_id``; an :class:`UnreadableSecret` if it
        was not sealed with this key for this endpoint (or is damaged)."""
        try:
            raw = base64.b64decode(sealed.removeprefix(VERSION), validate=True)
            if not sealed.startswith(VERSION) or len(raw) <= NONCE_BYTES:
                raise ValueError(sealed[:3])
            key = AESGCM(self.key).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], endpoint_id.encode()
            )
        except (InvalidTag, binascii.Error, ValueError):
            raise UnreadableSecret(
                f"the secret of webhook endpoint {endpoint_id} cannot be decrypted with "
                "PALLYCON_WEBHOOK_KEY (was the key changed since it was stored?); add the "
                "endpoint again, or rotate its secret"
            ) from None
        return Secret(key)
