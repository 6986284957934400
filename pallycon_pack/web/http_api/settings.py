"""The HTTP API's own settings (``PALLYCON_HTTP_*``, the environment or ``.env``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pallycon_config.settings import variable_name

ENV_PREFIX = "PALLYCON_HTTP_"


class HttpSettings(BaseSettings):
    """Read by ``pallycon-pack http`` alone."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    host: str = Field(default="127.0.0.1", description="HTTP API listen address.")
    port: int = Field(default=8800, ge=0, le=65535, description="HTTP API port.")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="The largest request body, in bytes (413 beyond).",
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Seconds a request's body may take to arrive, once its headers have (408).",
    )
    max_connections: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Open connections at most per process (one more is answered 503, closed).",
    )
    rate: float = Field(
        default=20.0, gt=0, le=100_000, description="Requests per second per token, sustained."
    )
    burst: int = Field(
        default=100, ge=1, le=1_000_000, description="Requests per token at once, after a pause."
    )


def http_variable(field: str) -> str:
    """The variable that sets the HTTP API's ``field`` (``PALLYCON_HTTP_<FIELD>``)."""
    return variable_name(HttpSettings, field)
