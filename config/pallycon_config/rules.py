"""The rules of a site's settings, and the names of the variables that set them: shared by the
settings (:mod:`pallycon_config.settings`) and the sites file (:mod:`pallycon_config.sites`),
which both build on this module."""

from __future__ import annotations

import re

from pydantic import SecretStr

from pallycon.signing import SITE_KEY_BYTES

ENV_PREFIX = "PALLYCON_"
#: The variable of :attr:`Settings.sites_path` (not ``PALLYCON_SITES_PATH``: the field is named
#: apart from :meth:`Settings.sites`, which loads it).
SITES_VARIABLE = "PALLYCON_SITES"

#: The region codes PallyCon knows (PallyCon Console > site settings), with where they are.
REGIONS = {"RG004": "Oregon", "RG011": "Seoul", "RG013": "Singapore"}
_SITE_ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
#: The settings set by another variable than ``PALLYCON_<FIELD>``: field -> variable.
ALIASES = {"sites_path": SITES_VARIABLE}


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the environment variable."""


def env_name(field: str) -> str:
    """The environment variable that sets ``field`` of the settings: ``PALLYCON_<FIELD>``, or its
    alias (:data:`ALIASES`; a test holds them to the settings class's own)."""
    return ALIASES.get(field, f"{ENV_PREFIX}{field.upper()}")


def check_site_id(value: str) -> str:
    """``value`` if it is a site ID, else a ``ValueError`` saying what one is."""
    if not _SITE_ID_RE.match(value):
        raise ValueError("must be letters and digits only, e.g. TUTO")
    return value


def check_access_key(value: SecretStr) -> SecretStr:
    """``value`` if it is not blank, else a ``ValueError`` (never naming the value)."""
    if not value.get_secret_value().strip():
        raise ValueError("must not be blank")
    return value


def check_site_key(value: SecretStr) -> SecretStr:
    """``value`` if it is an AES-256 key, else a ``ValueError`` giving its size only."""
    size = len(value.get_secret_value().encode("utf-8"))
    if size != SITE_KEY_BYTES:
        raise ValueError(f"must be {SITE_KEY_BYTES} bytes (AES-256), got {size}")
    return value


def check_callback_token(value: SecretStr) -> SecretStr:
    """``value`` if it is long enough to be a URL's secret, else a ``ValueError``."""
    if len(value.get_secret_value()) < 16:
        raise ValueError("must be at least 16 characters (it is the callback URL's secret)")
    return value


#: The shortest ``PALLYCON_WEBHOOK_KEY``, in characters.
MIN_WEBHOOK_KEY = 32


def check_webhook_key(value: SecretStr) -> SecretStr:
    """``value`` if it is long enough to key the webhook secrets' encryption, else a
    ``ValueError`` giving its length only."""
    text = value.get_secret_value()
    if any(c.isspace() for c in text):
        raise ValueError("must not contain whitespace")
    if len(text) < MIN_WEBHOOK_KEY:
        raise ValueError(f"must be at least {MIN_WEBHOOK_KEY} characters, got {len(text)}")
    return value


def check_region(value: str) -> str:
    """``value`` if it is a known region code, else a ``ValueError`` naming the known ones."""
    if value not in REGIONS:
        known = ", ".join(f"{code} ({where})" for code, where in REGIONS.items())
        raise ValueError(f"not a known region code; use one of {known}")
    return value
