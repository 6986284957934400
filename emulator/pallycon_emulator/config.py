"""What the emulator is told at start-up: its sites, timing, storage folder, callbacks and faults.

Its settings are apart from the worker's: ``PALLYCON_EMULATOR_*`` variables (or the same
``.env`` file), read by the emulator command alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pallycon.signing import SiteCredentials
from pallycon_config.settings import SOURCES, mask_url, read_settings

EMULATOR_ENV_PREFIX = "PALLYCON_EMULATOR_"

HOSTILE_MODES = ("non_json", "truncated", "missing_fields", "wrong_types", "huge", "unknown_code")


@dataclass(frozen=True)
class FaultConfig:
    """Failures injected in front of the API, each drawn at random per request.

    - ``error_rate``: share of requests answered with a status from ``error_statuses``.
    - ``rate_limit_rate``: share answered 429 with ``Retry-After: retry_after``.
    - ``latency``: seconds added before every API request is handled.
    - ``drop_rate``: share of job registrations that are registered, then the connection is
      closed without a response ("accept then drop").
    - ``hostile_rate``: share answered with a hostile response, one of ``hostile_modes``:
      ``non_json``, ``truncated``, ``missing_fields``, ``wrong_types``, ``huge`` (10 MB) are sent
      after the request was processed (its outcome is ambiguous); ``unknown_code`` instead of
      processing it.
    """

    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 503)
    rate_limit_rate: float = 0.0
    retry_after: float = 1.0
    latency: float = 0.0
    drop_rate: float = 0.0
    hostile_rate: float = 0.0
    hostile_modes: tuple[str, ...] = HOSTILE_MODES

    def __post_init__(self) -> None:
        unknown = set(self.hostile_modes) - set(HOSTILE_MODES)
        if unknown or not self.hostile_modes:
            raise ValueError(f"hostile_modes must be among {', '.join(HOSTILE_MODES)}")
        for name in ("error_rate", "rate_limit_rate", "drop_rate", "hostile_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.error_rate + self.rate_limit_rate > 1.0:
            raise ValueError("error_rate + rate_limit_rate must not exceed 1")
        if self.latency < 0 or self.retry_after < 0:
            raise ValueError("latency and retry_after must not be negative")
        if any(not 500 <= status <= 599 for status in self.error_statuses) or not (
            self.error_statuses
        ):
            raise ValueError("error_statuses must be 5xx codes")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultConfig:
        known = {key: data[key] for key in asdict(cls()) if key in data}
        if "error_statuses" in known:
            known["error_statuses"] = tuple(int(code) for code in known["error_statuses"])
        if "hostile_modes" in known:
            known["hostile_modes"] = tuple(str(mode) for mode in known["hostile_modes"])
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown fault option(s): {', '.join(unknown)}")
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- Callback URLs ----------------------------------------------------------------------------

_CALLBACK_PATH = re.compile(r"^(/callback/).*$", re.S)


def masked_callback_url(url: str) -> str:
    """``url`` fit for a log: its password and its whole path after ``/callback/`` (or its whole
    path, if it has no such prefix) masked, its query and fragment dropped: the path of a
    callback URL carries its token (``/callback/<token>``, ``/callback/<site>/<token>``)."""
    parts = urlsplit(mask_url(url))
    path = _CALLBACK_PATH.sub(r"\g<1>***", parts.path)
    if path == parts.path and path not in ("", "/"):
        path = "/***"
    return parts._replace(path=path, query="", fragment="").geturl()


def callback_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a callback URL (a sentence that never holds the URL), or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an http:// or https:// URL with a host"
    return None


def without_token(url: str) -> bool:
    """Whether a callback URL carries no token where the receiver expects one: its path is
    empty or ends with ``/`` (``.../callback/`` is what ``.../callback/$TOKEN`` becomes in a
    shell where ``TOKEN`` is not set), or its last segment is ``callback``."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return False  # not a URL at all: refused elsewhere
    return path in ("", "/") or path.endswith("/") or path.rsplit("/", 1)[-1] == "callback"


class CallbackUrl(SecretStr):
    """A callback URL: a secret (its path holds a token) shown masked, host and port kept."""

    def _display(self) -> str:
        return masked_callback_url(self.get_secret_value())


def parse_site_callbacks(text: str) -> dict[str, str]:
    """``SITE_ID=URL`` entries separated by spaces (the variable's form); a ValueError whose
    message names the entry by number, never its content."""
    found: dict[str, str] = {}
    for number, entry in enumerate(text.split(), start=1):
        site_id, sep, url = entry.partition("=")
        if not (sep and site_id and url):
            raise ValueError(f"entry {number}: expected SITE_ID=URL")
        if site_id in found:
            raise ValueError(f"site {site_id} is given twice")
        found[site_id] = url
    return found


class EmulatorSettings(BaseSettings):
    """The emulator's settings, with the defaults a new user gets."""

    model_config = SettingsConfigDict(env_prefix=EMULATOR_ENV_PREFIX, **SOURCES)

    host: str = Field(default="127.0.0.1", description="Emulator listen address.")
    port: int = Field(default=8600, ge=0, le=65535, description="Emulator port.")
    job_seconds: float = Field(
        default=20.0, ge=0, description="How long an emulated job takes from WM000 to WM030."
    )
    data_dir: Path | None = Field(
        default=None, description="Storages map to folders <dir>/<bucket>/; outputs written there."
    )
    callback_url: str | None = Field(
        default=None, description="Where the emulator POSTs the result callback of each job."
    )
    callback_urls: Annotated[dict[str, CallbackUrl], NoDecode] = Field(
        default_factory=dict,
        description="Per site, where the emulator POSTs its jobs' callbacks: SITE_ID=URL entries "
        "separated by spaces; a site not named uses callback_url.",
    )
    status_style: Literal["code", "word"] = Field(
        default="code", description="Job list status as a WM code or as a word."
    )
    max_skew_seconds: float | None = Field(
        default=None, gt=0, description="Refuse timestamps further off than this (A1002)."
    )
    max_page_unit: int = Field(
        default=500, ge=1, description="Largest page the emulator returns (larger ones clamp)."
    )
    slots: int = Field(
        default=0,
        ge=0,
        description="The most jobs of one site working at once; the others wait in WM000, "
        "first registered first served (0 = unlimited).",
    )
    stop_seconds: float = Field(
        default=1.0, ge=0, description="How long a stopped job stays WM100 before WM200."
    )

    @field_validator("callback_urls", mode="before")
    @classmethod
    def _callback_urls_entries(cls, value: Any) -> Any:
        return parse_site_callbacks(value) if isinstance(value, str) else value

    @field_validator("callback_urls")
    @classmethod
    def _callback_urls_shape(cls, value: dict[str, CallbackUrl]) -> dict[str, CallbackUrl]:
        for site_id, url in value.items():
            problem = callback_url_problem(url.get_secret_value())
            if problem:
                raise ValueError(f"site {site_id}: the URL {problem}")
        return value


def emulator_env_name(field: str) -> str:
    """The environment variable that sets the emulator's ``field``."""
    return f"{EMULATOR_ENV_PREFIX}{field.upper()}"


def load_emulator_settings(**overrides: Any) -> EmulatorSettings:
    """Read the emulator's settings; ``overrides`` (flags) win over the environment and ``.env``.

    Overrides that are ``None`` are ignored, so unset flags fall through to the environment.
    Raises :class:`ConfigError` naming each invalid variable.
    """
    return read_settings(EmulatorSettings, emulator_env_name, overrides)


@dataclass(frozen=True)
class EmulatorConfig:
    sites: tuple[SiteCredentials, ...]
    job_seconds: float = 20.0
    data_dir: Path | None = None
    callback_url: str | None = None
    #: Per site id, where its jobs' callbacks go (instead of ``callback_url``).
    callback_urls: Mapping[str, str] = field(default_factory=dict, repr=False)
    status_style: Literal["code", "word"] = "code"
    max_skew_seconds: float | None = None
    max_page_unit: int = 500
    #: The most jobs of one site working at once (0: unlimited).
    slots: int = 0
    stop_seconds: float = 1.0
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        served = [site.site_id for site in self.sites]
        for site_id, url in self.callback_urls.items():
            if site_id not in served:
                raise ValueError(
                    f"callback_urls: site {site_id} is not served (sites: {', '.join(served)})"
                )
            problem = callback_url_problem(url)
            if problem:
                raise ValueError(f"callback_urls: site {site_id}: the URL {problem}")

    def warnings(self) -> list[str]:
        """What an operator should hear at start-up (one sentence each): a callback URL with no
        token (every callback would get a 404), a data directory with nothing in it (every
        job's input would be missing)."""
        found = []
        named = [("the callback URL", self.callback_url)] + [
            (f"site {site_id}'s callback URL", url) for site_id, url in self.callback_urls.items()
        ]
        for what, url in named:
            if url and without_token(url):
                found.append(
                    f"{what} ({_origin(url)}) ends without a token: the receiver "
                    "answers 404 to every callback; use --callback-receiver, or put the token "
                    "after /callback/"
                )
        if self.data_dir is not None and not _holds_anything(self.data_dir):
            found.append(
                f"the data directory {self.data_dir} is empty: every job's input is missing "
                "(WM900013); copy examples/emulator-data into it for the examples' inputs"
            )
        return found

    def callback_url_of(self, site_id: str) -> str | None:
        """Where the callbacks of ``site_id``'s jobs go: its own URL, else ``callback_url``."""
        return self.callback_urls.get(site_id) or self.callback_url

    @classmethod
    def from_settings(
        cls, settings: EmulatorSettings, *, sites: tuple[SiteCredentials, ...], **changes: Any
    ) -> EmulatorConfig:
        """The emulator serving ``sites``, as ``settings`` say."""
        config = cls(
            sites=sites,
            job_seconds=settings.job_seconds,
            data_dir=settings.data_dir,
            callback_url=settings.callback_url,
            callback_urls={
                site_id: url.get_secret_value() for site_id, url in settings.callback_urls.items()
            },
            status_style=settings.status_style,
            max_skew_seconds=settings.max_skew_seconds,
            max_page_unit=settings.max_page_unit,
            slots=settings.slots,
            stop_seconds=settings.stop_seconds,
        )
        given = {key: value for key, value in changes.items() if value is not None}
        return replace(config, **given)


def _origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, its password masked: nothing of its path."""
    return urlsplit(mask_url(url))._replace(path="", query="", fragment="").geturl()


def _holds_anything(folder: Path) -> bool:
    """Whether ``folder`` exists and has an entry."""
    return folder.is_dir() and any(folder.iterdir())


#: The site the emulator serves when no credentials are configured, and the demo uses. These are
#: not secrets: they only ever open the emulator (the same values are in .env.example).
DEMO_SITE = SiteCredentials.of(
    "DEMO", "pallycon-pack-demo-access-key-01", "pallycon-pack-demo-site-key-0032"
)
DEMO_REGION = "RG011"
