"""Waiting until Redis has kept a change (on disk, on replicas) before it is relied on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from redis.commands.core import Script

from pallycon_store import scripts

log = logging.getLogger("pallycon_pack.store")

#: The mark expires on its own: it is never read.
MARK_TTL_MS = 60_000


class Durability:
    """Before a producer is told its request is accepted and before a job is registered:
    ``WAIT`` for ``replicas`` replicas to have the change (so that a failover to one of them
    cannot forget it), then ``WAITAOF`` for the AOF fsync (so that a crash and restart cannot).

    Both commands wait for what *their connection* wrote, and a pooled client may hand out any
    connection: so each wait first writes ``mark`` on the connection it waits on (one pipeline,
    one round trip). That write comes after the change (which had returned), so waiting for it
    waits for the change too, as long as both reach the same server. A connection made again in
    between (a failover, a restart) may reach another. So a caller asks :meth:`server` before
    the change (the server a first question found, then the one the last wait reached), and
    hands the answer to :meth:`wait`, whose pipeline reads the ``run_id`` of the server it
    waited on: another server is a ``redis.ConnectionError`` (the change may be lost: not
    confirmed). Each call compares with its own answer, so threads sharing one ``Durability``
    cannot confirm each other's changes. A caller that can tell its change is on the server the
    wait reached says so (``present``), and its change is confirmed there.

    ``mark`` is ``Keys.durability_mark``; ``replicas``, ``replica_wait_ms`` and ``wait_ms`` are
    the settings' (``pallycon_store.wiring.durability_of``). ``replicas`` 0 skips the first;
    ``wait_ms`` 0 the second. On a server without AOF or
    without ``WAITAOF`` (Redis before 7.2) there is no fsync to wait for: that is said once, in
    :attr:`unavailable` and a warning, and those waits are skipped from then on. Too few
    replicas in time is a ``redis.TimeoutError``: the change is there, but not relied on.
    """

    def __init__(
        self, client: redis.Redis, *, wait_ms: int, mark: str, replicas: int, replica_wait_ms: int
    ) -> None:
        self.redis = client
        self.mark = mark
        self.wait_ms = wait_ms
        self.replicas = replicas
        self.replica_wait_ms = replica_wait_ms
        self.unavailable = ""  # why fsync waits are skipped, once the server said so
        self.known = ""  # the run_id of the server the last wait reached
        self._identity = ""  # see known_identity
        self.info_refused = False  # INFO refused (an ACL user without it): nothing to compare
        self._mark_script: Script | None = None  # mark.lua, registered when first needed

    def _waits(self) -> tuple[bool, bool]:
        """Which waits apply: (for replicas, for the fsync)."""
        return bool(self.replicas), bool(self.wait_ms) and not self.unavailable

    def server(self) -> str:
        """Call before a change that :meth:`wait` is to confirm: the ``run_id`` of the server
        the change is about to reach. Asked once (one round trip), then the one the last wait
        reached; "" when there is nothing to wait for, or ``INFO`` is not allowed."""
        if self.known or self.info_refused or not any(self._waits()):
            return self.known
        try:
            info = self.redis.info("server")
        except redis.ResponseError:  # not allowed (an ACL user), or renamed away: as in wait()
            self.info_refused = True
            return ""
        self.known = str(info.get("run_id", ""))
        return self.known

    def known_identity(self) -> str:
        """The identity (:meth:`identity`) this client last saw (asked once, and again after a
        wait met another server): for a mark to say which server, in which of its lives, it was
        made on. A stale answer only makes a later reader more careful (it then differs)."""
        if not self._identity:
            self._identity = self.identity()
        return self._identity

    def identity(self) -> str:
        """``<run_id>/<master_replid>`` of the server this client reaches now (one round
        trip; "" when ``INFO`` is not allowed). Another one means writes made before may have
        been lost since: a restart changes the ``run_id``; a failover the server; a primary
        demoted (its data resynced from another) and promoted again, the replication id."""
        if self.info_refused:
            return ""
        pipe = self.redis.pipeline(transaction=False)
        pipe.info("server")
        pipe.info("replication")
        try:
            server, replication = pipe.execute()
        except redis.ResponseError:
            self.info_refused = True
            return ""
        return f"{server.get('run_id', '')}/{replication.get('master_replid', '')}"

    def wait(self, server: str, present: Callable[[], bool] | None = None) -> None:
        """Return once the replicas have every change this process made before the call and
        Redis has fsynced its AOF; ``redis.TimeoutError`` when either does not happen in time.
        ``server``: what :meth:`server` said before the change; a wait that reaches another
        server is a ``redis.ConnectionError``, unless ``present()`` (asked then, on the server
        the wait reached) says the change is there: then the wait covered it (it was written
        before the wait's own mark, which the server fsynced and replicated after it), and the
        first change of a process after a failover is confirmed when it reached the new
        primary."""
        replicas, fsync = self._waits()
        if not replicas and not fsync:
            return
        replies = self._mark_and_wait(fsync, by_script=False)
        if isinstance(replies[0], redis.exceptions.OutOfMemoryError):
            # The change went in before Redis ran out of room; its confirmation needs none.
            refused = replies[0]
            try:
                replies = self._mark_and_wait(fsync, by_script=True)
            except redis.ResponseError as exc:  # Redis before 7 loads no script with flags
                raise refused from exc
            if isinstance(replies[0], redis.ResponseError):
                raise refused
        self._same_server(server, replies.pop(), present)
        fsynced = replies.pop() if fsync else None
        for reply in replies:  # the mark and WAIT: an error is the caller's to see
            if isinstance(reply, Exception):
                raise reply
        if self.replicas:
            acknowledged = int(replies[1])
            if acknowledged < self.replicas:
                raise redis.TimeoutError(
                    f"{acknowledged} of {self.replicas} Redis replicas had the change within "
                    f"{self.replica_wait_ms} ms (PALLYCON_REDIS_WAIT_REPLICAS; `pallycon-pack "
                    "health --check redis` counts the replicas online)"
                )
        if fsync:
            self._fsynced(fsynced)

    def _mark_and_wait(self, fsync: bool, *, by_script: bool) -> list[Any]:
        """One pipeline: the mark, the waits, then ``INFO server``; errors as replies. The mark
        is a ``SET``, or ``by_script`` one that Redis runs even when it is out of memory."""
        pipe = self.redis.pipeline(transaction=False)
        if by_script:
            if self._mark_script is None:
                self._mark_script = scripts.register(self.redis, "mark")
            self._mark_script(keys=[self.mark], args=[MARK_TTL_MS], client=pipe)
        else:
            pipe.set(self.mark, "1", px=MARK_TTL_MS)
        if self.replicas:
            pipe.execute_command("WAIT", self.replicas, self.replica_wait_ms)  # type: ignore[no-untyped-call]
        if fsync:
            pipe.execute_command("WAITAOF", 1, 0, self.wait_ms)  # type: ignore[no-untyped-call]
        pipe.info("server")
        return list(pipe.execute(raise_on_error=False))

    def _same_server(
        self, expected: str, info: object, present: Callable[[], bool] | None = None
    ) -> None:
        """The waits ran on the server the change reached, or ``present()`` finds the change
        on the one they ran on (else: not confirmed)."""
        if isinstance(info, redis.ResponseError):  # INFO not allowed: nothing to compare
            return
        if isinstance(info, Exception):
            raise info
        assert isinstance(info, dict)
        if str(info.get("run_id", "")) != self.known:
            self._identity = ""  # another server: ask its identity again
        self.known = str(info.get("run_id", ""))
        if expected and self.known != expected:
            if present is not None and present():
                log.info("Redis changed (a failover or a restart); the change is on the new one")
                return
            raise redis.ConnectionError(
                "Redis changed (a failover or a restart) while a change was being confirmed: "
                "it may be lost"
            )

    def _fsynced(self, reply: object) -> None:
        """``WAITAOF``'s reply: fsynced, not in time, or not possible on this server (no AOF,
        or too old: said once, then not asked again)."""
        if isinstance(reply, redis.ResponseError) and not isinstance(
            reply, redis.exceptions.ReadOnlyError
        ):
            self.unavailable = str(reply)
            log.warning(
                "not waiting for AOF fsync (%s): a Redis crash may lose the last second", reply
            )
            return
        if isinstance(reply, Exception):
            raise reply
        assert isinstance(reply, list)
        if int(reply[0]) < 1:
            raise redis.TimeoutError(f"Redis did not fsync within {self.wait_ms} ms")
