"""Who may read the console: its own settings (``PALLYCON_CONSOLE_*``), the token it requires
off loopback, and whether a host is this machine only."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from pallycon_pack.errors import EXIT_INVALID, Failure
from pallycon_pack.web.hosts import is_loopback

ENV_PREFIX = "PALLYCON_CONSOLE_"
#: The shortest token accepted (characters).
MIN_TOKEN = 16
#: The cookie that carries the token once ``/?token=`` was opened.
COOKIE = "pallycon_console"


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


def check_token(host: str, token: SecretStr | None) -> str | None:
    """The token the console requires (None: none); a one-line Failure when ``host`` is off
    loopback without one, or the token is too short to be a secret."""
    secret = token.get_secret_value() if token is not None else ""
    if secret and len(secret) < MIN_TOKEN:
        raise Failure(
            f"PALLYCON_CONSOLE_TOKEN is too short: use at least {MIN_TOKEN} random characters",
            EXIT_INVALID,
        )
    if not secret and not is_loopback(host):
        raise Failure(
            f"the console serves {host}, not only this machine: set PALLYCON_CONSOLE_TOKEN "
            "(16+ random characters) or listen on 127.0.0.1",
            EXIT_INVALID,
        )
    return secret or None
