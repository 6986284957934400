"""The project's errors as one-line messages and exit codes, for the CLI and the console."""

from __future__ import annotations

import os

import redis
from kombu.exceptions import OperationalError as KombuOperationalError

from pallycon.errors import CallError, InvalidRequest, RequestNotBuilt, RequestNotSent
from pallycon_config import ConfigError, RedisTarget, Settings, env_name
from pallycon_config.settings import read_settings
from pallycon_pack.errors import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    Failure,
    ListenError,
)
from pallycon_store.connect import describe, login_refused, sentinels_refused
from pallycon_store.tokens import TokenError, UnknownToken
from pallycon_store.webhooks.errors import UnknownEndpoint, WebhookError


def _no_dotenv(message: str) -> str:
    """For a missing setting, when this directory has no ``.env``: where settings come from
    (a command run from another directory than the project's reads none)."""
    if not message.startswith("missing setting") or os.path.exists(".env"):
        return ""
    return " (no .env in this directory: settings come from the environment and ./.env)"


def failure_of(exc: Exception) -> Failure | None:
    """The one-line Failure for one of the project's errors; None for any other."""
    if isinstance(exc, ConfigError):
        return Failure(str(exc) + _no_dotenv(str(exc)), EXIT_INVALID)
    if isinstance(exc, InvalidRequest):
        lines = "\n".join(f"  {error}" for error in exc.errors)
        return Failure(f"invalid request:\n{lines}", EXIT_INVALID)
    if isinstance(exc, RequestNotBuilt):  # the request itself cannot be sent: bad input
        return Failure(f"{type(exc).__name__}: {exc}", EXIT_INVALID)
    if isinstance(exc, RequestNotSent):  # the API unreachable: say where it was called
        return Failure(api_problem(exc), EXIT_FAILED)
    if isinstance(exc, CallError):
        return Failure(f"{type(exc).__name__}: {exc}", EXIT_FAILED)
    if isinstance(exc, UnknownEndpoint | UnknownToken):
        return Failure(str(exc), EXIT_NOT_FOUND)
    # A URL, secret, event type or key that cannot be used; a token's name taken or unusable.
    if isinstance(exc, WebhookError | TokenError):
        return Failure(str(exc), EXIT_INVALID)
    if isinstance(exc, ListenError):
        return Failure(exc.strerror or str(exc), EXIT_UNAVAILABLE)
    # Redis, or the broker (Redis) refusing a task message.
    if isinstance(exc, redis.RedisError | KombuOperationalError):
        return Failure(redis_problem(exc), EXIT_UNAVAILABLE)
    return None


def api_problem(exc: RequestNotSent) -> str:
    """One line that names where the API was called (no credentials, no query), the setting,
    and what to do, as :func:`redis_problem` does for Redis: every site calls the one
    ``PALLYCON_API_URL``."""
    where = f"API at {exc.api}" if exc.api else "API"
    return f"{where}: {exc}; is it running and reachable? ({env_name('api_url')})"


def redis_problem(exc: Exception, target: RedisTarget | None = None) -> str:
    """One line that names where Redis is (password masked), the setting, and what to do.

    ``target``: where Redis is, if the caller has it; else it is read from the settings,
    leaving out the secret files (only the address is shown)."""
    if target is None:
        target = _redis_target()
    url, where = "PALLYCON_REDIS_URL", "PALLYCON_REDIS_URL"
    if target is not None:
        url = target.shown()
        if target.sentinels:
            where = "PALLYCON_REDIS_SENTINELS, PALLYCON_REDIS_MASTER_NAME"
    reason = describe(exc)
    if sentinels_refused(exc):  # the reason names the setting
        return f"Redis at {url}: {reason}"
    if login_refused(exc):
        advice = "check the user and password (PALLYCON_REDIS_URL, PALLYCON_REDIS_PASSWORD)"
    elif isinstance(exc, redis.ConnectionError | redis.TimeoutError | KombuOperationalError):
        advice = f"is it running and reachable? ({where})"
    else:
        advice = f"see {where}"
    return f"Redis at {url}: {reason}; {advice}"


def _redis_target() -> RedisTarget | None:
    """Where Redis is, from the settings without their secret files (none of them says where);
    None if the settings are invalid."""
    try:
        return read_settings(Settings, env_name, {}, environ={}).redis
    except ConfigError:
        return None
