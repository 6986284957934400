"""Whether the worker's Redis user may run every command the worker sends, asked at its start.

A user without one (say ``BRPOP``, which Celery's consumer blocks on) would not stop the worker:
Celery's transport reconnects every few milliseconds for ever, and our loops retry. So the
worker asks first, and a refusal stops it with one line naming what is missing (exit 3), as a
wrong password does.

How it asks: on a connection of its own, it opens a transaction (``MULTI``) and sends each
command with sample arguments. The server checks the user's ACL (command, keys, channels) as
it queues a command, and answers ``NOPERM`` for a refused one; nothing queued ever runs, as
the connection is closed without ``EXEC``. ``EXEC`` and ``DISCARD`` are asked outside the
transaction, where they only answer an error. This needs no right to the ``ACL`` commands (the
user of docs/CONFIGURATION.md has none: ``ACL DRYRUN``, which needs ``@admin``, would be
refused, and logged by the server as a refusal at every start), works on every server with or
without ACLs (Redis 6 and later, Valkey; an older one queues everything: nothing refused), and
leaves the server's ACL log untouched unless something is missing. A server that cannot say
(an unexpected answer, a connection lost meanwhile) does not hold the worker back: a debug
line, and it starts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis

from pallycon_store.keys import Keys

log = logging.getLogger("pallycon_pack.worker")

#: Where the missing commands are explained.
DOC = "docs/CONFIGURATION.md#acl-users"


@dataclass(frozen=True)
class Command:
    """One command the worker sends, as asked: its name (with a subcommand: ``XINFO GROUPS``)
    and sample arguments, the first of them the key (or channel) it is asked on."""

    name: str
    args: tuple[str, ...] = ()

    def line(self) -> list[str]:
        return [*self.name.split(), *self.args]


def worker_commands(keys: Keys) -> tuple[Command, ...]:
    """Every command the worker's process sends, on keys and channels named as the worker names
    them (so that a user limited to some keys is asked about those).

    From reading the code:

    - Celery's Redis transport (kombu's ``kombu/transport/redis.py``): the queues
      (``<prefix>.submit``, ``<prefix>.poll``: ``BRPOP``, ``RPOP``, ``LPUSH``, ``RPUSH``,
      ``LLEN``, ``DEL``), the unacked messages (``unacked``: ``HSET``/``HGET``/``HDEL``;
      ``unacked_index``: ``ZADD``/``ZREM``/``ZRANGE``; restored in a ``WATCH``/``MULTI``/
      ``EXEC`` transaction, under the ``unacked_mutex`` lock: ``SET`` NX PX, released by a
      script), the bindings (``_kombu.binding.*``: ``SADD``/``SMEMBERS``/``SREM`` and two
      scripts: ``EVALSHA``, ``SCRIPT LOAD``; inside them ``TIME``, ``ZADD``,
      ``ZRANGEBYSCORE``, ``EXISTS``, ``DEL``, ``ZREM``), queue expiry (``PEXPIRE``), remote
      control (``*.celery.pidbox`` queues, the ``/0.celery.pidbox`` fanout channel:
      ``PUBLISH``, ``PSUBSCRIBE``), ``PING``;
    - ours (``store/pallycon_store``, ``worker/pallycon_worker``): the Lua scripts (``*.lua``
      and those in Python strings: ``EVALSHA``/``EVAL``/``SCRIPT LOAD``, and each command
      they call, which the server checks as the script runs it), hashes, sorted sets, sets,
      the flow kick list (``LPUSH``/``LTRIM``/``BLPOP``), the intake stream and its group
      (``X*``), ``WAIT``/``WAITAOF`` and ``INFO`` (durability), ``TIME``, ``PING``.
    """
    p = keys.prefix
    key, queue, other = f"{p}:x", keys.submit_queue, keys.poll_queue
    stream, channel = keys.intake, keys.wake_channel
    pidbox, fanout = "x.celery.pidbox", "/0.celery.pidbox"
    names = [
        # Celery's transport
        Command("BRPOP", (queue, "1")),
        Command("BRPOP", (other, "1")),
        Command("RPOP", (queue,)),
        Command("LPUSH", (queue, "x")),
        Command("RPUSH", (other, "x")),
        Command("LLEN", (queue,)),
        Command("HSET", ("unacked", "x", "x")),
        Command("HGET", ("unacked", "x")),
        Command("HDEL", ("unacked", "x")),
        Command("ZADD", ("unacked_index", "1", "x")),
        Command("ZREM", ("unacked_index", "x")),
        Command("ZRANGE", ("unacked_index", "0", "1")),
        Command("SET", ("unacked_mutex", "x", "NX", "PX", "1")),
        Command("SADD", ("_kombu.binding.x", "x")),
        Command("SMEMBERS", ("_kombu.binding.x",)),
        Command("SREM", ("_kombu.binding.x", "x")),
        Command("ZRANGEBYSCORE", ("_kombu.binding_deadlines", "0", "1")),
        Command("EXISTS", ("_kombu.binding_permanent.x",)),
        Command("DEL", ("_kombu.binding.x",)),
        Command("PEXPIRE", (queue, "1")),
        Command("LPUSH", (pidbox, "x")),
        Command("PUBLISH", (fanout, "x")),
        Command("PSUBSCRIBE", (fanout,)),
        # Ours
        Command("EVALSHA", ("0" * 40, "1", key)),
        Command("EVAL", ("return 1", "1", key)),
        Command("SCRIPT LOAD", ("return 1",)),
        Command("HGET", (key, "x")),
        Command("HMGET", (key, "x")),
        Command("HGETALL", (key,)),
        Command("HSET", (key, "x", "x")),
        Command("HINCRBY", (key, "x", "1")),
        Command("HDEL", (key, "x")),
        Command("HEXISTS", (key, "x")),
        Command("ZADD", (key, "1", "x")),
        Command("ZREM", (key, "x")),
        Command("ZSCORE", (key, "x")),
        Command("ZCOUNT", (key, "0", "1")),
        Command("ZCARD", (key,)),
        Command("ZRANGE", (key, "0", "1")),
        Command("ZRANGEBYSCORE", (key, "0", "1")),
        Command("ZREVRANGEBYSCORE", (key, "1", "0")),
        Command("ZREMRANGEBYSCORE", (key, "0", "1")),
        Command("SADD", (key, "x")),
        Command("SREM", (key, "x")),
        Command("SCARD", (key,)),
        Command("SMEMBERS", (key,)),
        Command("SISMEMBER", (key, "x")),
        Command("LPUSH", (key, "x")),
        Command("LTRIM", (key, "0", "1")),
        Command("BLPOP", (key, "1")),
        Command("LLEN", (key,)),
        Command("XADD", (stream, "*", "x", "x")),
        Command("XREADGROUP", ("GROUP", "x", "x", "COUNT", "1", "STREAMS", stream, ">")),
        Command("XACK", (stream, "x", "0-1")),
        Command("XDEL", (stream, "0-1")),
        Command("XAUTOCLAIM", (stream, "x", "x", "0", "0-0")),
        Command("XGROUP CREATE", (stream, "x", "$", "MKSTREAM")),
        Command("XINFO GROUPS", (stream,)),
        Command("XINFO CONSUMERS", (stream, "x")),
        Command("XLEN", (stream,)),
        Command("XRANGE", (stream, "-", "+")),
        Command("XREVRANGE", (stream, "+", "-")),
        Command("EXPIRE", (key, "1")),
        Command("PEXPIRE", (key, "1")),
        Command("PERSIST", (key,)),
        Command("EXISTS", (key,)),
        Command("DEL", (key,)),
        Command("SET", (key, "x", "PX", "1")),
        Command("PUBLISH", (channel, "x")),
        Command("SUBSCRIBE", (channel,)),
        Command("WAIT", ("0", "0")),
        Command("WAITAOF", ("0", "0", "0")),
        Command("INFO", ("server",)),
        Command("TIME"),
        Command("PING"),
    ]
    return tuple(names)


#: Asked outside the transaction: there ``EXEC`` and ``DISCARD`` only answer an error, and
#: ``WATCH`` (kombu's restore transaction) watches a key of a connection closed right after.
OUTSIDE = (Command("EXEC"), Command("DISCARD"), Command("WATCH", ("unacked",)))


@dataclass(frozen=True)
class Refusals:
    """What the user may not do: commands, and keys or channels (by the first argument of the
    command refused on them)."""

    commands: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.commands or self.keys or self.channels)


def refusals(asked: Sequence[Command], answers: Sequence[object]) -> Refusals:
    """The refusals among the server's ``answers`` to ``asked`` (one each, in order): a
    ``NOPERM`` error names a command, a key or a channel; any other answer (``QUEUED``, an
    unknown command on an older server, a command a transaction does not take) is no
    refusal. Each name once, in the order asked."""
    found: dict[str, dict[str, None]] = {"command": {}, "key": {}, "channel": {}}
    for command, answer in zip(asked, answers, strict=True):
        text = str(answer) if isinstance(answer, redis.exceptions.NoPermissionError) else ""
        if not text:
            continue
        if "access a key" in text:
            found["key"][command.args[0]] = None
        elif "access a channel" in text:
            found["channel"][command.args[0]] = None
        else:
            found["command"][command.name] = None
    return Refusals(tuple(found["command"]), tuple(found["key"]), tuple(found["channel"]))


def message(user: str, refused: Refusals) -> str:
    """The one line saying what ``user`` may not do."""
    parts = []
    if refused.commands:
        parts.append(f"may not run: {', '.join(refused.commands)}")
    if refused.keys:
        parts.append(f"may not use keys like: {', '.join(refused.keys)}")
    if refused.channels:
        parts.append(f"may not use channels like: {', '.join(refused.channels)}")
    return f"Redis user '{user}' {'; '.join(parts)} (the worker needs them; see {DOC})"


def user_of(url: str) -> str:
    """The ACL user a Redis URL logs in as: its user name, else ``default``."""
    return unquote(urlsplit(url).username or "") or "default"


def ask(client: redis.Redis, commands: Sequence[Command]) -> Refusals | None:
    """What ``client``'s user may not do of ``commands``, asked on a connection of its own,
    which is closed after (see the module's docstring); None if the server could not say."""
    pool = client.connection_pool
    connection: Any = pool.get_connection()
    try:
        outside = _answers(connection, OUTSIDE)
        (opened,) = _answers(connection, [Command("MULTI")])
        if opened != "OK" and opened != b"OK":  # refused (or unexpected): nothing queued
            return refusals([*OUTSIDE, Command("MULTI")], [*outside, opened])
        queued = _answers(connection, commands)
        return refusals([*OUTSIDE, *commands], [*outside, *queued])
    except redis.RedisError as exc:
        log.debug("could not check the Redis user's permissions (%s): starting anyway", exc)
        return None
    finally:
        connection.disconnect()  # a transaction left open is dropped with it: nothing ran
        pool.release(connection)


def _answers(connection: Any, commands: Sequence[Command]) -> list[object]:
    """Each command's answer, sent all at once; an error answer as its exception."""
    connection.send_packed_command(connection.pack_commands([c.line() for c in commands]))
    answers: list[object] = []
    for _ in commands:
        try:
            answers.append(connection.read_response())
        except redis.ResponseError as exc:
            answers.append(exc)
    return answers
