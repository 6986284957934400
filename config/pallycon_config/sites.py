"""Several PallyCon sites: the default one of the settings and those of ``PALLYCON_SITES``.

``PALLYCON_SITES`` names a TOML **file**, one table per site id::

    [BRND]
    access_key_file = "/run/secrets/brnd/access_key"   # or access_key = "..."
    site_key_file = "/run/secrets/brnd/site_key"       # or site_key = "..."
    region = "RG011"
    api_rate = 10                                      # optional: PALLYCON_API_RATE
    api_burst = 10                                     # optional: PALLYCON_API_BURST
    max_in_flight = 10                                 # optional: PALLYCON_MAX_IN_FLIGHT
    callback_token_file = "/run/secrets/brnd/token"    # optional, or callback_token = "..."

(a relative ``*_file`` path is relative to the TOML file's directory), or a **directory** with
one directory per site id holding one file per field, named like the keys above without
``_file`` (a Kubernetes Secret per site mounted at ``<dir>/<SITE_ID>/``). Files are read as
:mod:`pallycon_config.secrets` reads a secret's file: one trailing newline removed, 64 KiB at most,
and names starting with a dot (Kubernetes' ``..data``) ignored.

The default site is ``PALLYCON_SITE_ID``'s. With ``PALLYCON_ACCESS_KEY`` and
``PALLYCON_SITE_KEY`` set it is made of the settings (``PALLYCON_REGION``, ``_API_RATE``,
``_API_BURST``, ``_CALLBACK_TOKEN``) and must not be in ``PALLYCON_SITES`` too; without them it
must be there, and ``PALLYCON_REGION`` and ``PALLYCON_CALLBACK_TOKEN``, if set, must agree with
it (the callback token is taken from them when the site has none). No ``PALLYCON_SITE_ID``: no
default site, every request names its site.

Everything is checked at load, so that a worker stops at start-up rather than at a request. An
error is one :class:`ConfigError` line naming the source, the site and the field, never a value:
``PALLYCON_SITES /etc/sites.toml: site BRND: site_key: must be 32 bytes (AES-256), got 12``.
"""

from __future__ import annotations

import math
import stat
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from pydantic import SecretStr

from pallycon.signing import SiteCredentials
from pallycon_config.rules import (
    SITES_VARIABLE,
    ConfigError,
    check_access_key,
    check_callback_token,
    check_region,
    check_site_id,
    check_site_key,
    env_name,
)
from pallycon_config.secrets import BY_FILE_VARIABLE, SecretFile, SecretFileError, read_secret
from pallycon_config.site_ref import SHOWN_ID_CHARS, SiteBook


class SiteSettings(Protocol):
    """What the sites are made of besides ``PALLYCON_SITES``: the settings' default site and
    defaults (:class:`pallycon_config.Settings` is one; this module builds on no settings
    class, so that the settings can load their sites)."""

    sites_path: Path | None
    site_id: str | None
    access_key: SecretStr | None
    site_key: SecretStr | None
    region: str | None
    api_rate: float
    api_burst: int
    max_in_flight: int
    callback_token: SecretStr | None

    def credentials(self) -> SiteCredentials: ...

    def require_region(self) -> str: ...


#: The fields of a site, as TOML keys and as file names in a site's directory.
FIELDS = (
    "access_key",
    "site_key",
    "region",
    "api_rate",
    "api_burst",
    "max_in_flight",
    "callback_token",
)
#: The fields that are secrets: in a TOML file, given as ``<field>_file`` or inline.
SECRET_FIELDS = ("access_key", "site_key", "callback_token")
#: The fields every site of ``PALLYCON_SITES`` must have.
REQUIRED = ("access_key", "site_key", "region")
#: Appended to a secret field's TOML key: the key naming its file.
FILE_KEY_SUFFIX = "_file"
#: The largest sites file read, in bytes (a few thousand sites with inline keys).
MAX_SITES_FILE_BYTES = 4 * 1024 * 1024

T = TypeVar("T")


@dataclass(frozen=True)
class Site:
    """One PallyCon site: its credentials, region, share of the API rate and callback token."""

    site_id: str
    access_key: SecretStr = field(repr=False)
    site_key: SecretStr = field(repr=False)
    region: str
    api_rate: float
    api_burst: int
    callback_token: SecretStr | None = field(repr=False)
    #: The most of its jobs registered at PallyCon and not finished at once (0: no cap).
    max_in_flight: int = 0

    def credentials(self) -> SiteCredentials:
        """What the protocol client signs with."""
        return SiteCredentials(self.site_id, self.access_key, self.site_key)


@dataclass(frozen=True)
class Sites:
    """Every site served, and the default one (that of a request naming none)."""

    default: str | None
    by_id: Mapping[str, Site]

    _book: SiteBook = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.default is not None and self.default not in self.by_id:
            raise ValueError(f"the default site {self.default} is not among the sites")
        object.__setattr__(self, "by_id", MappingProxyType(dict(self.by_id)))
        object.__setattr__(self, "_book", SiteBook(self.default, tuple(sorted(self.by_id))))

    def book(self, *, served: bool = False) -> SiteBook:
        """These sites as a :class:`SiteBook` (``served``: its errors worded for the sites
        served, as admission words them)."""
        return replace(self._book, served=True) if served else self._book

    def get(self, site_id: str) -> Site:
        """The site ``site_id`` ("": the default one); :class:`UnknownSite` if there is none."""
        return self.by_id[self._book.resolve(site_id)]

    def ids(self) -> list[str]:
        """Every site id, sorted."""
        return list(self._book.ids)

    def named(self, site_id: str) -> str:
        """``site_id`` as records keep it (:meth:`SiteBook.stored`): "" for the default site
        (named or not), another known id as it is; :class:`UnknownSite` if there is no such
        site."""
        return self._book.stored(site_id)


# --- Loading -------------------------------------------------------------------------------


def load_sites(settings: SiteSettings) -> Sites:
    """The sites of ``settings`` (see the module's docstring), each checked; a
    :class:`ConfigError` naming the source, the site and the field otherwise."""
    path = settings.sites_path
    listed = read_sites(path, settings) if path is not None else {}
    default = _default_site(settings, listed, path)
    by_id = dict(listed)
    if default is not None:
        by_id[default.site_id] = default
    if not by_id:
        raise ConfigError(
            f"no site: set {env_name('site_id')}, {env_name('access_key')} and "
            f"{env_name('site_key')}, or {SITES_VARIABLE}"
        )
    return Sites(None if default is None else default.site_id, by_id)


def load_callback_tokens(settings: SiteSettings) -> dict[str, SecretStr]:
    """Each site's callback token, for the callback receiver, which signs nothing: only the
    site ids and the ``callback_token`` fields of ``PALLYCON_SITES`` are read and checked (no
    key file needs to be there), and the default site's token is ``PALLYCON_CALLBACK_TOKEN``
    or its entry's. Sites without a token are left out."""
    tokens: dict[str, SecretStr] = {}
    path = settings.sites_path
    if path is not None:
        source = f"{SITES_VARIABLE} {path}"
        raw = _read_raw(path, source, only=("callback_token",))
        _refuse_case_twins(source, raw)
        for site_id, values in raw.items():
            token = values.get("callback_token")
            if token is not None:
                where = f"{source}: site {site_id}"
                tokens[site_id] = _checked(
                    where, "callback_token", SecretStr(token), check_callback_token
                )
    if settings.site_id is not None and settings.callback_token is not None:
        tokens[settings.site_id] = settings.callback_token
    return tokens


def _read_raw(
    path: Path, source: str, only: Collection[str] | None = None
) -> dict[str, dict[str, Any]]:
    """The fields of each site of the file or directory ``path``, as read (``only``: just
    those fields are read, the others' names still checked)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{source}: cannot be used: {_reason(exc)}") from None
    if stat.S_ISDIR(mode):
        return _read_directory(path, source, only)
    return _read_toml(path, source, only)


def read_sites(path: Path, settings: SiteSettings) -> dict[str, Site]:
    """The sites of the file or directory ``path``, with ``settings``' API rate and burst for
    those that set none."""
    source = f"{SITES_VARIABLE} {path}"
    raw = _read_raw(path, source)
    sites = {
        site_id: _site(f"{source}: site {site_id}", site_id, values, settings)
        for site_id, values in raw.items()
    }
    _refuse_case_twins(source, sites)
    return sites


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _site_prefix(source: str, site_id: str) -> str:
    """``source: site ID``, a site id that is not one checked (and shown quoted)."""
    try:
        check_site_id(site_id)
    except ValueError as exc:
        shown = site_id[:SHOWN_ID_CHARS]
        raise ConfigError(f"{source}: site {shown!r}: site id {exc}") from None
    return f"{source}: site {site_id}"


def _refuse_case_twins(source: str, sites: Iterable[str]) -> None:
    seen: dict[str, str] = {}
    for site_id in sorted(sites):
        other = seen.setdefault(site_id.upper(), site_id)
        if other != site_id:
            raise ConfigError(
                f"{source}: site {site_id}: the same id as site {other} but for case; "
                "site ids must differ by more than case"
            )


# --- The TOML file -------------------------------------------------------------------------


def _read_toml(
    path: Path, source: str, only: Collection[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Each site's fields, secrets read from their files; unknown keys refused."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO that would block, a device
            raise ConfigError(f"{source}: not a regular file or a directory")
        with open(path, "rb") as handle:
            data = handle.read(MAX_SITES_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot be read: {_reason(exc)}") from None
    if len(data) > MAX_SITES_FILE_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_SITES_FILE_BYTES} bytes")
    try:
        # tomllib's messages give a line and a column, never the text there.
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    found = {}
    for site_id, table in document.items():
        where = _site_prefix(source, site_id)
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: not a table; write each site as [{site_id}]")
        found[site_id] = _toml_fields(where, table, path.parent, only)
    return found


def _toml_fields(
    where: str, table: dict[str, Any], base: Path, only: Collection[str] | None = None
) -> dict[str, Any]:
    """The fields of one site's table (``only`` those, if given), each ``<secret>_file``
    replaced by what it holds."""
    allowed = [*FIELDS, *(name + FILE_KEY_SUFFIX for name in SECRET_FIELDS)]
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}: {key}: unknown key (known: {', '.join(allowed)})")
    wanted = FIELDS if only is None else tuple(only)
    values = {key: value for key, value in table.items() if key in wanted}
    for name in SECRET_FIELDS:
        file_key = name + FILE_KEY_SUFFIX
        if file_key not in table or name not in wanted:
            continue
        if name in table:
            raise ConfigError(f"{where}: {name} and {file_key} are both set; set only one of them")
        named = table[file_key]
        if not isinstance(named, str) or not named:
            raise ConfigError(f"{where}: {file_key}: must be a file's path")
        values[name] = _read_file(f"{where}: {file_key}", name, base / named)
    for name in (*SECRET_FIELDS, "region"):
        if name in values and not isinstance(values[name], str):
            raise ConfigError(f"{where}: {name}: must be a string")
    return values


# --- The directory -------------------------------------------------------------------------


def _read_directory(
    path: Path, source: str, only: Collection[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Each site's fields (``only`` those, if given), read from ``<path>/<SITE_ID>/<field>``;
    unknown files refused."""
    found = {}
    for entry in _entries(path, source):
        where = _site_prefix(source, entry.name)
        if not entry.is_dir():
            raise ConfigError(f"{where}: not a directory (one directory per site)")
        values: dict[str, Any] = {}
        for item in _entries(entry, where):
            if item.name not in FIELDS:
                known = ", ".join(FIELDS)
                raise ConfigError(f"{where}: {item.name}: unknown file (known: {known})")
            if only is None or item.name in only:
                values[item.name] = _read_file(f"{where}: {item.name}", item.name, item)
        for name, convert in (("api_rate", float), ("api_burst", int), ("max_in_flight", int)):
            if name in values:
                values[name] = _number(f"{where}: {name}", values[name], convert)
        found[entry.name] = values
    return found


def _entries(path: Path, where: str) -> list[Path]:
    """The entries of the directory ``path`` not starting with a dot, sorted by name."""
    try:
        return sorted(entry for entry in path.iterdir() if not entry.name.startswith("."))
    except OSError as exc:
        raise ConfigError(f"{where}: {path} cannot be read: {_reason(exc)}") from None


def _number(where: str, text: str, convert: Callable[[str], float | int]) -> float | int:
    try:
        return convert(text.strip())
    except ValueError:
        kind = "an integer" if convert is int else "a number"
        raise ConfigError(f"{where}: must be {kind}") from None


def _read_file(where: str, name: str, path: Path) -> str:
    """The content of a field's file, as :func:`pallycon_config.secrets.read_secret` reads it."""
    try:
        return read_secret(SecretFile(name, where, path, BY_FILE_VARIABLE))
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from None


# --- One site's fields ---------------------------------------------------------------------


def _site(where: str, site_id: str, values: Mapping[str, Any], settings: SiteSettings) -> Site:
    """The site ``site_id`` of ``values`` (its fields, as read), each field checked."""
    for name in REQUIRED:
        if name not in values:
            raise ConfigError(f"{where}: {name}: missing")
    rate = values.get("api_rate", settings.api_rate)
    burst = values.get("api_burst", settings.api_burst)
    cap = values.get("max_in_flight", settings.max_in_flight)
    token = values.get("callback_token")
    return Site(
        site_id=site_id,
        access_key=_checked(where, "access_key", SecretStr(values["access_key"]), check_access_key),
        site_key=_checked(where, "site_key", SecretStr(values["site_key"]), check_site_key),
        region=_checked(where, "region", values["region"], check_region),
        api_rate=_checked(where, "api_rate", rate, _check_rate),
        api_burst=_checked(where, "api_burst", burst, _check_burst),
        max_in_flight=_checked(where, "max_in_flight", cap, _check_cap),
        callback_token=None
        if token is None
        else _checked(where, "callback_token", SecretStr(token), check_callback_token),
    )


def _checked(where: str, name: str, value: T, check: Callable[[T], T]) -> T:
    try:
        return check(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {name}: {exc}") from None


def _check_rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a number greater than 0 (calls per second)")
    return float(value)


def _check_burst(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _check_cap(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    if value < 0:
        raise ValueError("must be 0 (no cap) or more (jobs at PallyCon at once)")
    return value


# --- The default site ----------------------------------------------------------------------


def _default_site(
    settings: SiteSettings, listed: Mapping[str, Site], path: Path | None
) -> Site | None:
    """The default site: made of the settings, or ``PALLYCON_SITE_ID``'s site in
    ``PALLYCON_SITES``; ``None`` without ``PALLYCON_SITE_ID``."""
    site_id = settings.site_id
    keys = settings.access_key is not None or settings.site_key is not None
    if site_id is None or keys:
        if keys:
            settings.credentials()  # a ConfigError naming what else is missing
        if site_id is None:
            return None
        return _settings_site(settings, site_id, listed, path)
    if path is None:
        raise ConfigError(
            f"missing setting: {env_name('access_key')}, {env_name('site_key')} "
            f"(or site {site_id} in {SITES_VARIABLE})"
        )
    source = f"{SITES_VARIABLE} {path}"
    site = listed.get(site_id)
    if site is None:
        raise ConfigError(
            f"{source}: no site {site_id}, the default site ({env_name('site_id')}); add it, "
            f"or set {env_name('access_key')} and {env_name('site_key')}"
        )
    return _agreed(f"{source}: site {site_id}", site, settings)


def _settings_site(
    settings: SiteSettings, site_id: str, listed: Mapping[str, Site], path: Path | None
) -> Site:
    """The default site made of the settings, which ``PALLYCON_SITES`` must not hold too."""
    twin = next((other for other in listed if other.upper() == site_id.upper()), None)
    if twin is not None:
        raise ConfigError(
            f"{SITES_VARIABLE} {path}: site {twin}: it is the default site, whose keys "
            f"{env_name('access_key')} and {env_name('site_key')} are set: keep it in one place"
        )
    credentials = settings.credentials()
    return Site(
        site_id=site_id,
        access_key=credentials.access_key,
        site_key=credentials.site_key,
        region=settings.require_region(),
        api_rate=settings.api_rate,
        api_burst=settings.api_burst,
        max_in_flight=settings.max_in_flight,
        callback_token=settings.callback_token,
    )


def _agreed(where: str, site: Site, settings: SiteSettings) -> Site:
    """The default ``site`` of ``PALLYCON_SITES``, refused if ``PALLYCON_REGION`` or
    ``PALLYCON_CALLBACK_TOKEN`` say otherwise; the token taken from the settings if it has
    none."""
    if settings.region is not None and settings.region != site.region:
        raise ConfigError(
            f"{where}: region: differs from {env_name('region')}; set one of them, or both alike"
        )
    token = settings.callback_token
    if token is None or site.callback_token is None:
        return site if token is None else replace(site, callback_token=token)
    if token != site.callback_token:
        raise ConfigError(
            f"{where}: callback_token: differs from {env_name('callback_token')}; "
            "set one of them, or both alike"
        )
    return site
