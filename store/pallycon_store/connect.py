"""Connecting to Redis: one way for every process, whether Redis is one server or a primary that
sentinels fail over.

Every process connects through :func:`connect_redis` (redis-py, blocking), :func:`connect_async`
(the callback receiver) or :func:`broker_conf` (Celery's kombu transport), all from one
:class:`config.RedisTarget`. With sentinels, each asks them for the primary on every new
connection, so a connection lost in a failover is made again to the new primary.

The sentinels are asked in turn, each once: the turn is the retry. A sentinel that is down or
never answers costs one short deadline (:data:`SENTINEL_TIMEOUT`, less for a client with a
deadline of its own), not redis-py's default retries with backoff for every sentinel.
"""

from __future__ import annotations

import dataclasses
import functools
import ssl
import threading
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry

from pallycon_config import RedisTarget

#: Idle connections are checked with a PING before use when idle this long (seconds).
HEALTH_CHECK_INTERVAL = 15
#: The longest a new connection may take (seconds).
CONNECT_TIMEOUT = 5
#: The longest a sentinel may take to answer "who is the primary?" (seconds).
SENTINEL_TIMEOUT = 2

Target = RedisTarget | str


def as_target(target: Target) -> RedisTarget:
    """A URL is a target without sentinels."""
    return RedisTarget(target) if isinstance(target, str) else target


def connect_redis(
    target: Target, *, decode: bool = True, deadline: float | None = None, **options: Any
) -> redis.Redis:
    """A client that decodes to str (unless ``decode`` is off: bytes) and checks idle
    connections before use; ``options`` are redis-py's (timeouts, pool size).

    ``deadline`` (seconds) bounds each connect and each command (not their sum) and turns
    retries off: for the readers an operator or a probe waits on (health, metrics, the
    console), where a stalled Redis must be one line at once, not a hang. With sentinels,
    asking every one of them in turn fits in it too, with room left for the primary (see
    :func:`sentinel_timeout`)."""
    target = as_target(target)
    settings: dict[str, Any] = {
        "decode_responses": decode,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        **_login(target),
    }
    if deadline is not None:
        settings.update(
            socket_connect_timeout=deadline, socket_timeout=deadline, retry=Retry(NoBackoff(), 0)
        )
    settings.update(options)
    if not target.sentinels:
        return redis.Redis.from_url(_url(target), **settings)
    sentinel = _sentinels(target, sentinel_timeout(target, deadline))
    client = sentinel.master_for(target.master_name, **settings)  # type: ignore[no-untyped-call]
    return cast(redis.Redis, client)


@functools.lru_cache(maxsize=16)
def _sentinels(target: RedisTarget, timeout: float) -> _Sentinels:
    """The sentinels of ``target``, one set of clients per process (and deadline) for all its
    clients: redis-py asks first the sentinel that answered last, so a dead sentinel listed
    first costs a process one deadline, not one for each client it makes."""
    return _Sentinels(
        list(target.sentinels),
        sentinel_kwargs={**_sentinel_login(target, timeout), "retry": Retry(NoBackoff(), 0)},
        **_node_options(target),
    )


def answering_first(target: RedisTarget) -> RedisTarget:
    """``target`` with its sentinels in the order this process's clients now ask them: the one
    that answered last first (redis-py moves it there), the others as listed.

    For Celery's transport, which makes clients of its own, one set for each connection pool
    (several in a worker): each would ask a dead sentinel listed first, and wait out its
    deadline, before the next. Given this order, they ask first the one that answers."""
    if not target.sentinels:
        return target
    clients = _sentinels(target, sentinel_timeout(target)).sentinels
    order = tuple(
        (
            client.connection_pool.connection_kwargs["host"],
            client.connection_pool.connection_kwargs["port"],
        )
        for client in clients
    )
    return dataclasses.replace(target, sentinels=order)


class _Sentinels(redis.sentinel.Sentinel):
    """Sentinel clients shared by a process's threads. redis-py moves the sentinel that
    answered to the front of its list without a lock: two threads doing it at once can leave
    one sentinel listed twice and another not at all, for the life of the process. One search
    at a time (the others then find the new order)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._searching = threading.Lock()

    def discover_master(self, service_name: str) -> tuple[str, int]:
        with self._searching:
            return cast(tuple[str, int], super().discover_master(service_name))  # type: ignore[no-untyped-call]


def connect_async(
    target: Target, *, lookup_deadline: float | None = None, **options: Any
) -> redis.asyncio.Redis:
    """An asyncio client (decoding to str); ``options`` are redis-py's. Its pool blocks, one
    server or sentinels alike: with ``max_connections`` in use, a caller waits ``timeout``
    seconds for a free connection.

    ``lookup_deadline`` (seconds): with sentinels, asking every one of them in turn fits in it,
    with room left for the primary (see :func:`sentinel_timeout`); for a caller that gives up
    sooner than its socket timeouts allow, such as a readiness check."""
    target = as_target(target)
    settings: dict[str, Any] = {"decode_responses": True, **_login(target), **options}
    if not target.sentinels:
        pool = redis.asyncio.BlockingConnectionPool.from_url(_url(target), **settings)
        return redis.asyncio.Redis.from_pool(pool)
    once = redis.asyncio.retry.Retry(NoBackoff(), 0)
    sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        sentinel_kwargs={
            **_sentinel_login(target, sentinel_timeout(target, lookup_deadline)),
            "retry": once,
        },
        **_node_options(target),
    )
    client = sentinel.master_for(
        target.master_name, connection_pool_class=_BlockingSentinelPool, **settings
    )
    return cast(redis.asyncio.Redis, client)


class _BlockingSentinelPool(
    redis.asyncio.sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool
):
    """The primary's connections, found through the sentinels, in a pool that makes a caller
    wait (``timeout``) for a free connection, as one server's ``BlockingConnectionPool`` does,
    rather than fail at once with ``max_connections`` in use."""


def broker_conf(target: Target) -> dict[str, Any]:
    """Celery's broker settings for ``target``: ``broker_url`` and, with sentinels, the
    transport options kombu's sentinel transport needs (merge them into any others)."""
    target = as_target(target)
    conf: dict[str, Any] = {}
    url = target.url
    if target.password is not None:  # the setting wins over a password in the URL
        url = _without_password(url)
        conf["broker_password"] = target.password.get_secret_value()
    if not target.sentinels:
        conf["broker_url"] = url
        return conf
    parts = urlsplit(url)
    login = parts.netloc.rpartition("@")[0]
    login = f"{login}@" if login else ""
    conf["broker_url"] = ";".join(
        urlunsplit(("sentinel", f"{login}{_host(host)}:{port}", parts.path, "", ""))
        for host, port in target.sentinels
    )
    conf["broker_transport_options"] = {
        "master_name": target.master_name,
        # Deadlines and no retries always, a password if any (kombu hands them to redis-py).
        "sentinel_kwargs": {**_sentinel_login(target), "retry": Retry(NoBackoff(), 0)},
    }
    if urlsplit(target.url).scheme == "rediss":
        # A dict, always: kombu ignores anything else (and would connect in plain TCP).
        conf["broker_use_ssl"] = {"ssl_cert_reqs": ssl.CERT_REQUIRED, **_ssl_options(target.url)}
    return conf


def _url(target: RedisTarget) -> str:
    """The URL to connect with: without its password when the setting gives one (redis-py
    would let the URL's win)."""
    return target.url if target.password is None else _without_password(target.url)


def _login(target: RedisTarget) -> dict[str, Any]:
    return {} if target.password is None else {"password": target.password.get_secret_value()}


def sentinel_timeout(target: RedisTarget, deadline: float | None = None) -> float:
    """How long each sentinel may take to connect, and to answer: :data:`SENTINEL_TIMEOUT`, or
    less so that every sentinel in turn takes at most ``deadline`` * n / (n + 1) and one
    share is left for the primary."""
    if deadline is None:
        return SENTINEL_TIMEOUT
    return min(SENTINEL_TIMEOUT, deadline / (len(target.sentinels) + 1))


def _sentinel_login(target: RedisTarget, timeout: float = SENTINEL_TIMEOUT) -> dict[str, Any]:
    """How to talk to the sentinels themselves: their password, and a short deadline so that
    a dead sentinel is passed over quickly. Not retried (each caller adds a ``retry`` of none,
    of its client's kind): the next sentinel is the retry."""
    options: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    if target.sentinel_password is not None:
        options["password"] = target.sentinel_password.get_secret_value()
    return options


def _node_options(target: RedisTarget) -> dict[str, Any]:
    """What the URL says of the data nodes when the sentinels name them: user, password,
    database and TLS (``rediss://`` and its ``ssl_*`` query)."""
    options: dict[str, Any] = parse_url(target.url)  # type: ignore[no-untyped-call]
    for where in ("host", "port", "path", "connection_class"):
        options.pop(where, None)
    if urlsplit(target.url).scheme == "rediss":
        options["ssl"] = True
    return options


def _ssl_options(url: str) -> dict[str, Any]:
    if urlsplit(url).scheme != "rediss":
        return {}
    return {
        key: value
        for key, value in parse_url(url).items()  # type: ignore[no-untyped-call]
        if key.startswith("ssl_") and value is not None
    }


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    login, _, host = parts.netloc.rpartition("@")
    user = login.partition(":")[0]
    netloc = f"{user}@{host}" if user else host
    return urlunsplit(parts._replace(netloc=netloc))


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


#: Redis is away, or the server reached cannot take writes (a demoted primary, or a managed
#: Redis failing over behind one address): a change may not have been made, or not be kept.
REDIS_AWAY: tuple[type[redis.RedisError], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
)

#: Words of a refused login (or of a user without a permission) in an error's text: redis-py's,
#: the server's, and kombu's wrapping of them.
_REFUSED = (
    "AuthenticationError",
    "WRONGPASS",
    "NOAUTH",
    "NOPERM",
    "invalid password",
    "invalid username",
)


def sentinels_refused(exc: BaseException) -> bool:
    """Whether the sentinels refused our password. redis-py reports it as "no master found" (a
    ``ConnectionError``, like sentinels that are down), but it is permanent, like an
    ``AuthenticationError``: waiting or retrying cannot help."""
    if not isinstance(exc, redis.sentinel.MasterNotFoundError):
        return False
    errors = str(exc).partition(" : ")[2]
    return any(word in errors for word in _REFUSED)


def login_refused(exc: BaseException) -> bool:
    """Whether Redis, or its sentinels, refused our credentials (or our user a command):
    permanent, unlike an outage."""
    if isinstance(exc, redis.sentinel.MasterNotFoundError):
        return sentinels_refused(exc)  # its text lists every sentinel's error, refusals or not
    refused = redis.AuthenticationError | redis.exceptions.AuthorizationError
    return isinstance(exc, refused) or any(word in str(exc) for word in _REFUSED)


def describe(exc: BaseException) -> str:
    """One short line for a Redis error: redis-py's "no master" message carries the repr of
    every sentinel client it asked, which is kept out of messages and logs."""
    if isinstance(exc, redis.sentinel.MasterNotFoundError):
        reason = str(exc).partition(" : ")[0]
        if sentinels_refused(exc):
            return (
                f"{reason}: the sentinels refused the password (PALLYCON_REDIS_SENTINEL_PASSWORD)"
            )
        return f"{reason} (no sentinel answered with a reachable primary)"
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
