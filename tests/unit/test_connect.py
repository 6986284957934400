"""How every process reaches Redis: one URL, or sentinels; passwords, TLS; Celery's broker."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
from kombu import Connection
from pydantic import SecretStr

from pallycon_config import ConfigError, RedisTarget, load_settings
from pallycon_config.settings import parse_sentinels
from pallycon_pack.cli.servers.run import _wait_for_redis
from pallycon_pack.problems import redis_problem
from pallycon_store.connect import (
    broker_conf,
    connect_async,
    connect_redis,
    describe,
    login_refused,
)

SENTINELS = (("s1", 26379), ("s2", 26380))
TLS_URL = (
    "rediss://app@redis:6380/2?ssl_cert_reqs=required&ssl_ca_certs=/tls/ca.pem"
    "&ssl_certfile=/tls/client.pem&ssl_keyfile=/tls/client.key"
)


def _pool_kwargs(client: redis.Redis | redis.asyncio.Redis) -> dict[str, Any]:
    return dict(client.connection_pool.connection_kwargs)


def _sentinel_clients(client: redis.Redis) -> list[redis.Redis]:
    """The clients ``client`` asks the primary from."""
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    return list(pool.sentinel_manager.sentinels)


@pytest.mark.parametrize(
    ("text", "nodes"),
    [
        ("", ()),
        ("s1:26379", (("s1", 26379),)),
        (" s1:26379 , s2:26380 ", SENTINELS),
        ("[::1]:26379", (("::1", 26379),)),
    ],
)
def test_sentinels_parse(text, nodes):
    assert parse_sentinels(text) == nodes


@pytest.mark.parametrize("text", ["s1", "s1:", ":26379", "s1:port", "s1:0", "s1:70000"])
def test_a_bad_sentinel_entry_is_named(text):
    with pytest.raises(ConfigError, match=r"PALLYCON_REDIS_SENTINELS: .*is not host:port"):
        load_settings(_env_file=None, redis_sentinels=f"ok:1,{text}")


def test_a_sentinel_url_points_at_the_setting():
    with pytest.raises(ConfigError, match="set PALLYCON_REDIS_SENTINELS"):
        load_settings(_env_file=None, redis_url="sentinel://s1:26379")


def test_settings_make_the_target_and_show_no_password():
    settings = load_settings(
        _env_file=None,
        redis_url="redis://:inurl@redis:6379/3",
        redis_password="secret-pw",
        redis_sentinels="s1:26379,s2:26380",
        redis_master_name="prod",
        redis_sentinel_password="sentinel-pw",
    )
    target = settings.redis
    assert target.sentinels == SENTINELS
    assert target.master_name == "prod"
    assert target.password is not None
    assert target.password.get_secret_value() == "secret-pw"
    shown = settings.redis_url_shown()
    assert shown == "sentinel prod@s1:26379,s2:26380"
    assert "pw" not in repr(target)
    assert "inurl" not in repr(target)
    assert "inurl" not in RedisTarget("redis://:inurl@h/0").shown()


def test_one_server_the_password_setting_wins_over_the_url():
    client = connect_redis(RedisTarget("redis://:inurl@redis:6379/3", SecretStr("setting")))
    kwargs = _pool_kwargs(client)
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis", 6379, 3)
    assert kwargs["password"] == "setting"


def test_a_deadline_bounds_every_command_and_turns_retries_off():
    client = connect_redis("redis://redis:6379/0", deadline=2.5)
    kwargs = _pool_kwargs(client)
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 2.5
    assert kwargs["retry"].get_retries() == 0


def test_sentinels_name_the_primary_the_url_gives_user_password_database():
    target = RedisTarget(
        "redis://app:inurl@ignored:1/4", SecretStr("pw"), SENTINELS, "prod", SecretStr("s-pw")
    )
    client = connect_redis(target)
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert pool.service_name == "prod"
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("app", "pw", 4)
    assert "host" not in kwargs
    sentinel = pool.sentinel_manager
    assert [(s.connection_pool.connection_kwargs["host"],
             s.connection_pool.connection_kwargs["port"]) for s in sentinel.sentinels] == list(SENTINELS)  # fmt: skip
    first = sentinel.sentinels[0].connection_pool.connection_kwargs
    assert first["password"] == "s-pw"
    assert first["socket_timeout"] == first["socket_connect_timeout"] == 2
    assert first["retry"].get_retries() == 0  # the next sentinel is the retry


def test_with_a_deadline_every_sentinel_in_turn_leaves_room_for_the_primary():
    """Two sentinels and the primary: each sentinel gets a third of the deadline."""
    client = connect_redis(RedisTarget("redis://redis/0", sentinels=SENTINELS), deadline=1.5)
    assert _pool_kwargs(client)["socket_timeout"] == 1.5
    for sentinel in _sentinel_clients(client):
        kwargs = sentinel.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.5
        assert kwargs["retry"].get_retries() == 0
    relaxed = connect_redis(RedisTarget("redis://redis/0", sentinels=SENTINELS), deadline=30)
    first = _sentinel_clients(relaxed)[0].connection_pool
    assert first.connection_kwargs["socket_timeout"] == 2  # never more than without one


def test_clients_of_one_process_share_its_sentinels():
    """The sentinel that answered is asked first by the clients made after it."""
    target = RedisTarget("redis://redis/0", sentinels=SENTINELS)
    one, two = connect_redis(target), connect_redis(target, decode=False)
    assert _sentinel_clients(one)[0] is _sentinel_clients(two)[0]
    bounded = connect_redis(target, deadline=1)  # shorter deadlines: clients of its own
    assert _sentinel_clients(bounded)[0] is not _sentinel_clients(one)[0]


def test_sentinels_with_tls_connect_to_the_primary_over_tls():
    client = connect_redis(RedisTarget(TLS_URL, sentinels=SENTINELS))
    pool = client.connection_pool
    assert pool.connection_class is redis.sentinel.SentinelManagedSSLConnection
    kwargs = pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == "/tls/ca.pem"
    assert kwargs["ssl_certfile"] == "/tls/client.pem"


def test_the_async_client_follows_the_same_target():
    one = connect_async(RedisTarget("redis://:inurl@redis:6379/1", SecretStr("pw")), timeout=3)
    assert isinstance(one.connection_pool, redis.asyncio.BlockingConnectionPool)
    assert _pool_kwargs(one)["password"] == "pw"
    watched = connect_async(
        RedisTarget("redis://redis/1", sentinels=SENTINELS),
        lookup_deadline=1.2,
        max_connections=5,
        timeout=3,
    )
    pool = watched.connection_pool
    assert isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool)
    # Waits for a free connection as one server's pool does, not "too many connections".
    assert isinstance(pool, redis.asyncio.BlockingConnectionPool)
    assert (pool.timeout, pool.max_connections) == (3, 5)
    for sentinel in pool.sentinel_manager.sentinels:
        kwargs = sentinel.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == pytest.approx(0.4)
        assert isinstance(kwargs["retry"], redis.asyncio.retry.Retry)
        assert kwargs["retry"].get_retries() == 0


def test_a_busy_sentinel_pool_makes_callers_wait_then_says_so():
    """No connection frees up within ``timeout``: redis-py's "No connection available" after
    that wait (a free one is handed over in the meantime: the integration tests)."""
    client = connect_async(
        RedisTarget("redis://redis/1", sentinels=SENTINELS), max_connections=1, timeout=0.2
    )
    pool: Any = client.connection_pool
    pool._in_use_connections.add(object())  # the one connection, taken
    # A pool that does not wait says "Too many connections" at once instead.
    with pytest.raises(redis.ConnectionError, match="No connection available"):
        asyncio.run(pool.get_connection())


def test_celery_broker_one_server():
    conf = broker_conf(RedisTarget("redis://app:inurl@redis:6379/0", SecretStr("pw")))
    assert conf == {"broker_url": "redis://app@redis:6379/0", "broker_password": "pw"}


def test_celery_broker_through_sentinels():
    target = RedisTarget(
        "redis://app:inurl@ignored:1/4", None, SENTINELS, "prod", SecretStr("s-pw")
    )
    conf = broker_conf(target)
    assert conf["broker_url"] == ("sentinel://app:inurl@s1:26379/4;sentinel://app:inurl@s2:26380/4")
    options = conf["broker_transport_options"]
    assert options["master_name"] == "prod"
    assert options["sentinel_kwargs"]["password"] == "s-pw"
    connection = Connection(conf["broker_url"], transport_options=options)
    assert connection.transport_cls == "sentinel"
    assert [url.split("@")[1] for url in connection.alt] == ["s1:26379/4", "s2:26380/4"]
    assert connection.password == "inurl"
    assert connection.virtual_host == "4"


def test_celery_broker_through_sentinels_with_tls():
    conf = broker_conf(RedisTarget(TLS_URL, sentinels=SENTINELS))
    assert conf["broker_use_ssl"] == {
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": "/tls/ca.pem",
        "ssl_certfile": "/tls/client.pem",
        "ssl_keyfile": "/tls/client.key",
    }


def test_celery_broker_through_sentinels_with_plain_rediss_is_still_tls():
    """kombu takes TLS only from a dict: a bare rediss:// URL must still give one."""
    conf = broker_conf(RedisTarget("rediss://:pw@redis:6380/0", sentinels=SENTINELS))
    assert conf["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    options = conf["broker_transport_options"]
    connection = Connection(
        conf["broker_url"], transport_options=options, ssl=conf["broker_use_ssl"]
    )
    assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def test_celery_sentinel_discovery_has_deadlines_without_a_password():
    conf = broker_conf(RedisTarget("redis://redis/0", sentinels=SENTINELS))
    kwargs = dict(conf["broker_transport_options"]["sentinel_kwargs"])
    assert kwargs.pop("retry").get_retries() == 0  # kombu hands them to redis-py as they are
    assert kwargs == {"socket_connect_timeout": 2, "socket_timeout": 2}


def test_an_empty_password_setting_keeps_the_urls():
    settings = load_settings(
        _env_file=None,
        redis_url="redis://:urlpw@redis/0",
        redis_password="",
        redis_sentinel_password="",
    )
    assert settings.redis_password is None
    assert settings.redis_sentinel_password is None
    assert _pool_kwargs(connect_redis(settings.redis))["password"] == "urlpw"
    assert broker_conf(settings.redis)["broker_url"] == "redis://:urlpw@redis/0"


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (
            redis.sentinel.MasterNotFoundError(
                "No master found for 'mymaster' : <Redis<...>> - AuthenticationError('invalid "
                "username-password pair or user is disabled.')"
            ),
            "No master found for 'mymaster': the sentinels refused the password "
            "(PALLYCON_REDIS_SENTINEL_PASSWORD)",
        ),
        (
            redis.sentinel.MasterNotFoundError(
                "No master found for 'mymaster' : <Redis<...>> - ConnectionError('refused')"
            ),
            "No master found for 'mymaster' (no sentinel answered with a reachable primary)",
        ),
        (
            redis.ConnectionError("Error 111 connecting.\n  Refused."),
            "Error 111 connecting. Refused",
        ),
    ],
)
def test_redis_errors_are_one_short_line(error, says):
    assert describe(error) == says


REFUSED = redis.sentinel.MasterNotFoundError(
    "No master found for 'mymaster' : <Redis<...>> - AuthenticationError('invalid "
    "username-password pair or user is disabled.')"
)
DOWN = redis.sentinel.MasterNotFoundError(
    "No master found for 'mymaster' : <Redis<...>> - ConnectionError('refused')"
)


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (REFUSED, True),
        (redis.AuthenticationError("invalid password"), True),
        (DOWN, False),
        (redis.ConnectionError("Error 111 connecting"), False),
        (redis.TimeoutError("Timeout reading"), False),
    ],
)
def test_a_refused_login_is_told_from_an_outage(error, refused):
    assert login_refused(error) is refused


class _Refusing:
    """A client whose every PING fails with ``error`` (counted)."""

    def __init__(self, error: Exception) -> None:
        self.error, self.pings = error, 0

    def ping(self) -> None:
        self.pings += 1
        raise self.error


def test_a_starting_worker_does_not_wait_for_sentinels_that_refuse_its_password():
    client = _Refusing(REFUSED)
    with pytest.raises(redis.sentinel.MasterNotFoundError):
        _wait_for_redis(client, 60)
    assert client.pings == 1  # waiting would have meant asking again


def test_a_starting_worker_waits_for_sentinels_that_do_not_answer():
    client = _Refusing(DOWN)
    with pytest.raises(redis.sentinel.MasterNotFoundError):
        _wait_for_redis(client, 0.1)
    assert client.pings >= 2


def test_the_cli_names_the_sentinel_password_and_nothing_else():
    target = RedisTarget("redis://redis/0", sentinels=SENTINELS)
    assert redis_problem(REFUSED, target) == (
        "Redis at sentinel mymaster@s1:26379,s2:26380: No master found for 'mymaster': the "
        "sentinels refused the password (PALLYCON_REDIS_SENTINEL_PASSWORD)"
    )
    assert redis_problem(DOWN, target).endswith(
        "; is it running and reachable? (PALLYCON_REDIS_SENTINELS, PALLYCON_REDIS_MASTER_NAME)"
    )


class _FlakySentinel:
    """A sentinel client that answers every other time (no network)."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.calls = 0

    def sentinel_masters(self) -> dict[str, Any]:
        self.calls += 1
        if self.number == 0 or self.calls % 2:
            raise redis.ConnectionError("down")
        state = {"ip": "10.0.0.1", "port": 6379, "is_master": True}
        return {
            "mymaster": state | {"is_sdown": False, "is_odown": False, "num-other-sentinels": 2}
        }


def test_threads_sharing_the_sentinel_clients_keep_every_sentinel():
    """Each thread moves the sentinel that answered to the front: done at once by several
    threads, redis-py's unlocked swap lost sentinels (one listed twice, another gone)."""
    import sys
    import threading

    from pallycon_store.connect import _sentinels

    target = RedisTarget("redis://", sentinels=tuple((f"s{n}", 1) for n in range(4)))
    shared = _sentinels(target, 2.0)
    shared.sentinels = [_FlakySentinel(n) for n in range(4)]  # type: ignore[misc]
    original = set(map(id, shared.sentinels))

    def search() -> None:
        for _ in range(300):
            with contextlib.suppress(redis.sentinel.MasterNotFoundError):
                shared.discover_master("mymaster")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=search) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
        _sentinels.cache_clear()
    assert set(map(id, shared.sentinels)) == original
    assert len(shared.sentinels) == 4
