"""The ``emulator`` command's sites, callback URLs and fault statuses, parsed from its options
(one-line errors that name the option, never a secret)."""

from __future__ import annotations

import click

from pallycon.signing import SITE_KEY_BYTES, SiteCredentials
from pallycon_emulator.config import (
    CallbackUrl,
    EmulatorSettings,
    callback_url_problem,
    emulator_env_name,
)
from pallycon_pack.cli.inputs import read_source, source_name
from pallycon_pack.errors import EXIT_INVALID, Failure

SITES_FILE_LIMIT = 1024 * 1024
SITE_FORMAT = "ID:ACCESS_KEY:SITE_KEY"


def _site(value: str) -> SiteCredentials:
    """A site from ``ID:ACCESS_KEY:SITE_KEY``; a ValueError's message never holds the value."""
    site_id, sep, rest = value.partition(":")
    access_key, sep2, site_key = rest.partition(":")
    if not (sep and sep2 and site_id and access_key):
        raise ValueError(f"expected {SITE_FORMAT}")
    if len(site_key.encode("utf-8")) != SITE_KEY_BYTES:
        raise ValueError(f"the site key must be {SITE_KEY_BYTES} bytes")
    return SiteCredentials.of(site_id, access_key, site_key)


def _flag_sites(values: tuple[str, ...]) -> list[SiteCredentials]:
    sites = []
    for number, value in enumerate(values, start=1):
        try:
            sites.append(_site(value))
        except ValueError as exc:
            which = f" (number {number})" if len(values) > 1 else ""
            raise Failure(f"--site{which}: {exc}", EXIT_INVALID) from None
    return sites


def _file_sites(path: str) -> list[SiteCredentials]:
    """The sites in a sites file: one per line, blank lines and # comments ignored.

    An error names the line by number, never its content.
    """
    where = source_name(path)
    sites = []
    lines = read_source(path, "--sites-file", SITES_FILE_LIMIT).split(b"\n")
    for number, raw in enumerate(lines, start=1):
        try:
            entry = raw.decode("utf-8").strip()
            if entry and not entry.startswith("#"):
                sites.append(_site(entry))
        except UnicodeDecodeError:
            raise Failure(f"--sites-file {where}: line {number}: not UTF-8", EXIT_INVALID) from None
        except ValueError as exc:
            raise Failure(f"--sites-file {where}: line {number}: {exc}", EXIT_INVALID) from None
    if not sites:
        raise Failure(
            f"--sites-file {where}: no site in it (one {SITE_FORMAT} a line)", EXIT_INVALID
        )
    return sites


def _extra_sites(values: tuple[str, ...], path: str | None) -> tuple[SiteCredentials, ...]:
    return (*_flag_sites(values), *(_file_sites(path) if path is not None else ()))


def _check_unique(sites: tuple[SiteCredentials, ...]) -> None:
    seen: set[str] = set()
    for site in sites:
        if site.site_id in seen:
            raise Failure(
                f"site {site.site_id} is given twice (PALLYCON_SITE_ID, --site, --sites-file)",
                EXIT_INVALID,
            )
        seen.add(site.site_id)


SITE_CALLBACK_FORMAT = "SITE_ID=URL"


def _flag_callbacks(values: tuple[str, ...]) -> dict[str, str]:
    """``--site-callback`` values by site; an error names the flag and the site (or the
    value's number), never the URL: its path carries the receiver's token."""
    found: dict[str, str] = {}
    for number, value in enumerate(values, start=1):
        site_id, sep, url = value.partition("=")
        if not (sep and site_id and url):
            which = f" (number {number})" if len(values) > 1 else ""
            raise Failure(f"--site-callback{which}: expected {SITE_CALLBACK_FORMAT}", EXIT_INVALID)
        if site_id in found:
            raise Failure(f"--site-callback: site {site_id} is given twice", EXIT_INVALID)
        problem = callback_url_problem(url)
        if problem:
            raise Failure(f"--site-callback {site_id}: the URL {problem}", EXIT_INVALID)
        found[site_id] = url
    return found


def _with_callbacks(
    settings: EmulatorSettings, flags: dict[str, str], served: list[str]
) -> EmulatorSettings:
    """``settings`` with the per-site callback URLs of ``flags`` over those of the environment
    (site by site); every site named must be one the emulator serves."""
    for site_id in [*settings.callback_urls, *flags]:
        if site_id not in served:
            where = "--site-callback" if site_id in flags else emulator_env_name("callback_urls")
            raise Failure(
                f"{where}: site {site_id} is not served (sites: {', '.join(served)})",
                EXIT_INVALID,
            )
    if not flags:
        return settings
    merged = {**settings.callback_urls, **{key: CallbackUrl(url) for key, url in flags.items()}}
    return settings.model_copy(update={"callback_urls": merged})


def _statuses(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter("expected comma-separated status codes, e.g. 500,503") from None
