"""Figure 14: SIGTERM during a batch, as Docker and Kubernetes stop a worker. Real processes.

The worker runs as PID 1 of its own PID namespace, as a container's command does, and gets
SIGTERM (only its main process, as ``docker stop`` and a pod's deletion send it) while two submit
batches are half registered and a third waits in the queue. Celery's warm shutdown must finish
the running batches and exit 0 within the task time limit, leave the third where the next
worker finds it, and register nothing twice.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections import Counter
from typing import Any

import psutil
import pytest

from pallycon_store.events import State
from pallycon_store.messages import SUBMIT_CHUNK
from support.env import clean_env
from support.processes import WorkerProcess, catches, pid1_unavailable
from support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

#: Requests per submit task: three batches, two pool processes.
BATCH = SUBMIT_CHUNK
BATCHES = 3
PROCESSES = 2
#: Seconds the emulator adds to every API call: a batch of 50 registrations, sent 4 at a time,
#: takes about 8 s, so the signal lands in the middle of two of them.
LATENCY = 0.6
#: Wait until each running batch has registered this many (and has a group under way).
REGISTERED_BEFORE_SIGNAL = 8
#: What in a worker's log after the signal would say a step or a loop was cut short.
CUT_SHORT = ("Traceback", "ERROR", "CRITICAL", "loop failed", "WorkerLostError")


def _states(stack: Stack, ids: list[str]) -> Counter[str]:
    return Counter(record.state.value for record in stack.producer.records.get_many(ids).values())


def _queued_ids(stack: Stack, queue: str) -> list[str]:
    """The request ids carried by the task messages waiting in ``queue`` (Celery's JSON)."""
    found = []
    for raw in stack.producer.redis.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.extend(args[0])
    return found


@pytest.fixture(autouse=True)
def _pid1() -> None:
    unavailable = pid1_unavailable()
    if unavailable:
        pytest.skip(f"cannot run the worker as PID 1 of a PID namespace: {unavailable}")


def _pid1_worker(stack: Stack, *, ready: bool = True) -> WorkerProcess:
    """``pallycon-pack worker`` as PID 1 of its own PID namespace, as a container runs it."""
    env = clean_env(stack.settings.environment())
    log = stack.root / f"worker-{len(stack.workers)}.log"
    command = WorkerProcess.command(concurrency=PROCESSES)
    worker = WorkerProcess(command, env, log, as_pid1=True)
    stack.workers.append(worker)  # stopped with the stack, whatever happens
    worker.start()
    return worker.wait_ready() if ready else worker


def _waits_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` has a connection open to ``port`` on this machine."""
    try:
        found = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    return any(getattr(c.raddr, "port", None) == port for c in found)  # raddr () if none


def test_figure_14_sigterm_during_a_batch(stack_factory, figure):
    """SIGTERM mid-batch: the running batches finish, the worker exits 0 well within the task
    time limit, the waiting batch stays queued, and a new worker completes every request with
    exactly one registration each."""
    # The lease is longer than a batch, as the docs ask (PALLYCON_LEASE_SECONDS): the sweeper
    # does not dispatch a running batch's requests again. Hard task limit: 24 s.
    stack = stack_factory("--job-seconds", "2", lease_seconds=30.0, visibility_timeout=30)
    limit = stack.settings.task_time_limit
    worker = _pid1_worker(stack)
    main = worker.main_pid()
    pool = worker.children()
    # `pallycon-pack worker` runs Celery in its own process (no exec, no child to forward to):
    # the process a container engine signals is Celery's MainProcess, the parent of the pool.
    assert len(pool) == PROCESSES
    assert "pallycon-1@" in worker.log.read_text(errors="replace")  # its node name: PID 1
    stack.emulator.set_faults(latency=LATENCY)
    marker = f"sigterm-{time.monotonic_ns()}"
    ids = stack.producer.submit_many([stack.body(f"{marker}-{n}") for n in range(BATCH * BATCHES)])
    batches = [ids[start : start + BATCH] for start in range(0, len(ids), BATCH)]
    deadline = time.monotonic() + 30
    while True:
        by_batch = [_states(stack, batch) for batch in batches]
        started = [
            n
            for n, states in enumerate(by_batch)
            if states[State.SUBMITTED] >= REGISTERED_BEFORE_SIGNAL and states[State.SUBMITTING]
        ]
        if len(started) == PROCESSES:  # each pool process half-way through a batch of its own
            break
        assert time.monotonic() < deadline, f"the batches did not start: {by_batch}"
        time.sleep(0.05)
    before = sum(by_batch, Counter[str]())

    beats = stack.producer.keys.heartbeats
    node_beats = sorted(f for f in stack.producer.redis.hkeys(beats) if f.startswith("pallycon-1@"))
    assert [f.rpartition("/")[2] for f in node_beats] == ["intake", "sweeper", "webhooks"]

    signalled = time.monotonic()
    assert worker.terminate() == main
    assert worker.process is not None
    code = worker.process.wait(limit + 30)
    exit_s = time.monotonic() - signalled
    after = _states(stack, ids)
    log = worker.log.read_text(errors="replace")
    shutdown = log.partition("worker: Warm shutdown (MainProcess)")
    assert shutdown[1], "Celery never started its warm shutdown:\n" + log[-3000:]
    assert code == 0, log[-3000:]
    assert exit_s < limit, f"exit took {exit_s:.1f} s; the hard task limit is {limit} s"

    # The running batches were finished: nothing left marked `submitting` (which the next
    # worker would have to reconcile), every registration sent is recorded.
    registrations = stack.emulator.control("stats")["counts"].get("POST pack", 0)
    registered = after[State.SUBMITTED] + after[State.COMPLETED]
    assert after[State.SUBMITTING] == 0, dict(after)
    assert registered == PROCESSES * BATCH, dict(after)
    assert registrations == registered
    assert shutdown[2].count("Task pallycon.submit[") == PROCESSES  # both ran to the end ...
    assert shutdown[2].count("] succeeded in ") == PROCESSES  # ... and succeeded
    # Acknowledged on the way out: nothing waits for the visibility timeout to come back.
    assert stack.producer.redis.hlen("unacked") == 0
    # The batch no process had started waits in the queue, whole; its requests are also on the
    # submit schedule, the backstop should the message be lost.
    records = stack.producer.records.get_many(ids)
    waiting = {rid for rid, record in records.items() if record.state == State.ACCEPTED}
    assert len(waiting) == BATCH
    assert sorted(_queued_ids(stack, stack.producer.keys.submit_queue)) == sorted(waiting)
    scheduled = stack.producer.redis.zmscore(stack.producer.keys.submit_schedule, list(waiting))
    assert None not in scheduled
    # The background loops stopped with the worker, quietly, and took their heartbeats with
    # them: a worker stopped on purpose is gone, not an unhealthy one (health, metrics, alerts).
    assert "sweeper loop stopped" in shutdown[2]
    assert "intake loop stopped" in shutdown[2]
    assert "webhooks loop stopped" in shutdown[2]
    left_behind = set(node_beats) & set(stack.producer.redis.hkeys(beats))
    assert not left_behind, f"heartbeats of the stopped worker: {sorted(left_behind)}"
    cut_short = [line for line in shutdown[2].splitlines() if any(s in line for s in CUT_SHORT)]
    assert not cut_short, "\n".join(cut_short)

    stack.emulator.set_faults()
    restarted = time.monotonic()
    stack.start_workers(PROCESSES)
    records = stack.wait_final(ids, timeout=60)
    done_s = time.monotonic() - restarted
    counts: dict[str, Any] = stack.exactly_once(ids, records, marker)
    registrations = stack.emulator.control("stats")["counts"]["POST pack"]
    assert registrations == len(ids)  # not one registration sent twice
    counters = stack.producer.redis.hgetall(stack.producer.keys.counters)
    reconciliations = int(counters.get("reconciliations", 0))
    figure("14 SIGTERM during a batch", **counts, registrations_sent=registrations,
           in_flight_at_signal=PROCESSES * BATCH - before[State.SUBMITTED],
           registering_at_signal=before[State.SUBMITTING],
           finished_during_shutdown=registered - before[State.SUBMITTED],
           exit_code=code, exit_s=round(exit_s, 1), task_time_limit_s=limit,
           left_queued=len(waiting), reconciliations=reconciliations,
           new_worker_to_all_completed_s=round(done_s, 1))  # fmt: skip


def test_figure_14_sigterm_while_the_worker_starts(stack_factory, figure):
    """Redis not answering (frozen): the worker, PID 1, waits for it before Celery starts, so
    before Celery's own SIGTERM handler exists. The kernel drops a signal PID 1 has no handler
    for: without one of the worker's own, this stop would be ignored, the worker would start
    once Redis answers, take tasks and be SIGKILLed mid-batch at the end of the grace period.
    It stops at once, with exit code 0, having taken nothing."""
    stack = stack_factory()
    assert stack.redis.process is not None
    frozen = stack.redis.process.pid
    os.kill(frozen, signal.SIGSTOP)
    try:
        worker = _pid1_worker(stack, ready=False)
        assert worker.process is not None
        main = worker.main_pid()
        deadline = time.monotonic() + 20
        while not _waits_on(main, stack.redis.port):  # its check of Redis, before Celery
            assert worker.process.poll() is None, worker.log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the worker never connected to Redis"
            time.sleep(0.02)
        assert catches(main, signal.SIGTERM), "the starting worker has no SIGTERM handler"
        signalled = time.monotonic()
        worker.terminate()
        code = worker.process.wait(10)
        exit_s = time.monotonic() - signalled
    finally:
        os.kill(frozen, signal.SIGCONT)
    log = worker.log.read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert "worker: stopped by SIGTERM while starting" in log
    assert "Traceback" not in log
    assert " ready." not in log  # Celery never started: nothing was taken from the queues
    assert exit_s < 2
    figure("14 SIGTERM while the worker starts", exit_code=code, exit_s=round(exit_s, 2))
