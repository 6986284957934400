"""Who may read the console: its own settings (``PALLYCON_CONSOLE_*``), the token it requires
off loopback (and refuses if it is no secret), and the session cookie ``/?token=`` opens.

The cookie holds the time it was issued and an HMAC of that time keyed by the token: the token
itself never leaves the request that gave it, a cookie is good for ``SESSION_SECONDS`` only, and
the server keeps no state: a session survives a restart of the console and is good at any
replica with the same token; changing the token ends every session.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from pallycon_config.settings import variable_name
from pallycon_pack.errors import EXIT_INVALID, Failure
from pallycon_pack.web.hosts import is_loopback

ENV_PREFIX = "PALLYCON_CONSOLE_"
#: The shortest token accepted (characters).
MIN_TOKEN = 16
#: A token has this many different characters at least.
MIN_DISTINCT = 6
#: The cookie that carries a session once ``/?token=`` was opened (see :func:`session_value`).
COOKIE = "pallycon_console"
#: A session's lifetime (seconds): the cookie's Max-Age, and the oldest one accepted.
SESSION_SECONDS = 12 * 3600


class ConsoleSettings(BaseSettings):
    """The console's own settings (``PALLYCON_CONSOLE_*``, the environment or ``.env``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    host: str = Field(default="127.0.0.1", description="Console listen address.")
    port: int = Field(default=8780, ge=0, le=65535, description="Console port.")
    token: SecretStr | None = Field(
        default=None, description="Required on every request; needed to listen off loopback."
    )


def console_variable(field: str) -> str:
    """The variable that sets the console's ``field`` (``PALLYCON_CONSOLE_<FIELD>``)."""
    return variable_name(ConsoleSettings, field)


def token_weakness(secret: str) -> str | None:
    """Why ``secret`` is no secret (None: it may be one): whitespace in it, shorter than
    ``MIN_TOKEN``, or fewer than ``MIN_DISTINCT`` different characters (``aaaa...``,
    ``abab...``). A random token passes: 16 hex digits have 6 different ones or more but
    about once in 25,000."""
    if any(char.isspace() for char in secret):
        return "has whitespace in it"
    if len(secret) < MIN_TOKEN:
        return f"is too short: use at least {MIN_TOKEN} random characters"
    if len(set(secret)) < MIN_DISTINCT:
        return f"is too simple ({len(set(secret))} different characters): use random ones"
    return None


def check_token(host: str, token: SecretStr | None) -> str | None:
    """The token the console requires (None: none); a one-line Failure when ``host`` is off
    loopback without one, or the token set is no secret (:func:`token_weakness`)."""
    secret = token.get_secret_value() if token is not None else ""
    weakness = token_weakness(secret) if secret else None
    if weakness is not None:
        raise Failure(
            f"PALLYCON_CONSOLE_TOKEN {weakness} (e.g. openssl rand -hex 16)", EXIT_INVALID
        )
    if not secret and not is_loopback(host):
        raise Failure(
            f"the console serves {host}, not only this machine: set PALLYCON_CONSOLE_TOKEN "
            "(16+ random characters) or listen on 127.0.0.1",
            EXIT_INVALID,
        )
    return secret or None


def session_value(token: str, issued: int) -> str:
    """The cookie's value for a session opened at ``issued`` (Unix seconds): the time and an
    HMAC of it keyed by the token, never the token itself."""
    return f"{issued}.{_signature(token, issued)}"


def session_valid(token: str, value: str, now: float) -> bool:
    """Whether a cookie's ``value`` was made by :func:`session_value` with ``token`` less than
    ``SESSION_SECONDS`` ago (and not in the future, but for a minute's skew)."""
    issued, _, signature = value.partition(".")
    if not issued.isdigit() or len(issued) > 12:
        return False
    expected = _signature(token, int(issued))
    fresh = now - SESSION_SECONDS < int(issued) <= now + 60
    return hmac.compare_digest(signature.encode(), expected.encode()) and fresh


def _signature(token: str, issued: int) -> str:
    message = f"pallycon console session {issued}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()
