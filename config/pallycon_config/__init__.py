"""Settings: one pydantic-settings class, prefix ``PALLYCON_``, secrets as ``SecretStr``; the
sites it serves (the default one and ``PALLYCON_SITES``'s) in :mod:`pallycon_config.sites`; how a
site is named, and the one unknown-site error, in :mod:`pallycon_config.site_ref`."""

from pallycon_config.rules import ENV_PREFIX, SITES_VARIABLE, ConfigError, env_name
from pallycon_config.settings import RedisTarget, Settings, load_settings
from pallycon_config.site_ref import DEFAULT_LABEL, SiteBook, UnknownSite
from pallycon_config.sites import Site, Sites, load_callback_tokens

__all__ = [
    "DEFAULT_LABEL",
    "ENV_PREFIX",
    "SITES_VARIABLE",
    "ConfigError",
    "RedisTarget",
    "Settings",
    "Site",
    "SiteBook",
    "Sites",
    "UnknownSite",
    "env_name",
    "load_callback_tokens",
    "load_settings",
]
