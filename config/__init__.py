"""Settings: one pydantic-settings class, prefix ``PALLYCON_``, secrets as ``SecretStr``; the
sites it serves (the default one and ``PALLYCON_SITES``'s) in :mod:`config.sites`."""

from config.settings import (
    ENV_PREFIX,
    SITES_VARIABLE,
    ConfigError,
    RedisTarget,
    Settings,
    env_name,
    load_settings,
)
from config.sites import Site, Sites, UnknownSite, load_callback_tokens

__all__ = [
    "ENV_PREFIX",
    "SITES_VARIABLE",
    "ConfigError",
    "RedisTarget",
    "Settings",
    "Site",
    "Sites",
    "UnknownSite",
    "env_name",
    "load_callback_tokens",
    "load_settings",
]
