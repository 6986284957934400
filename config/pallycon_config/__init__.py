"""Settings: one pydantic-settings class, prefix ``PALLYCON_``, secrets as ``SecretStr``; the
sites it serves (the default one and ``PALLYCON_SITES``'s) in :mod:`config.sites`."""

from pallycon_config.rules import ENV_PREFIX, SITES_VARIABLE, ConfigError, env_name
from pallycon_config.settings import RedisTarget, Settings, load_settings
from pallycon_config.sites import Site, Sites, UnknownSite, load_callback_tokens

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
