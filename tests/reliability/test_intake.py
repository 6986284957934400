"""Figure 9: the intake stream against hostile entries. Every entry, whatever its bytes, ends in
exactly one visible outcome; none stops the intake, none changes another request's history."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest
import redis

from support.queue import events_of
from support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

VALID = 5


def _raw(stack: Stack) -> Any:
    """A client that writes bytes as they are (the product's own decodes to str)."""
    return redis.Redis.from_url(stack.settings.redis_url)


def _outcomes(stack: Stack, entry_ids: list[str], timeout: float = 45) -> dict[str, list[Any]]:
    """The result events of each intake entry, once every entry has at least one."""
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, list[Any]] = {entry_id: [] for entry_id in entry_ids}
        for event in events_of(stack.producer):
            if event.get("entry_id") in found:
                found[event["entry_id"]].append(event)
        if all(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_figure_9_no_entry_whatever_its_bytes_stops_the_intake(
    stack_factory, worker_factory, figure
):
    """Undecodable, oversized and absurd entries each end as a failed validation event naming
    the field; the valid entries after them complete; the stream is left empty."""
    stack = stack_factory("--job-seconds", "1")
    worker = worker_factory(stack.settings)
    valid = json.dumps(stack.body("bytes-valid")).encode()
    hostile: dict[str, dict[bytes, bytes]] = {
        "request not UTF-8": {b"request_id": b"bytes-1", b"request": b"\xff\xfe" + valid},
        "request id not UTF-8": {b"request_id": b"\xc3\x28", b"request": valid},
        "field name not UTF-8": {b"\xff\xfe": b"x", b"request_id": b"bytes-3"},
        "over 256 KiB": {b"request_id": b"bytes-4", b"request": b" " * 300_000 + valid},
        "nested 100,000 deep": {b"request_id": b"bytes-5", b"request": b"[" * 100_000},
        "NUL bytes": {b"request_id": b"bytes-6", b"request": b"\x00\x00"},
        "bad request id": {b"request_id": b"../../etc", b"request": valid},
    }
    raw, intake = _raw(stack), stack.producer.keys.intake
    entries = {name: raw.xadd(intake, fields).decode() for name, fields in hostile.items()}
    good = [
        raw.xadd(
            intake,
            {"request_id": f"bytes-ok-{n}", "request": json.dumps(stack.body(f"bytes-ok-{n}"))},
        ).decode()
        for n in range(VALID)
    ]
    outcomes = _outcomes(stack, list(entries.values()))
    records = stack.wait_final([f"bytes-ok-{n}" for n in range(VALID)], timeout=45)
    deadline = time.monotonic() + 10
    while raw.xlen(intake) and time.monotonic() < deadline:
        time.sleep(0.1)
    said = {name: outcomes[entry_id] for name, entry_id in entries.items()}
    log = worker.log.read_text(errors="replace")
    figure(
        "9 bad intake bytes",
        hostile_entries=len(hostile),
        failed_validation=sum(
            e[0]["type"] == "failed" and e[0]["stage"] == "validation" for e in said.values()
        ),
        valid_completed=sum(r.state.value == "completed" for r in records.values()),
        stream_left=raw.xlen(intake),
        worker_restarts=log.count(" ready.") - 1,
    )
    for name, events in said.items():
        assert len(events) == 1, (name, events)
        event = events[0]
        assert (event["type"], event["stage"], event["code"]) == (
            "failed",
            "validation",
            "invalid_request",
        ), name
        assert event["fields"], name
        assert all(f["field"] and f["message"] for f in event["fields"]), name
    assert said["request not UTF-8"][0]["request_id"] == "bytes-1"
    assert "not valid UTF-8" in said["request not UTF-8"][0]["message"]
    entry = entries["request id not UTF-8"]
    assert said["request id not UTF-8"][0]["request_id"] == f"stream-{entry}"
    assert "over the limit of 262144" in said["over 256 KiB"][0]["message"]
    assert "not JSON" in said["nested 100,000 deep"][0]["message"]
    assert {r.state.value for r in records.values()} == {"completed"}
    assert good  # the valid ones were read after the hostile ones
    assert raw.xlen(intake) == 0  # processed entries are deleted
    assert raw.xpending(intake, "pallycon-pack")["pending"] == 0
    assert worker.process is not None
    assert worker.process.poll() is None
    assert "Traceback" not in log


def test_every_entry_has_one_outcome_and_none_changes_another_request(
    stack_factory, worker_factory
):
    """Under a live request's id: an invalid entry, another body and the same body again are
    each rejected (naming the entry); the live request's history stays its own and completes."""
    stack = stack_factory("--job-seconds", "3")
    worker_factory(stack.settings)
    live = stack.producer.submit(stack.body("live"), request_id="live-1")
    raw, intake = _raw(stack), stack.producer.keys.intake
    sent = {
        "invalid": {"request_id": live, "request": json.dumps({"job_name": "x"})},
        "conflict": {"request_id": live, "request": json.dumps(stack.body("another"))},
        "duplicate": {"request_id": live, "request": json.dumps(stack.body("live"))},
        "not json": {"request_id": live, "request": "{"},
        "free id": {"request_id": "free-1", "request": json.dumps({"job_name": "x"})},
    }
    entries = {name: raw.xadd(intake, fields).decode() for name, fields in sent.items()}
    outcomes = _outcomes(stack, list(entries.values()))
    record = stack.wait_final([live], timeout=60)[live]
    said = {name: outcomes[entry_id] for name, entry_id in entries.items()}
    assert all(len(events) == 1 for events in said.values()), said
    for name in ("invalid", "conflict", "duplicate", "not json"):
        event = said[name][0]
        assert event["type"] == "rejected"
        assert event["event_id"] == f"intake:{entries[name]}"
        assert event["request_id"] == live
    assert said["invalid"][0]["code"] == "invalid_request"
    assert said["invalid"][0]["fields"]
    assert said["conflict"][0]["code"] == "conflict"
    assert said["duplicate"][0]["code"] == "duplicate"
    free = said["free id"][0]
    assert (free["type"], free["stage"], free["request_id"]) == ("failed", "validation", "free-1")
    assert record.state.value == "completed"
    history = [e for e in events_of(stack.producer, live) if e["type"] != "rejected"]
    assert [e["type"] for e in history][:2] == ["accepted", "submitted"]
    assert history[-1]["type"] == "completed"
    assert "failed" not in {e["type"] for e in history}
    assert all(e["event_id"].startswith(f"{live}:") for e in history)
    assert raw.xlen(intake) == 0


def test_a_poison_entry_is_dead_lettered_and_the_intake_goes_on(
    stack_factory, worker_factory, figure
):
    """An entry whose handling fails every time (its request's key is not a hash) is retried
    with a backoff, then dead-lettered with a rejected event; entries behind it complete."""
    stack = stack_factory("--job-seconds", "1", max_deliveries=3)
    worker = worker_factory(stack.settings)
    store = stack.producer
    store.redis.set(store.keys.request("poison-1"), "not a hash")
    raw, intake = _raw(stack), store.keys.intake
    poison = raw.xadd(
        intake, {"request_id": "poison-1", "request": json.dumps(stack.body("poison"))}
    ).decode()
    after = raw.xadd(
        intake, {"request_id": "after-1", "request": json.dumps(stack.body("after"))}
    ).decode()
    started = time.monotonic()
    outcome = _outcomes(stack, [poison], timeout=60)[poison]
    seconds = time.monotonic() - started
    record = stack.wait_final(["after-1"], timeout=30)["after-1"]
    log = worker.log.read_text(errors="replace")
    figure("9 poison intake entry", handling_failures=log.count("could not be handled"),
           dead_lettered_after_s=round(seconds, 1), next_entry=record.state.value)  # fmt: skip
    assert len(outcome) == 1
    assert (outcome[0]["type"], outcome[0]["code"]) == ("rejected", "dead_letter")
    assert outcome[0]["message"].startswith("delivered more than 3 times without being handled")
    assert "taken" not in outcome[0]["message"]
    assert log.count("could not be handled") == 4  # max_deliveries + 1 attempts
    assert store.redis.get(store.keys.request("poison-1")) == "not a hash"  # left alone
    assert record.state.value == "completed"
    assert after
    assert raw.xlen(intake) == 0
    assert store.redis.hlen(store.keys.intake_failures) == 0
    assert worker.process is not None
    assert worker.process.poll() is None


def test_entries_pending_with_a_consumer_are_never_deleted(stack_factory, worker_factory):
    """Processed entries leave the stream; one still pending with another consumer stays."""
    stack = stack_factory("--job-seconds", "1")
    raw, intake = _raw(stack), stack.producer.keys.intake
    raw.xgroup_create(intake, "pallycon-pack", id="0", mkstream=True)
    held = raw.xadd(intake, {"request_id": "held-1", "request": json.dumps(stack.body("held"))})
    raw.xreadgroup("pallycon-pack", "a-consumer-that-died", {intake: ">"}, count=1)
    ids = [f"trim-{n}" for n in range(20)]
    for request_id in ids:
        raw.xadd(intake, {"request_id": request_id, "request": json.dumps(stack.body(request_id))})
    worker_factory(stack.settings)
    stack.wait_final(ids, timeout=60)
    deadline = time.monotonic() + 10
    while raw.xlen(intake) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert raw.xlen(intake) == 1
    assert [entry_id for entry_id, _ in raw.xrange(intake)] == [held]
    pending = raw.xpending(intake, "pallycon-pack")
    assert pending["pending"] == 1
    assert Counter(c["name"] for c in pending["consumers"]) == {b"a-consumer-that-died": 1}
