"""Settings: one pydantic-settings class, prefix ``PALLYCON_``, secrets as ``SecretStr``."""

from config.settings import ENV_PREFIX, ConfigError, RedisTarget, Settings, env_name, load_settings

__all__ = ["ENV_PREFIX", "ConfigError", "RedisTarget", "Settings", "env_name", "load_settings"]
