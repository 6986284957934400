"""Environments for child processes: this one's, without any ``PALLYCON_*`` setting."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pallycon.signing import SiteCredentials
from support.samples import REGION, SAMPLE_SITE

#: The prefix of every setting (config's and the emulator's).
SETTINGS_PREFIX = "PALLYCON_"


def clean_env(*settings: Mapping[str, str], **extra: str) -> dict[str, str]:
    """This process's environment without any ``PALLYCON_*`` setting, plus ``settings`` (e.g.
    ``Settings.environment()``) and ``extra``, later ones winning."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIX)}
    for values in settings:
        env.update(values)
    env.update(extra)
    return env


def site_env(
    site: SiteCredentials = SAMPLE_SITE, region: str = REGION, **extra: str
) -> dict[str, str]:
    """A clean environment with ``site``'s credentials and ``region`` set, plus ``extra``."""
    settings = {
        "PALLYCON_SITE_ID": site.site_id,
        "PALLYCON_ACCESS_KEY": site.access_key.get_secret_value(),
        "PALLYCON_SITE_KEY": site.site_key.get_secret_value(),
        "PALLYCON_REGION": region,
    }
    return clean_env(settings, **extra)
