"""Connecting to Redis: one way for every process."""

from __future__ import annotations

import redis

#: Idle connections are checked with a PING before use when idle this long (seconds).
HEALTH_CHECK_INTERVAL = 15
#: The longest a new connection may take (seconds).
CONNECT_TIMEOUT = 5


def connect_redis(url: str, *, decode: bool = True) -> redis.Redis:
    """A client that decodes to str (unless ``decode`` is off: bytes) and checks idle
    connections before use."""
    return redis.Redis.from_url(
        url,
        decode_responses=decode,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        socket_connect_timeout=CONNECT_TIMEOUT,
    )
