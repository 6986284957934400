"""The language-neutral intake: packaging requests as JSON on a Redis stream.

A producer in any language adds an entry to the ``<prefix>:intake`` stream with the fields
``request`` (the job registration JSON, as text) and, optionally, ``request_id``. Workers read
it with a consumer group, accept each entry exactly as the Python API does, and acknowledge it
only once it is recorded: a valid request is enqueued, an invalid one ends as a failed result
event naming the fields. Nothing is dropped; entries of a dead consumer are claimed after a
minute.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import cast

import redis
from celery import Celery

from pallycon.errors import FieldError, InvalidRequest
from worker.dispatch import send_submit
from worker.events import EventType, FailStage, event
from worker.intake import RequestConflict, accept, check_request_id, reject
from worker.keys import INTAKE_GROUP
from worker.runtime import Runtime

log = logging.getLogger("pallycon_pack.intake")

Entries = list[tuple[str, dict[str, str]]]

BATCH = 100
CLAIM_IDLE_MS = 60_000


def ensure_group(client: redis.Redis, stream: str) -> None:
    try:
        client.xgroup_create(stream, INTAKE_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def handle_entry(rt: Runtime, app: Celery, entry_id: str, fields: dict[str, str]) -> None:
    """Accept or reject one intake entry (idempotent: a redelivered entry changes nothing)."""
    now = rt.clock()
    request_id = fields.get("request_id") or f"stream-{entry_id}"
    try:
        check_request_id(request_id)
        body = _body(fields)
        accepted = accept(rt.store, body, request_id, now, retry_at=now + rt.settings.lease_seconds)
    except InvalidRequest as exc:
        if not _valid_id(request_id):
            request_id = f"stream-{entry_id}"
        reject(rt.store, request_id, exc.errors, now)
        return
    except RequestConflict as exc:
        conflict = event(
            EventType.FAILED,
            request_id,
            0,
            now,
            stage=FailStage.VALIDATION.value,
            code="conflict",
            message=str(exc),
        )
        conflict["event_id"] = f"{request_id}:conflict:{entry_id}"
        rt.store.redis.xadd(rt.store.keys.results, {"event": json.dumps(conflict)})
        return
    if accepted.created:
        send_submit(app, [accepted.request_id])


def _valid_id(request_id: str) -> bool:
    try:
        check_request_id(request_id)
    except InvalidRequest:
        return False
    return True


def _body(fields: dict[str, str]) -> object:
    raw = fields.get("request")
    if raw is None:
        raise InvalidRequest([FieldError("request", "missing: the job JSON as text")])
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest([FieldError("request", f"not JSON: {exc}")]) from None


def consume_intake(rt: Runtime, app: Celery, consumer: str, stop: threading.Event) -> None:
    """Read the intake stream until ``stop``; survive Redis outages."""
    client, stream = rt.store.redis, rt.store.keys.intake
    pause = 0.5
    rounds = 0
    while not stop.is_set():
        try:
            ensure_group(client, stream)
            if rounds % 30 == 0:
                _take_over_stale(rt, app, consumer)
            rounds += 1
            replies = client.xreadgroup(
                INTAKE_GROUP, consumer, {stream: ">"}, count=BATCH, block=1000
            )
            for _, entries in cast(list[tuple[str, Entries]], replies or []):
                _handle_all(rt, app, entries)
            pause = 0.5
        except (redis.RedisError, OSError) as exc:
            log.warning("intake read failed (%s); retrying in %.1fs", exc, pause)
            stop.wait(pause)
            pause = min(pause * 2, 10.0)


def _take_over_stale(rt: Runtime, app: Celery, consumer: str) -> None:
    client, stream = rt.store.redis, rt.store.keys.intake
    reply = client.xautoclaim(stream, INTAKE_GROUP, consumer, CLAIM_IDLE_MS, "0-0", count=BATCH)
    _handle_all(rt, app, cast(tuple[str, Entries], reply)[1])


def _handle_all(rt: Runtime, app: Celery, entries: Entries) -> None:
    client, stream = rt.store.redis, rt.store.keys.intake
    for entry_id, fields in entries:
        if not fields:  # deleted while pending
            client.xack(stream, INTAKE_GROUP, entry_id)
            continue
        try:
            handle_entry(rt, app, entry_id, fields)
        except (redis.RedisError, OSError):
            raise  # not acknowledged: read again once Redis is back
        except Exception:  # an entry must never kill the intake: fail it loudly instead
            log.exception("intake entry %s could not be handled", entry_id)
            error = FieldError("request", "could not be handled; see the worker log")
            reject(rt.store, f"stream-{entry_id}", [error], rt.clock())
        client.xack(stream, INTAKE_GROUP, entry_id)
