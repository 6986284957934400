"""The ``pallycon-apidata`` value: signing and verifying, pure (no I/O, the clock passed in).

As the guide and PallyCon's published samples specify::

    data      = base64(AES-256-CBC(key = site key as UTF-8 bytes, IV = b"0123456789abcdef",
                                   PKCS#7 padding over the bytes of the API JSON))
    timestamp = UTC "YYYY-MM-DDThh:mm:ssZ"
    hash      = base64(SHA-256(access_key + site_id + data + timestamp))   raw 32-byte digest
    apidata   = base64(json.dumps({"data": ..., "timestamp": ..., "hash": ...}))

The API JSON is encrypted exactly as given: it is bytes in, never re-serialised (re-serialising
changes ``data``). The envelope is written the way PallyCon's Python sample writes it (Python's
``json.dumps`` with its default separators), so the output matches their published vector byte
for byte; when reading, the envelope is parsed as JSON, never compared as text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import SecretStr

from pallycon.codes import (
    API_DATA_PARSING_ERROR,
    DECRYPT_FAILED,
    HASH_MISMATCH,
    INVALID_TIMESTAMP,
)
from pallycon.errors import EnvelopeError

SITE_KEY_BYTES = 32
AES_IV = b"0123456789abcdef"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_BLOCK_BITS = 128
_BLOCK_BYTES = _BLOCK_BITS // 8
#: base64 of a SHA-256 digest (32 bytes).
_HASH_BASE64_LENGTH = 44


@dataclass(frozen=True)
class SiteCredentials:
    """A site's ID and its two secrets. The secrets stay wrapped until the moment of use."""

    site_id: str
    access_key: SecretStr = field(repr=False)
    site_key: SecretStr = field(repr=False)

    @classmethod
    def of(cls, site_id: str, access_key: str, site_key: str) -> SiteCredentials:
        """Credentials from plain strings (tests, the emulator's site table)."""
        return cls(site_id, SecretStr(access_key), SecretStr(site_key))

    def aes_key(self) -> bytes:
        key = self.site_key.get_secret_value().encode("utf-8")
        if len(key) != SITE_KEY_BYTES:
            raise ValueError(f"site key must be {SITE_KEY_BYTES} bytes, got {len(key)}")
        return key


@dataclass(frozen=True)
class Envelope:
    """The three parts inside ``pallycon-apidata``."""

    data: str
    timestamp: str
    hash: str

    def encode(self) -> str:
        """The ``pallycon-apidata`` value (standard base64, not yet percent-encoded)."""
        text = json.dumps({"data": self.data, "timestamp": self.timestamp, "hash": self.hash})
        return base64.b64encode(text.encode("utf-8")).decode("ascii")


def format_timestamp(moment: datetime) -> str:
    """``moment`` in UTC as the guide writes it. A naive datetime is taken as UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """The inverse of :func:`format_timestamp`; ``ValueError`` if ``text`` is not that shape."""
    if not _TIMESTAMP_RE.match(text):
        raise ValueError(f"not YYYY-MM-DDThh:mm:ssZ: {text!r}")
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def encrypt(api_json: bytes, aes_key: bytes) -> str:
    """``data``: base64 of AES-256-CBC with the fixed IV and PKCS#7 padding over the bytes."""
    # cryptography is imported where it is used: validating requests (producers) needs none.
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    padder = padding.PKCS7(_BLOCK_BITS).padder()
    padded = padder.update(api_json) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(AES_IV)).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def decrypt(data: str, aes_key: bytes) -> bytes:
    """The inverse of :func:`encrypt`; ``ValueError`` on bad base64, length or padding."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ValueError("data is not base64") from exc
    if not raw or len(raw) % (_BLOCK_BITS // 8):
        raise ValueError("data is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(AES_IV)).decryptor()
    padded = decryptor.update(raw) + decryptor.finalize()
    unpadder = padding.PKCS7(_BLOCK_BITS).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def compute_hash(credentials: SiteCredentials, data: str, timestamp: str) -> str:
    """``hash``: base64 of the raw SHA-256 of access key + site id + data + timestamp."""
    message = credentials.access_key.get_secret_value() + credentials.site_id + data + timestamp
    return base64.b64encode(hashlib.sha256(message.encode("utf-8")).digest()).decode("ascii")


def sign(api_json: bytes, credentials: SiteCredentials, now: datetime) -> Envelope:
    """Sign the API JSON bytes, exactly as given, at time ``now``."""
    data = encrypt(api_json, credentials.aes_key())
    timestamp = format_timestamp(now)
    return Envelope(data, timestamp, compute_hash(credentials, data, timestamp))


def apidata_length(api_json_size: int) -> tuple[int, int]:
    """The length of the ``pallycon-apidata`` value for an API JSON of ``api_json_size`` bytes,
    and how many ``=`` pad it: both depend on the size only (AES-CBC with PKCS#7 and base64
    grow by size, not content), so no key and no cipher are needed."""
    cipher_bytes = (api_json_size // _BLOCK_BYTES + 1) * _BLOCK_BYTES
    data = "A" * (4 * -(-cipher_bytes // 3))
    value = Envelope(data, "2000-01-01T00:00:00Z", "A" * _HASH_BASE64_LENGTH).encode()
    return len(value), len(value) - len(value.rstrip("="))


def decode_envelope(apidata: str) -> Envelope:
    """Parse a ``pallycon-apidata`` value into its parts (A7008 if it is not one).

    A ``+`` that a query-string parser turned into a space is restored first: base64 has no
    spaces, so the repair is unambiguous.
    """
    try:
        text = base64.b64decode(apidata.strip().replace(" ", "+"), validate=True)
        parsed = json.loads(text)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError(API_DATA_PARSING_ERROR, "pallycon-apidata is not base64 JSON") from exc
    if not isinstance(parsed, dict):
        raise EnvelopeError(API_DATA_PARSING_ERROR, "pallycon-apidata is not a JSON object")
    parts = {key: parsed.get(key) for key in ("data", "timestamp", "hash")}
    missing = [key for key, value in parts.items() if not isinstance(value, str)]
    if missing:
        raise EnvelopeError(
            API_DATA_PARSING_ERROR, f"pallycon-apidata lacks string field(s): {', '.join(missing)}"
        )
    return Envelope(**{key: str(value) for key, value in parts.items()})


def open_envelope(
    envelope: Envelope,
    credentials: SiteCredentials,
    *,
    now: datetime | None = None,
    max_skew_seconds: float | None = None,
) -> bytes:
    """Verify an envelope as the service does and return the API JSON bytes.

    Checks in order: timestamp format (A1002), clock skew when ``max_skew_seconds`` is given
    (A1002), hash in constant time (A1007), decryption and padding (A1006).
    """
    try:
        sent_at = parse_timestamp(envelope.timestamp)
    except ValueError as exc:
        raise EnvelopeError(INVALID_TIMESTAMP, str(exc)) from None
    if max_skew_seconds is not None and now is not None:
        skew = abs((now - sent_at).total_seconds())
        if skew > max_skew_seconds:
            raise EnvelopeError(
                INVALID_TIMESTAMP, f"timestamp is {skew:.0f} s off (allowed {max_skew_seconds:g})"
            )
    expected = compute_hash(credentials, envelope.data, envelope.timestamp)
    if not hmac.compare_digest(expected.encode("ascii"), envelope.hash.encode("utf-8")):
        raise EnvelopeError(HASH_MISMATCH, "hash does not match")
    try:
        return decrypt(envelope.data, credentials.aes_key())
    except ValueError as exc:
        raise EnvelopeError(DECRYPT_FAILED, f"cannot decrypt data: {exc}") from None


def parse_api_json(api_json: bytes) -> dict[str, object]:
    """The decrypted API JSON as an object (A7008 if it is not UTF-8 JSON of an object)."""
    try:
        parsed = json.loads(api_json.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise EnvelopeError(API_DATA_PARSING_ERROR, "API data is not JSON") from None
    if not isinstance(parsed, dict):
        raise EnvelopeError(API_DATA_PARSING_ERROR, "API data is not a JSON object")
    return parsed
