"""The one settings class of pallycon-pack.

Every value comes from a ``PALLYCON_*`` environment variable, a ``.env`` file in the current
directory, or keyword overrides (command-line flags); a secret can also come from a file
(``PALLYCON_<NAME>_FILE`` or ``PALLYCON_SECRETS_DIR``, see :mod:`pallycon_config.secrets`). Nothing
reads settings as a global: entry points call :func:`load_settings` once and pass the object
(or the parts it needs) into constructors.

Site credentials are optional at load time, because a producer that only enqueues requests must
not need the site key; code that signs asks for them through :meth:`Settings.credentials`, which
names the missing variable. More sites than the default one come from ``PALLYCON_SITES`` (a file
or a directory, :mod:`pallycon_config.sites`), loaded and checked by :meth:`Settings.sites`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, DotEnvSettingsSource, SettingsConfigDict

from pallycon.models import WireOptions
from pallycon.options import ClientOptions, max_api_json_bytes
from pallycon.signing import SiteCredentials
from pallycon_config.names import (
    READ_ELSEWHERE,
    Unknown,
    given_names,
    told_in_log_only,
    unknown_names,
    unknown_once,
)
from pallycon_config.rules import (
    ENV_PREFIX,
    SITES_VARIABLE,
    ConfigError,
    check_access_key,
    check_callback_token,
    check_region,
    check_site_id,
    check_site_key,
    check_webhook_key,
    env_name,
)
from pallycon_config.secrets import (
    FILE_SUFFIX,
    SECRETS_DIR_VARIABLE,
    SecretFile,
    SecretFileError,
    locate,
    read_secret,
    refuse_in_dotenv,
    secret_fields,
)
from pallycon_config.sites import Sites, load_sites

SettingsT = TypeVar("SettingsT", bound=BaseSettings)

#: Where every settings class reads from, besides its prefix: the environment and ``.env``.
SOURCES = SettingsConfigDict(
    env_file=".env", env_file_encoding="utf-8", extra="ignore", validate_default=True
)

#: URL schemes of PALLYCON_REDIS_URL that every process (redis-py and kombu) can use: not
#: ``unix://`` (kombu has no such transport), nor Sentinel or Cluster.
REDIS_SCHEMES = ("redis", "rediss")

#: The callback token of ``.env.example``: a process started with it warns.
PLACEHOLDER_TOKEN = "change-me-to-a-long-random-token"  # noqa: S105 - a known bad value


#: The delays between a webhook delivery's attempts (Standard Webhooks' schedule): at once,
#: then 5 s, 5 min, 30 min, 2 h, 5 h and six times 10 h.
DEFAULT_WEBHOOK_RETRY_SCHEDULE = "5,300,1800,7200,18000,36000,36000,36000,36000,36000,36000"


def parse_delays(text: str) -> tuple[float, ...]:
    """The delays of ``PALLYCON_WEBHOOK_RETRY_SCHEDULE`` (seconds, comma-separated, each
    from 0 to 30 days, at most 50 of them; none: one attempt only); a ValueError naming the
    one that is not."""
    delays = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            delay = float(part)
        except ValueError:
            raise ValueError(f"{part!r} is not a number of seconds") from None
        if not 0 <= delay <= 30 * 24 * 3600:
            raise ValueError(f"{part!r}: a delay is 0 to 2592000 seconds (30 days)")
        delays.append(delay)
    if len(delays) > 50:
        raise ValueError("at most 50 delays")
    return tuple(delays)


#: Celery's hard task time limit, as a share of the visibility timeout.
HARD_TIME_LIMIT_SHARE = 0.8
#: Celery's soft task time limit, as a share of the visibility timeout.
SOFT_TIME_LIMIT_SHARE = 0.7


def variable_name(kind: type[BaseSettings], field: str) -> str:
    """The environment variable that sets ``field`` of ``kind``: its prefix and name, or its
    alias (``sites_path``: ``PALLYCON_SITES``)."""
    info = kind.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, str):
        return alias.upper()
    return f"{kind.model_config.get('env_prefix') or ''}{field.upper()}"


def _aliases(kind: type[BaseSettings]) -> dict[str, str]:
    """The fields of ``kind`` set by another variable than their name: alias -> field."""
    return {
        info.validation_alias.upper(): name
        for name, info in kind.model_fields.items()
        if isinstance(info.validation_alias, str)
    }


def field_name(kind: type[BaseSettings], key: str) -> str:
    """The field of ``kind`` that ``key`` (a field's name or its alias) sets."""
    return _aliases(kind).get(key.upper(), key)


class Settings(BaseSettings):
    """All settings, with the defaults a new user gets."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, validate_by_name=True, **SOURCES)

    #: The secrets read from files, by field, with the value read (set by
    #: :func:`read_settings`): a copy with another value (``model_copy``) no longer uses it.
    _secret_files: dict[str, tuple[SecretFile, Any]] = PrivateAttr(default_factory=dict)
    #: :meth:`sites` once loaded, with the settings it was loaded from.
    _sites: tuple[tuple[Any, ...], Sites] | None = PrivateAttr(default=None)

    # --- PallyCon site credentials (PallyCon Console > site settings) -------------------------
    site_id: str | None = Field(default=None, description="Site ID, e.g. TUTO.")
    access_key: SecretStr | None = Field(default=None, description="Site access key.")
    site_key: SecretStr | None = Field(default=None, description="Site key: 32 bytes, AES-256.")
    region: str | None = Field(
        default=None, description="Region code (RG011 = Seoul) sent where the guide requires one."
    )
    sites_path: Path | None = Field(
        default=None,
        validation_alias=SITES_VARIABLE,
        description="More sites: a TOML file, or a directory with one directory per site.",
    )

    # --- The API -------------------------------------------------------------------------------
    api_url: str = Field(default="https://api.pallycon.com", description="Base URL of the API.")
    apidata_in: Literal["query", "form"] = Field(
        default="query", description="Where pallycon-apidata travels: URL query or form body."
    )
    protection_key: Literal["protect_type", "protection_type"] = Field(
        default="protect_type",
        description="Key written for the protection list of a job (the guide uses both).",
    )
    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to connect.")
    read_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for a response.")
    http_pool_size: int = Field(default=20, ge=1, description="Pooled connections per process.")
    max_response_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Larger responses are refused as malformed."
    )

    # --- Redis (the queue, state and result channel) -------------------------------------------
    redis_url: str = Field(
        default="redis://localhost:6379/0",
        description="Redis server URL (with Sentinel: only its scheme, user, password and "
        "database count; the primary's address comes from the sentinels).",
    )
    redis_password: SecretStr | None = Field(
        default=None, description="Redis password; wins over one in PALLYCON_REDIS_URL."
    )
    redis_sentinels: str = Field(
        default="",
        description="Sentinels as host:port,host:port; set, the primary is found through "
        "them and followed when they fail over.",
    )
    redis_master_name: str = Field(
        default="mymaster", min_length=1, description="The primary's name at the sentinels."
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None, description="The sentinels' own password (their requirepass), if any."
    )
    redis_wait_replicas: int = Field(
        default=0,
        ge=0,
        description="Replicas that must have a change (WAIT) before a request is acknowledged "
        "and before a job is registered; 0 waits for none.",
    )
    redis_replica_wait_ms: int = Field(
        default=2000,
        ge=1,
        description="The longest wait for PALLYCON_REDIS_WAIT_REPLICAS replicas; then the "
        "change is not relied on (the producer gets an error, the job is not registered yet).",
    )
    redis_startup_wait: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="Seconds a starting worker waits for a Redis it cannot reach (one warning "
        "line, then retries) before it exits; 0 exits at once.",
    )
    key_prefix: str = Field(default="pp", min_length=1, description="Prefix of every Redis key.")
    result_maxlen: int = Field(
        default=1_000_000, ge=1000, description="Result stream length kept (approximate trim)."
    )
    redis_fsync_wait_ms: int = Field(
        default=2000,
        ge=0,
        description="Wait for Redis to fsync (WAITAOF) before acknowledging "
        "a request and before registering a job; 0 turns it off.",
    )
    record_ttl: int = Field(
        default=7 * 24 * 3600, ge=60, description="Seconds a finished request's record is kept."
    )

    # --- The worker ----------------------------------------------------------------------------
    visibility_timeout: int = Field(
        default=300, ge=30, description="Seconds before an unacknowledged task is redelivered."
    )
    lease_seconds: float = Field(
        default=60.0, gt=0, description="A claimed schedule entry comes back after this."
    )
    sweep_interval: float = Field(
        default=1.0, gt=0, le=10, description="Seconds between sweeps (at most 10)."
    )
    sweep_batch: int = Field(default=10_000, ge=1, description="Most due polls one sweep claims.")
    submit_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Registrations one worker process sends at once (threads; at most the "
        "HTTP pool size are useful).",
    )
    max_deliveries: int = Field(
        default=5, ge=1, description="A request delivered more often than this is dead-lettered."
    )
    api_rate: float = Field(default=20.0, gt=0, description="API calls per second, all workers.")
    api_burst: int = Field(default=20, ge=1, description="API calls allowed in a burst.")
    max_in_flight: int = Field(
        default=0,
        ge=0,
        description="The most of a site's jobs registered at PallyCon and not finished at "
        "once (the next is registered as one finishes); 0: no cap.",
    )
    retry_base: float = Field(default=1.0, gt=0, description="First retry delay (doubles).")
    retry_cap: float = Field(default=60.0, gt=0, description="Longest retry delay.")
    submit_deadline: float = Field(
        default=3600.0, gt=0, description="Give up submitting a request after this many seconds."
    )
    reconcile_grace: float = Field(
        default=10.0,
        ge=0,
        description="Wait before a job whose registration answer was lost "
        "is taken as absent and registered again.",
    )
    poll_interval: float = Field(default=10.0, gt=0, description="Seconds between job polls.")
    poll_busy_interval: float = Field(
        default=30.0, gt=0, description="Poll interval in long stages (download, watermark, DRM)."
    )
    poll_grid: float = Field(
        default=5.0, ge=0, description="Polls align to multiples of this, so that they coalesce."
    )
    poll_page_unit: int = Field(default=500, ge=1, description="Jobs per job-list page.")
    poll_coalesce: bool = Field(
        default=True,
        description="Read job-list pages for many jobs at once (off: one lookup each).",
    )
    poll_window_margin: float = Field(
        default=600.0, ge=0, description="Job-list window starts this long before the oldest job."
    )
    job_timeout: float = Field(
        default=6 * 3600.0, gt=0, description="A job unfinished after this fails (timeout)."
    )
    log_level: str = Field(default="INFO", description="Worker log level.")

    # --- The callback receiver -----------------------------------------------------------------
    callback_token: SecretStr | None = Field(
        default=None, description="Secret path token: the callback URL is /callback/<token>."
    )
    callback_host: str = Field(default="127.0.0.1", description="Callback receiver address.")
    callback_port: int = Field(default=8700, ge=0, le=65535, description="Callback port.")

    # --- Webhooks ------------------------------------------------------------------------------
    webhook_key: SecretStr | None = Field(
        default=None,
        description="Key that encrypts the webhook endpoints' secrets in Redis (at least 32 "
        "characters; changing it makes the stored secrets unreadable).",
    )
    webhook_timeout: float = Field(
        default=15.0,
        gt=0,
        le=30,
        description="Seconds a webhook delivery waits to connect, and for each read (at most 30).",
    )
    webhook_retry_schedule: str = Field(
        default=DEFAULT_WEBHOOK_RETRY_SCHEDULE,
        description="Seconds between a webhook delivery's attempts, comma-separated: one "
        "attempt more than delays; then the delivery goes to the dead-letter list.",
    )
    webhook_disable_after: float = Field(
        default=5 * 24 * 3600.0,
        gt=0,
        description="An endpoint that failed every delivery for this many seconds since its "
        "last success is disabled.",
    )
    webhook_dead_letters: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Dead-lettered webhook deliveries kept per endpoint (with their bodies): "
        "the oldest are dropped as new ones come.",
    )
    webhook_concurrency: int = Field(
        default=32,
        ge=1,
        le=512,
        description="Webhook deliveries one worker sends at once (threads).",
    )
    webhook_endpoint_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Deliveries to one endpoint in flight at once, across all workers.",
    )

    # --- The metrics exporter ------------------------------------------------------------------
    metrics_host: str = Field(default="127.0.0.1", description="Metrics exporter address.")
    metrics_port: int = Field(default=9840, ge=0, le=65535, description="Metrics port.")

    @field_validator("site_key")
    @classmethod
    def _site_key_is_32_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else check_site_key(value)

    @field_validator("sites_path", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: Any) -> Any:
        """``PALLYCON_SITES=`` (left empty in a file) names no sites, not the current directory."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_password", "redis_sentinel_password")
    @classmethod
    def _empty_password_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty password is no password (``PALLYCON_REDIS_PASSWORD=`` left in a file must
        not discard the one in the URL)."""
        return None if value is not None and not value.get_secret_value() else value

    @field_validator("access_key")
    @classmethod
    def _access_key_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else check_access_key(value)

    @field_validator("callback_token")
    @classmethod
    def _token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else check_callback_token(value)

    @field_validator("site_id")
    @classmethod
    def _site_id_shape(cls, value: str | None) -> str | None:
        return None if value is None else check_site_id(value)

    @field_validator("region")
    @classmethod
    def _region_shape(cls, value: str | None) -> str | None:
        return None if value is None else check_region(value)

    @field_validator("api_url")
    @classmethod
    def _api_url_shape(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _redis_url_usable(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"scheme {scheme + '://' if scheme else '(none)'} is not supported; use "
                + " or ".join(f"{name}://" for name in REDIS_SCHEMES)
                + " (unix sockets and Cluster are not supported; for Sentinel set "
                + env_name("redis_sentinels")
                + ")"
            )
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _retry_schedule_shape(cls, value: str) -> str:
        parse_delays(value)  # raises ValueError naming the bad delay
        return value.strip()

    @property
    def webhook_delays(self) -> tuple[float, ...]:
        """The delays between a webhook delivery's attempts, in seconds."""
        return parse_delays(self.webhook_retry_schedule)

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_shape(cls, value: str) -> str:
        parse_sentinels(value)  # raises ValueError naming the bad entry
        return value.strip()

    @property
    def redis(self) -> RedisTarget:
        """Where Redis is and how to log in: what every process connects with."""
        return RedisTarget(
            url=self.redis_url,
            password=self.redis_password,
            sentinels=parse_sentinels(self.redis_sentinels),
            master_name=self.redis_master_name,
            sentinel_password=self.redis_sentinel_password,
        )

    def redis_url_shown(self) -> str:
        """``redis_url`` with its password masked: for messages and logs."""
        return self.redis.shown()

    @property
    def max_api_json_bytes(self) -> int:
        """The largest request (its API JSON, in bytes) the configured transport can send."""
        return max_api_json_bytes(self.api_url, self.apidata_in, self.site_id)

    @property
    def max_api_json_bytes_any_site(self) -> int:
        """:attr:`max_api_json_bytes` for a request naming a site, whose id may be the
        longest allowed: the limit producers and the intake hold such a request to."""
        return min(self.max_api_json_bytes, max_api_json_bytes(self.api_url, self.apidata_in))

    @property
    def task_time_limit(self) -> int:
        """Seconds after which Celery kills a task (a share of the visibility timeout, so that
        a task is dead before its message is delivered again)."""
        return int(self.visibility_timeout * HARD_TIME_LIMIT_SHARE)

    @property
    def task_soft_time_limit(self) -> int:
        """Seconds after which a task is asked to stop (before the hard limit kills it)."""
        return int(self.visibility_timeout * SOFT_TIME_LIMIT_SHARE)

    def client_options(self) -> ClientOptions:
        """The protocol client's options (the one place that maps the settings to them)."""
        return ClientOptions(
            base_url=self.api_url,
            apidata_in=self.apidata_in,
            wire=WireOptions(protection_key=self.protection_key),
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            pool_size=self.http_pool_size,
            max_response_bytes=self.max_response_bytes,
        )

    @property
    def secret_files(self) -> dict[str, SecretFile]:
        """The secrets that were read from files, by field, and where from."""
        return {
            name: where
            for name, (where, value) in self._secret_files.items()
            if getattr(self, name) is value
        }

    def environment(self) -> dict[str, str]:
        """These settings as ``PALLYCON_*`` variables, secrets revealed: for a child process's
        environment only (never to be logged). A secret read from a file is handed on as
        ``PALLYCON_<NAME>_FILE`` naming that file, so that it is not copied into the child's
        environment."""
        env = {}
        files = self.secret_files
        for name, value in self.model_dump(exclude_none=True).items():
            where = files.get(name)
            if where is not None:
                # Absolute (a child may run elsewhere), symlinks kept (a Kubernetes Secret
                # volume swaps them when the secret changes).
                env[env_name(name) + FILE_SUFFIX] = os.path.abspath(where.path)
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, Path):
                value = os.path.abspath(value)  # a child may run in another directory
            env[env_name(name)] = str(value)
        return env

    def credentials(self) -> SiteCredentials:
        """The site credentials, or a :class:`ConfigError` naming what is missing."""
        missing = [
            env_name(name)
            for name in ("site_id", "access_key", "site_key")
            if getattr(self, name) is None
        ]
        if missing:
            where = "see .env.example"
            if any(name != env_name("site_id") for name in missing) and os.environ.get(
                SECRETS_DIR_VARIABLE
            ):
                where += f"; in {SECRETS_DIR_VARIABLE}, a file named exactly like the variable"
            raise ConfigError(f"missing setting: {', '.join(missing)} ({where})")
        assert self.site_id is not None
        assert self.access_key is not None
        assert self.site_key is not None
        return SiteCredentials(self.site_id, self.access_key, self.site_key)

    def require_callback_token(self) -> SecretStr:
        """The callback token, or a :class:`ConfigError` naming ``PALLYCON_CALLBACK_TOKEN``."""
        if self.callback_token is None:
            raise ConfigError(
                f"missing setting: {env_name('callback_token')} (any long random text)"
            )
        return self.callback_token

    def require_webhook_key(self) -> SecretStr:
        """The key of the webhook endpoints' secrets, or a :class:`ConfigError` naming
        ``PALLYCON_WEBHOOK_KEY``."""
        if self.webhook_key is None:
            raise ConfigError(
                f"missing setting: {env_name('webhook_key')} (the key that encrypts webhook "
                "secrets in Redis: 32 or more random characters, the same for every process)"
            )
        try:  # checked here, not as the settings load: a bad key stops only what needs it
            return check_webhook_key(self.webhook_key)
        except ValueError as exc:
            where = self.secret_files.get("webhook_key")
            source = f" (from {where.label()})" if where is not None else ""
            raise ConfigError(f"{env_name('webhook_key')}{source}: {exc}") from None

    def require_region(self) -> str:
        """The region code, or a :class:`ConfigError` naming ``PALLYCON_REGION``."""
        if self.region is None:
            raise ConfigError(f"missing setting: {env_name('region')} (a code such as RG011)")
        return self.region

    def sites(self) -> Sites:
        """Every site served: the default one (``PALLYCON_SITE_ID``) and those of
        ``PALLYCON_SITES``, each checked; a :class:`ConfigError` naming the source, the site
        and the field otherwise (see :mod:`pallycon_config.sites`). Loaded once per settings object
        (again if a copy changed what it is made from)."""
        made_of = (
            self.sites_path,
            self.site_id,
            self.access_key,
            self.site_key,
            self.region,
            self.api_rate,
            self.api_burst,
            self.max_in_flight,
            self.callback_token,
        )
        if self._sites is None or self._sites[0] != made_of:
            self._sites = (made_of, load_sites(self))
        return self._sites[1]


@dataclass(frozen=True)
class RedisTarget:
    """How to reach Redis: a URL, or sentinels that name the primary (the URL then gives the
    scheme, user, password and database). ``password`` wins over the URL's."""

    url: str = field(repr=False)  # it may hold a password
    password: SecretStr | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = "mymaster"
    sentinel_password: SecretStr | None = None

    def shown(self) -> str:
        """Where, for messages and logs: no password."""
        if not self.sentinels:
            return mask_url(self.url)
        nodes = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"sentinel {self.master_name}@{nodes}"


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` as pairs; a ``ValueError`` naming an entry that is not."""
    nodes = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        host, _, port = entry.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r} is not host:port (e.g. sentinel-1:26379)")
        nodes.append((host, int(port)))
    return tuple(nodes)


def mask_url(url: str) -> str:
    """``url`` with the password of its user part replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))


def known_variables() -> frozenset[str]:
    """Every ``PALLYCON_*`` variable some process reads: this package's settings, their
    secrets' ``_FILE`` variables, ``PALLYCON_SECRETS_DIR``, and the other packages' settings
    (:data:`~pallycon_config.names.READ_ELSEWHERE`)."""
    own = {variable_name(Settings, name) for name in Settings.model_fields}
    files = {env_name(name) + FILE_SUFFIX for name in secret_fields(Settings)}
    return frozenset(own | files | {SECRETS_DIR_VARIABLE} | READ_ELSEWHERE)


def unknown_settings(dotenv: Iterable[str] | None = None) -> list[Unknown]:
    """The ``PALLYCON_*`` names set in the environment or ``.env`` (``dotenv``: the names it
    sets; by default, the working directory's) that no process reads, each with the nearest
    known one."""
    if dotenv is None:
        dotenv = DotEnvSettingsSource(Settings).env_vars
    return unknown_names(given_names(os.environ, dotenv), known_variables())


def warn_unknown(dotenv: Iterable[str] | None = None) -> None:
    """One ``warning:`` line on stderr for each unknown ``PALLYCON_*`` name (see
    :func:`unknown_settings`) not told of yet in this process."""
    if told_in_log_only():  # a server: its start line tells them, as JSON
        return
    for unknown in unknown_once(unknown_settings(dotenv)):
        sys.stderr.write(f"warning: {unknown.sentence()}\n")


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; ``overrides`` (flags) win over the environment and ``.env``.

    Overrides that are ``None`` are ignored, so unset flags fall through to the environment.
    Raises :class:`ConfigError` naming each invalid variable.
    """
    return read_settings(Settings, env_name, overrides)


def read_settings(
    kind: type[SettingsT],
    name_of: Callable[[str], str],
    overrides: dict[str, Any],
    environ: Mapping[str, str] | None = None,
) -> SettingsT:
    """Settings of class ``kind`` from ``overrides`` (``None`` ones ignored), the environment,
    secret files (:mod:`pallycon_config.secrets`) and ``.env``, in that order; a
    :class:`ConfigError` naming each invalid variable (``name_of(field)``) and, for a secret read
    from a file, the file. ``environ`` is where ``_FILE`` and ``PALLYCON_SECRETS_DIR`` are looked up
    (``os.environ`` by default)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    dotenv = DotEnvSettingsSource(kind).env_vars if kind.model_config.get("env_file") else {}
    warn_unknown(dotenv)
    try:
        refuse_in_dotenv(kind, name_of, dotenv)
        files = locate(kind, name_of, os.environ if environ is None else environ, frozenset(given))
        values: dict[str, Any] = {field: read_secret(where) for field, where in files.items()}
    except SecretFileError as exc:
        raise ConfigError(f"invalid settings:\n  {exc}") from None
    try:
        settings = kind(**(values | given))
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            field = field_name(kind, field)
            where = f" (from {files[field].label()})" if field in files else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"{name_of(field)}{where}: {message}")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines)) from None
    if files and "_secret_files" in (kind.__private_attributes__ or {}):
        settings._secret_files = {  # type: ignore[attr-defined]
            field: (where, getattr(settings, field)) for field, where in files.items()
        }
    return settings
