"""Request state in Redis: records, the two schedules, the result stream, atomically.

Every change of a request is one Lua script that checks the record's version, writes the new
fields, appends the result event, publishes the wake-up and moves the request between
schedules, all at once. A script replayed by a client retry after a lost reply finds the
version already moved on and does nothing, so no event is ever written twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import redis

from worker.events import State
from worker.keys import Keys

log = logging.getLogger("pallycon_pack.store")

# All or nothing: every request of the batch is created (or was already, with the same body),
# or, if one id is taken by another body, nothing is written. One script, so a Redis out of
# memory refuses its first write or none (no partial batch).
# KEYS: results, submit schedule, then each request's record
# ARGV: maxlen, channel, submit score ('' = not scheduled), then 5 per request:
#       request id, body hash, fields (JSON), event (JSON), ttl ('' = none)
_CREATE = """
local outcomes, conflict = {}, false
for i = 3, #KEYS do
  local at = 4 + (i - 3) * 5
  if redis.call('EXISTS', KEYS[i]) == 0 then
    outcomes[#outcomes + 1] = 'created'
  elseif redis.call('HGET', KEYS[i], 'body_hash') == ARGV[at + 1] then
    outcomes[#outcomes + 1] = 'duplicate'
  else
    outcomes[#outcomes + 1] = 'conflict'; conflict = true
  end
end
if conflict then return outcomes end
for i = 3, #KEYS do
  local at = 4 + (i - 3) * 5
  if outcomes[i - 2] == 'created' then
    local args = {}
    for k, v in pairs(cjson.decode(ARGV[at + 2])) do args[#args + 1] = k; args[#args + 1] = v end
    redis.call('HSET', KEYS[i], unpack(args))
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'event', ARGV[at + 3])
    redis.call('PUBLISH', ARGV[2], ARGV[at])
    if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[at]) end
    if ARGV[at + 4] ~= '' then redis.call('EXPIRE', KEYS[i], ARGV[at + 4]) end
  end
end
return outcomes
"""

# KEYS: record, results, submit schedule, poll schedule, job index
# ARGV: version, fields, event, maxlen, channel, request id, schedule (submit|poll|''),
#       score, job id to index, ttl (finished: unschedule, unindex, expire)
_TRANSITION = """
local version = redis.call('HGET', KEYS[1], 'version')
if not version then return -1 end
if version ~= ARGV[1] then return 0 end
local fields = cjson.decode(ARGV[2])
local args = {'version', tostring(tonumber(version) + 1)}
for k, v in pairs(fields) do args[#args + 1] = k; args[#args + 1] = v end
redis.call('HSET', KEYS[1], unpack(args))
if ARGV[3] ~= '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'event', ARGV[3])
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
if ARGV[7] == 'submit' then
  redis.call('ZADD', KEYS[3], ARGV[8], ARGV[6]); redis.call('ZREM', KEYS[4], ARGV[6])
elseif ARGV[7] == 'poll' then
  redis.call('ZADD', KEYS[4], ARGV[8], ARGV[6]); redis.call('ZREM', KEYS[3], ARGV[6])
end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[5], ARGV[9], ARGV[6]) end
if ARGV[10] ~= '' then
  redis.call('ZREM', KEYS[3], ARGV[6]); redis.call('ZREM', KEYS[4], ARGV[6])
  local job = redis.call('HGET', KEYS[1], 'job_id')
  if job then redis.call('HDEL', KEYS[5], job) end
  redis.call('EXPIRE', KEYS[1], ARGV[10])
end
return 1
"""

# Claim due members: push their score to the lease's end, return them. Safe from any number
# of workers at once: a member is claimed by exactly one.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for i = 1, #due, 500 do
  local args = {}
  for j = i, math.min(i + 499, #due) do args[#args + 1] = ARGV[2]; args[#args + 1] = due[j] end
  redis.call('ZADD', KEYS[1], 'XX', unpack(args))
end
return due
"""

# Token bucket shared by all workers, on the server's clock. Returns ms to wait (0: granted,
# and the call counted under ARGV[3] in the counters hash).
_BUCKET_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[3], 1) end
else
  wait = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], 60000)
return wait
"""

Schedule = Literal["submit", "poll"]
Created = Literal["created", "duplicate", "conflict", "skipped"]
#: A request to create: (request id, body hash, record fields, first event).
NewRequest = tuple[str, str, dict[str, str], dict[str, Any]]


@dataclass(frozen=True)
class Record:
    """A request's record, as read from Redis."""

    request_id: str
    state: State
    version: int
    data: dict[str, str] = field(repr=False)

    @classmethod
    def parse(cls, request_id: str, raw: dict[str, str]) -> Record:
        return cls(request_id, State(raw["state"]), int(raw["version"]), raw)

    def get(self, name: str, default: str = "") -> str:
        return self.data.get(name, default)

    def number(self, name: str, default: float = 0.0) -> float:
        value = self.data.get(name)
        return float(value) if value else default

    @property
    def body(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.data["body"])
        return parsed

    def public(self) -> dict[str, Any]:
        """The record as ``status`` shows it (the body left out)."""
        shown = {k: v for k, v in self.data.items() if k not in {"body", "body_hash"}}
        return {"request_id": self.request_id, **shown}


@dataclass(frozen=True)
class Change:
    """One change of a request, made from ``record``'s version (see :meth:`RequestStore.apply`).

    ``fields`` are written, ``event`` appended to the result stream, the request moved to
    ``schedule`` due ``at``, its ``index_job`` indexed; ``finish`` takes it off both schedules
    and lets the record expire.
    """

    record: Record
    fields: dict[str, str]
    event: dict[str, Any] | None = None
    schedule: Schedule | None = None
    at: float = 0.0
    index_job: str = ""
    finish: bool = False


class RequestStore:
    """The records, schedules and result stream of every request."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        result_maxlen: int = 1_000_000,
        record_ttl: int = 7 * 24 * 3600,
        fsync_wait_ms: int = 0,
    ) -> None:
        self.redis = client
        self.keys = keys
        self.result_maxlen = result_maxlen
        self.record_ttl = record_ttl
        self.fsync_wait_ms = fsync_wait_ms
        self._create = client.register_script(_CREATE)
        self._transition = client.register_script(_TRANSITION)
        self._claim = client.register_script(_CLAIM)
        self._take_token = client.register_script(_BUCKET_SCRIPT)

    def create(
        self,
        request_id: str,
        body_hash: str,
        fields: dict[str, str],
        event: dict[str, Any],
        *,
        submit_at: float | None,
    ) -> Created:
        """Record a new request (version 1) with its first event, unless the id is taken."""
        return self.create_many([(request_id, body_hash, fields, event)], submit_at=submit_at)[0]

    def create_many(self, items: Sequence[NewRequest], *, submit_at: float | None) -> list[Created]:
        """:meth:`create` for many (request id, body hash, fields, event), all or nothing.

        Each is ``created``, or ``duplicate`` (the id holds the same body); if one is a
        ``conflict`` (the id holds another body), nothing at all is written and the others are
        ``skipped``. One atomic script: a Redis that refuses writes refuses the whole batch.
        """
        if not items:
            return []
        if len({request_id for request_id, *_ in items}) < len(items):
            raise ValueError("create_many: a request id is given twice")
        keys = [self.keys.results, self.keys.submit_schedule]
        args: list[Any] = [
            self.result_maxlen,
            self.keys.wake_channel,
            "" if submit_at is None else repr(submit_at),
        ]
        for request_id, digest, fields, event in items:
            final = State(fields["state"]).final
            keys.append(self.keys.request(request_id))
            args += [
                request_id,
                digest,
                json.dumps({**fields, "version": "1", "body_hash": digest}),
                json.dumps(event),
                self.record_ttl if final else "",
            ]
        outcomes = [str(outcome) for outcome in self._create(keys=keys, args=args)]
        if "conflict" in outcomes:
            outcomes = ["skipped" if o == "created" else o for o in outcomes]
        return cast(list[Created], outcomes)

    def get(self, request_id: str) -> Record | None:
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.request(request_id)))
        return Record.parse(request_id, raw) if raw else None

    def get_many(self, request_ids: list[str]) -> dict[str, Record]:
        pipe = self.redis.pipeline(transaction=False)
        for request_id in request_ids:
            pipe.hgetall(self.keys.request(request_id))
        found = {}
        for request_id, raw in zip(request_ids, pipe.execute(), strict=True):
            if raw:
                found[request_id] = Record.parse(request_id, raw)
        return found

    def transition(
        self,
        record: Record,
        fields: dict[str, str],
        event: dict[str, Any] | None = None,
        *,
        schedule: Schedule | None = None,
        at: float = 0.0,
        index_job: str = "",
        finish: bool = False,
    ) -> bool:
        """Apply a change made from ``record``'s version; False if someone else moved it on."""
        return self.apply([Change(record, fields, event, schedule, at, index_job, finish)])[0]

    def apply(self, changes: Sequence[Change]) -> list[bool]:
        """:meth:`transition` for many changes (each atomic on its own), in one round trip."""
        if len(changes) < 2:  # no pipeline needed
            calls = [self._transition_call(change) for change in changes]
            return [int(self._transition(keys=keys, args=args)) == 1 for keys, args in calls]
        pipe = self.redis.pipeline(transaction=False)
        for change in changes:
            keys, args = self._transition_call(change)
            self._transition(keys=keys, args=args, client=pipe)
        return [int(result) == 1 for result in pipe.execute()]

    def _transition_call(self, change: Change) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the transition script for one change."""
        request_id = change.record.request_id
        keys = [
            self.keys.request(request_id),
            self.keys.results,
            self.keys.submit_schedule,
            self.keys.poll_schedule,
            self.keys.job_index,
        ]
        args = [
            str(change.record.version),
            json.dumps(change.fields),
            json.dumps(change.event) if change.event else "",
            self.result_maxlen,
            self.keys.wake_channel,
            request_id,
            change.schedule or "",
            repr(change.at),
            change.index_job,
            self.record_ttl if change.finish else "",
        ]
        return keys, args

    def durable(self) -> None:
        """Return once Redis has fsynced its AOF up to now (``WAITAOF``).

        Called before a producer is told its request is accepted and before a job is
        registered, so that a Redis crash cannot forget either. Raises ``redis.TimeoutError``
        when the fsync does not happen within ``fsync_wait_ms``. Skipped (with one warning)
        on a server without AOF or without ``WAITAOF`` (Redis before 7.2).
        """
        if not self.fsync_wait_ms:
            return
        try:
            reply = self.redis.execute_command(  # type: ignore[no-untyped-call]
                "WAITAOF", 1, 0, self.fsync_wait_ms
            )
            local = reply[0]
        except redis.ResponseError as exc:
            log.warning(
                "not waiting for AOF fsync (%s): a Redis crash may lose the last second", exc
            )
            self.fsync_wait_ms = 0
            return
        if int(local) < 1:
            raise redis.TimeoutError(f"Redis did not fsync within {self.fsync_wait_ms} ms")

    def reschedule(self, schedule: Schedule, request_id: str, at: float) -> None:
        """Move an existing schedule entry (no-op if the request is not scheduled there)."""
        self.redis.zadd(self._schedule_key(schedule), {request_id: at}, xx=True)

    def claim(self, schedule: Schedule, now: float, lease: float, limit: int) -> list[str]:
        """Claim up to ``limit`` due requests for ``lease`` seconds."""
        key = self._schedule_key(schedule)
        claimed = self._claim(keys=[key], args=[repr(now), repr(now + lease), limit])
        return [str(member) for member in claimed]

    def take_token(self, rate: float, burst: int, count_as: str = "") -> float:
        """Seconds to wait before calling the API (0: go now, the token is taken and the call
        counted as ``count_as``)."""
        keys = [self.keys.rate_limit, self.keys.counters]
        wait_ms = self._take_token(keys=keys, args=[rate, burst, count_as])
        return int(wait_ms) / 1000

    def request_for_job(self, job_id: str) -> str | None:
        found = self.redis.hget(self.keys.job_index, job_id)
        return str(found) if found else None

    def bump(self, request_id: str, name: str) -> int:
        return self.bump_many([request_id], name)[0]

    def bump_many(self, request_ids: Sequence[str], name: str) -> list[int]:
        """Add one to a counter field of each record, in one round trip: the new values."""
        if len(request_ids) < 2:  # no pipeline needed
            return [int(self.redis.hincrby(self.keys.request(r), name, 1)) for r in request_ids]
        pipe = self.redis.pipeline(transaction=False)
        for request_id in request_ids:
            pipe.hincrby(self.keys.request(request_id), name, 1)
        return [int(value) for value in pipe.execute()]

    def count(self, name: str, amount: int = 1) -> None:
        """Add to an operational counter (API calls, retries, reconciliations)."""
        self.redis.hincrby(self.keys.counters, name, amount)

    def _schedule_key(self, schedule: Schedule) -> str:
        return self.keys.submit_schedule if schedule == "submit" else self.keys.poll_schedule
