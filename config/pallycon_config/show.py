"""Settings as an operator may see them: every value with secrets masked, and where each came
from (default, environment, ``.env``, a secret's file, command line).

The origins are found with pydantic-settings' own sources, in the order the settings class
reads them (``settings_customise_sources``): the first source that holds a field set it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
)

from pallycon_config.rules import env_name
from pallycon_config.secrets import SecretFile, locate
from pallycon_config.settings import PLACEHOLDER_TOKEN, field_name, mask_url

MASK = "***"

DEFAULT = "default"
ENVIRONMENT = "environment"
DOTENV = ".env"
SECRETS = "secrets"
COMMAND_LINE = "command line"

#: A callback URL's path after ``/callback/``: the token (``/callback/<token>``) or a named
#: site's ``<site>/<token>``, both masked whole.
_CALLBACK_TOKEN = re.compile(r"(/callback/)[^?#\s\"'<>]+")


def mask_text(value: str) -> str:
    """``value`` with a URL's password and a callback path's token masked."""
    return _CALLBACK_TOKEN.sub(rf"\g<1>{MASK}", mask_url(value) if "://" in value else value)


def shown(value: Any) -> Any:
    """A setting's value fit for a log or a terminal: secrets masked, paths as text."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Path):
        return str(value)
    return value


def masked(settings: BaseSettings) -> dict[str, Any]:
    """Every field of ``settings`` (``None`` included), secrets masked."""
    return {name: shown(getattr(settings, name)) for name in type(settings).model_fields}


def warnings(settings: BaseSettings) -> list[str]:
    """What an operator should hear at start-up about ``settings`` (one sentence each)."""
    found = []
    token = getattr(settings, "callback_token", None)
    if isinstance(token, SecretStr) and token.get_secret_value() == PLACEHOLDER_TOKEN:
        found.append(
            f"{env_name('callback_token')} is the placeholder of .env.example: anyone who reads "
            "it can post callbacks; set a long random token"
        )
    url = getattr(settings, "callback_url", None)
    if isinstance(url, str) and PLACEHOLDER_TOKEN in url:
        found.append(
            "the callback URL holds the placeholder token of .env.example; set a long random token"
        )
    return found


@dataclass(frozen=True)
class Shown:
    """One setting as ``config show`` prints it."""

    field: str
    variable: str
    value: Any
    source: str


def _label(source: PydanticBaseSettingsSource) -> str:
    if isinstance(source, InitSettingsSource):
        return COMMAND_LINE
    if isinstance(source, DotEnvSettingsSource):  # before EnvSettingsSource: it is one
        return DOTENV
    if isinstance(source, EnvSettingsSource):
        return ENVIRONMENT
    if isinstance(source, SecretsSettingsSource):
        return SECRETS
    return type(source).__name__


def origins(
    kind: type[BaseSettings],
    overrides: dict[str, Any] | None = None,
    files: dict[str, SecretFile] | None = None,
) -> dict[str, str]:
    """Where each field of ``kind`` comes from, with ``overrides`` (``None`` ones ignored) as
    the command line: the first of the class's own sources that holds it, else the default.

    A secret read from a file (``files``; by default located as :func:`read_settings` does)
    is ``file <path>``: it comes after the command line and the environment, before ``.env``.
    """
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    if files is None:
        prefix = str(kind.model_config.get("env_prefix") or "")
        files = locate(kind, lambda field: f"{prefix}{field.upper()}", os.environ, frozenset(given))
    sources = kind.settings_customise_sources(
        kind,
        init_settings=InitSettingsSource(kind, init_kwargs=given),
        env_settings=EnvSettingsSource(kind),
        dotenv_settings=DotEnvSettingsSource(kind),
        file_secret_settings=SecretsSettingsSource(kind),
    )
    found: dict[str, str] = {}
    for source in sources:
        for name in source():  # a field's name, or its alias (PALLYCON_SITES)
            found.setdefault(field_name(kind, name), _label(source))
    for name, where in files.items():
        if found.get(name) not in (COMMAND_LINE, ENVIRONMENT):
            found[name] = where.label()
    return {name: found.get(name, DEFAULT) for name in kind.model_fields}


def describe(
    settings: BaseSettings, name_of: Any, overrides: dict[str, Any] | None = None
) -> list[Shown]:
    """Each field of ``settings``: its variable (``name_of(field)``), masked value and origin
    (a secret read from a file: that file, as :func:`read_settings` recorded it)."""
    files = getattr(settings, "secret_files", None)
    where = origins(type(settings), overrides, files if isinstance(files, dict) else None)
    values = masked(settings)
    return [Shown(name, name_of(name), values[name], where[name]) for name in values]
