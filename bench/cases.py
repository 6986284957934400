"""The benchmarks. Each returns plain numbers; __main__ turns them into docs/BENCHMARKS.md."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import BENCH, BenchStack, cpu_per_job, median, percentile, stack, ts
from pallycon.client import ClientOptions, PallyConClient
from pallycon.models import JobRegisterRequest, validate_request
from pallycon.signing import decode_envelope, open_envelope, sign
from pallycon_emulator.config import DEMO_SITE
from support.env import clean_env
from support.processes import ServerProcess

FAST_POLLS: dict[str, Any] = {
    "poll_interval": 0.5,
    "poll_busy_interval": 0.5,
    "poll_grid": 0.25,
    "sweep_interval": 0.1,
}


# --- 5. Signing ---------------------------------------------------------------------------


def signing(count: int = 20_000, runs: int = 3) -> dict[str, Any]:
    """Signatures (and verifications) per second on one core."""
    payload = b'{"job_name":"episode-1","content_id":"episode-1","streaming_format":["dash","hls"]}'
    now = datetime.now(UTC)
    signs, opens = [], []
    for _ in range(runs):
        start = time.perf_counter()
        values = [sign(payload, DEMO_SITE, now).encode() for _ in range(count)]
        signs.append(count / (time.perf_counter() - start))
        start = time.perf_counter()
        for value in values:
            open_envelope(decode_envelope(value), DEMO_SITE)
        opens.append(count / (time.perf_counter() - start))
    return {
        "runs": runs,
        "count": count,
        "signs_per_s": median(signs),
        "verifies_per_s": median(opens),
    }


# --- 6. Command-line start-up ------------------------------------------------------------

#: The commands timed: the top-level help (it loads no subcommand) and one subcommand's help.
STARTUP_COMMANDS = (("--help",), ("status", "--help"))


def cli_startup(runs: int = 5) -> dict[str, Any]:
    """Wall-clock seconds of ``python -m pallycon_pack ARGS`` in a new process (median of
    ``runs``), and of a bare ``python -c pass`` for the interpreter's own share."""

    def seconds(*args: str) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, *args], capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        return median(times)

    commands = {" ".join(args): seconds("-m", "pallycon_pack", *args) for args in STARTUP_COMMANDS}
    return {"runs": runs, "python_s": seconds("-c", "pass"), "commands_s": commands}


# --- 1. End-to-end throughput -------------------------------------------------------------


def throughput(root: Path, count: int = 3000, runs: int = 3) -> dict[str, Any]:
    """Submit -> completed through Redis, 2 worker processes and the emulator, against a plain
    loop that signs and registers the same jobs with the client alone, in the same run.

    Also the CPU each part of the stack spent per job, in each run: where the time goes."""
    plain, pipeline, plain_cpu, pipeline_cpu = [], [], [], []
    for run in range(runs):
        with stack(root / f"throughput-{run}", "--job-seconds", "0", **FAST_POLLS) as s:
            bodies = [s.body(f"plain-{run}-{n}") for n in range(count)]
            requests = [validate_request(JobRegisterRequest, body) for body in bodies]
            with PallyConClient(DEMO_SITE, ClientOptions(base_url=s.emulator.url)) as client:
                before = s.cpu()
                start = time.perf_counter()
                for request in requests:
                    client.register_job(request)
                plain.append(count / (time.perf_counter() - start))
                plain_cpu.append(cpu_per_job(before, s.cpu(), count))
            s.start_workers(2)
            before = s.cpu()
            start = time.time()
            ids = s.producer.submit_many([s.body(f"pipe-{run}-{n}") for n in range(count)])
            s.follow_final(ids, timeout=600)
            pipeline_cpu.append(cpu_per_job(before, s.cpu(), count))
            done = max(ts(e) for e in s.events() if e["type"] == "completed")
            pipeline.append(count / (done - start))
    ratio = median(pipeline) / median(plain)
    return {"runs": runs, "count": count, "plain_per_s": median(plain),
            "pipeline_per_s": median(pipeline), "ratio": round(ratio, 3),
            "plain_runs": [round(v, 1) for v in plain], "pipeline_runs": [round(v, 1) for v in pipeline],
            "plain_cpu_ms_per_job": _median_parts(plain_cpu),
            "pipeline_cpu_ms_per_job": _median_parts(pipeline_cpu)}  # fmt: skip


def _median_parts(readings: list[dict[str, float]]) -> dict[str, float]:
    """Each part's median over the runs."""
    return {part: median([r[part] for r in readings]) for part in readings[0]}


# --- 2. API calls per completed job -------------------------------------------------------


def calls_per_job(
    root: Path, in_flight: int, coalesce: bool, job_seconds: int = 60
) -> dict[str, Any]:
    """Every API call the emulator received, divided by the jobs completed (default polling)."""
    name = f"calls-{in_flight}-{'coalesced' if coalesce else 'per-job'}"
    with stack(root / name, "--job-seconds", str(job_seconds), poll_coalesce=coalesce) as s:
        s.start_workers(4)
        before = s.api_calls()
        peak = {"value": 0}
        stop = threading.Event()

        def watch() -> None:
            key = s.producer.keys.poll_schedule
            while not stop.wait(1.0):
                peak["value"] = max(peak["value"], s.producer.redis.zcard(key))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.time()
        # As a backfill submits (submit --batch): 500 per call, so that all are in flight
        # within the jobs' time (one submit call per request waits one fsync each).
        ids: list[str] = []
        for first in range(0, in_flight, 500):
            numbers = range(first, min(first + 500, in_flight))
            ids += s.producer.submit_many([s.body(f"{name}-{n}") for n in numbers])
        records = s.follow_final(ids, timeout=1800)
        stop.set()
        calls = s.api_calls() - before
        counters = s.producer.redis.hgetall(s.producer.keys.counters)
    completed = sum(r.state.value == "completed" for r in records.values())
    return {"in_flight": in_flight, "coalesced": coalesce, "completed": completed,
            "peak_in_flight": peak["value"], "api_calls": calls,
            "calls_per_job": round(calls / completed, 3),
            "registrations": int(counters.get("api POST pack", 0)),
            "list_pages": int(counters.get("poll pages", 0)),
            "lookups": int(counters.get("poll lookups", 0)),
            "seconds": round(time.time() - start, 1)}  # fmt: skip


# --- 3. Completion latency ----------------------------------------------------------------


def latency(root: Path, callbacks: bool, count: int = 200, job_seconds: float = 4.0,
            poll_interval: float = 2.0) -> dict[str, Any]:  # fmt: skip
    """From the moment the emulator marks a job done to its completed event."""
    name = "latency-callbacks" if callbacks else "latency-polling"
    polls: dict[str, Any] = (
        {"poll_interval": 120.0, "poll_busy_interval": 120.0, "poll_grid": 0.0}
        if callbacks
        # The grid (one interval) sets the poll phase by the clock, not by each registration, so
        # a job's end falls anywhere between two polls, as with real jobs of varied length.
        else {
            "poll_interval": poll_interval,
            "poll_busy_interval": poll_interval,
            "poll_grid": poll_interval,
        }
    )
    token = BENCH["callback_token"]
    with stack(root / name, "--job-seconds", str(job_seconds), sweep_interval=0.1, **polls) as s:
        if callbacks:
            receiver = ServerProcess.start("callbacks", "--port", "0",
                                           env=clean_env(s.settings.environment()), cwd=s.root)  # fmt: skip
            s.servers.append(receiver)
            s.emulator.stop()
            s.emulator = ServerProcess.start(
                "emulator", "--port", "0", "--job-seconds", str(job_seconds),
                "--callback-url", f"{receiver.url}/callback/{token}",
                env=clean_env(), cwd=s.root,
            )  # fmt: skip
            from bench.harness import register_storage

            s.storage_id = register_storage(s.emulator.url)
            s.settings = s.settings.model_copy(update={"api_url": s.emulator.url})
            from pallycon_producers.api import Producer

            s.producer = Producer.from_settings(s.settings)
        s.start_workers(4)
        ids = []
        for n in range(count):
            ids.append(s.producer.submit(s.body(f"{name}-{n}")))
            time.sleep(0.01)  # spread over two seconds: jobs end at different moments
        s.follow_final(ids, timeout=300)
        events = s.events()
    submitted = {e["request_id"]: ts(e) for e in events if e["type"] == "submitted"}
    completed = {e["request_id"]: ts(e) for e in events if e["type"] == "completed"}
    delays = [completed[r] - (submitted[r] + job_seconds) for r in completed]
    return {"mode": "callbacks" if callbacks else "polling", "count": len(delays),
            "poll_interval": None if callbacks else poll_interval,
            "p50_s": percentile(delays, 0.5), "p99_s": percentile(delays, 0.99),
            "max_s": round(max(delays), 3)}  # fmt: skip


# --- 4. 100,000 jobs in flight ------------------------------------------------------------


def scale(root: Path, jobs: int = 100_000, runs: int = 3) -> dict[str, Any]:
    """Redis memory per in-flight job, and the time of one sweep of them all due at once."""
    from pallycon_store.admission import Limits, Submission, admit, prepare
    from pallycon_worker.runtime import Runtime
    from pallycon_worker.submit import submitted
    from pallycon_worker.sweeper import sweep_once

    with stack(
        root / "scale", "--job-seconds", "3600", redis_fsync_wait_ms=0, sweep_batch=jobs
    ) as s:
        rt = Runtime.build(s.settings)
        shared = rt.shared
        client = shared.redis
        base = int(client.info("memory")["used_memory"])
        limits = Limits.of(s.settings)
        start = time.perf_counter()
        for n in range(jobs):
            given = Submission(s.body(f"scale-{n}"), f"scale-{n}")
            ready = prepare([given], time.time(), sites=rt.book, limits=limits)
            admit(shared.records, shared.durability, ready, submit_at=1e12)
            record = shared.records.get(f"scale-{n}")
            assert record is not None
            submitted(rt, record, str(10_000_000 + n))
        created_s = time.perf_counter() - start
        total = int(client.info("memory")["used_memory"]) - base
        stream = client.memory_usage(shared.keys.results, samples=0) or 0
        sample = [  # every field counted (samples=0): the default estimates from 5
            client.memory_usage(shared.keys.request(f"scale-{n}"), samples=0) or 0
            for n in range(0, jobs, jobs // 100)
        ]
        app = shared.sender()
        sweeps = []
        for _ in range(runs):
            poll_schedule = shared.keys.poll_schedule
            client.zunionstore(poll_schedule, {poll_schedule: 0})  # all due now
            client.delete(shared.keys.poll_queue)
            start = time.perf_counter()
            submits, polls = sweep_once(rt, app)
            sweeps.append(time.perf_counter() - start)
            assert polls == min(jobs, s.settings.sweep_batch)
            assert submits == 0
        batch = s.settings.sweep_batch
    per_sweep = min(jobs, batch)
    return {"jobs": jobs, "runs": runs, "bytes_per_job": round(total / jobs),
            "bytes_per_job_without_result_stream": round((total - stream) / jobs),
            "record_bytes_median": int(median(sample)), "create_s": round(created_s, 1),
            "sweep_batch": batch, "claimed_per_sweep": per_sweep,
            "sweep_s": median(sweeps), "full_sweep_s": round(median(sweeps) * jobs / per_sweep, 2)}  # fmt: skip


# --- 7. A backfill from the command line --------------------------------------------------


def backfill(root: Path, lines: int = 10_000, sample: int = 50) -> dict[str, Any]:
    """``submit --batch`` of a file of ``lines`` requests, against one ``submit`` command per
    request (timed over ``sample`` of them, extrapolated): Redis only, no worker."""
    import json

    from pallycon_config import Settings
    from support.redis_server import RedisServer

    server = RedisServer(root / "backfill-redis").start()
    try:
        values: dict[str, Any] = {**BENCH, "redis_url": server.url, "api_url": "http://127.0.0.1:9"}
        settings = Settings(_env_file=None, **values)
        env = clean_env(settings.environment())
        storage = {"input": {"storage_id": "bench", "contents_path": ["in/movie.mp4"]},
                   "output": {"storage_id": "bench", "path": "out"}}  # fmt: skip

        def body(n: int) -> dict[str, Any]:
            return {"job_name": f"backfill-{n}", "content_id": f"backfill-{n}", "storage": storage,
                    "streaming_format": ["dash", "hls"], "protect_type": ["watermark"]}  # fmt: skip

        batch = root / "backfill.jsonl"
        with batch.open("w") as file:
            for n in range(lines):
                line = {"body": body(n), "request_id": f"backfill-{n}", "metadata": {"row": n}}
                file.write(json.dumps(line) + "\n")
        command = [sys.executable, "-m", "pallycon_pack", "submit"]
        start = time.perf_counter()
        run = subprocess.run([*command, "--batch", str(batch), "--quiet"], env=env,
                             capture_output=True, cwd=root)  # fmt: skip
        batch_s = time.perf_counter() - start
        if run.returncode != 0:
            raise RuntimeError(f"submit --batch failed: {run.stderr.decode()[-500:]}")
        one = root / "one.json"
        start = time.perf_counter()
        for n in range(sample):
            one.write_text(json.dumps(body(lines + n)))
            subprocess.run([*command, str(one), "--request-id", f"single-{n}"], env=env,
                           capture_output=True, cwd=root, check=True)  # fmt: skip
        single_s = (time.perf_counter() - start) / sample
        import redis

        from pallycon_store.wiring import keys_of

        accepted = keys_of(settings).state_index("accepted")
        recorded = int(redis.Redis.from_url(server.url).zcard(accepted))
    finally:
        server.stop()
    return {"lines": lines, "batch_s": round(batch_s, 2),
            "batch_per_s": round(lines / batch_s, 1), "single_sample": sample,
            "single_s_each": round(single_s, 3),
            "singles_extrapolated_s": round(single_s * lines, 1),
            "speedup": round(single_s * lines / batch_s, 1), "recorded": recorded}  # fmt: skip


# --- 8. Flow control ----------------------------------------------------------------------

#: The API rate of the flow cases (each site's): a 10,000-request backfill drains in ~100 s.
FLOW_RATE = 100.0
#: Requests per ``submit_many`` call of a backfill, as ``submit --batch`` records them.
BACKFILL_CHUNK = 500


def _flow_settings(rate: float, **changes: Any) -> dict[str, Any]:
    """Settings of a flow case: the site's rate (and a burst of one second of it), fast polls."""
    return {"api_rate": rate, "api_burst": max(1, int(rate)), **FAST_POLLS, **changes}


def _backfill(
    s: BenchStack, name: str, count: int, priority: str, site_id: str | None = None
) -> list[str]:
    """``count`` requests submitted as ``submit --batch`` does (chunks of 500), at
    ``priority``, for ``site_id`` (None: the default site): their ids."""
    ids: list[str] = []
    for first in range(0, count, BACKFILL_CHUNK):
        numbers = range(first, min(first + BACKFILL_CHUNK, count))
        bodies = [_site_body(s, f"{name}-{n}", site_id) for n in numbers]
        ids += s.producer.submit_many(bodies, site_ids=[site_id] * len(bodies), priority=priority)
    return ids


def _site_body(s: BenchStack, content_id: str, site_id: str | None) -> dict[str, Any]:
    """The benchmarks' job for ``site_id`` (None: the default site), on that site's storage."""
    body: dict[str, Any] = s.body(content_id)
    if site_id is not None:
        for side in ("input", "output"):
            body["storage"][side]["storage_id"] = s.other_storage_id
    return body


def _registered(s: BenchStack, ids: list[str], timeout: float) -> dict[str, Any]:
    """The records of ``ids`` once every one is registered (``submitted_at`` set), read every
    0.2 s; a TimeoutError past ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        records = s.producer.records.get_many(ids)
        if len(records) == len(ids) and all(r.submitted_at for r in records.values()):
            return records
        if time.monotonic() > deadline:
            left = sum(not r.submitted_at for r in records.values())
            raise TimeoutError(f"{left} of {len(ids)} not registered within {timeout} s")
        time.sleep(0.2)


def live_behind_backfill(
    root: Path, prioritised: bool, backfill: int = 10_000, live: int = 20,
    rate: float = FLOW_RATE,
) -> dict[str, Any]:  # fmt: skip
    """``live`` requests at ``normal``, one every few seconds over the drain of a ``backfill``
    at ``bulk`` (``prioritised``) or at ``normal`` too: each live request's registration delay
    (``submitted_at - created_at``). 2 worker processes, jobs of 1 s, one site at ``rate``."""
    name = f"flow-live-{'bulk' if prioritised else 'normal'}"
    with stack(root / name, "--job-seconds", "1", **_flow_settings(rate)) as s:
        s.start_workers(2)
        start = time.time()
        backlog = _backfill(s, f"{name}-backfill", backfill, "bulk" if prioritised else "normal")
        submitted_s = time.time() - start
        gap = 0.8 * backfill / rate / live  # over the first 80 % of the drain
        before = s.api_calls()
        first = time.time()
        live_ids = []
        for n in range(live):
            time.sleep(gap)
            live_ids.append(s.producer.submit(s.body(f"{name}-live-{n}"), priority="normal"))
        records = _registered(s, live_ids, timeout=3 * backfill / rate)
        last = max(r.submitted_at for r in records.values())
        backlog_done = sum(
            bool(r.submitted_at) for r in s.producer.records.get_many(backlog).values()
        )
        calls_per_s = (s.api_calls() - before) / (last - first)
    delays = [r.submitted_at - r.created_at for r in records.values()]
    return {"backfill": backfill, "backfill_priority": "bulk" if prioritised else "normal",
            "live": live, "rate": rate, "backfill_submit_s": round(submitted_s, 1),
            "live_every_s": round(gap, 1), "p50_s": percentile(delays, 0.5),
            "p99_s": percentile(delays, 0.99), "max_s": round(max(delays), 3),
            "backfill_registered_by_then": backlog_done,
            "api_calls_per_s": round(calls_per_s, 1)}  # fmt: skip


def site_behind_backfill(
    root: Path, backfill: int = 10_000, batch: int = 20, rate: float = FLOW_RATE
) -> dict[str, Any]:
    """Site A's ``backfill`` submitted, then site B's ``batch`` (both ``bulk``, each site at
    ``rate`` with its own bucket): seconds from B's submit until all of B's are registered."""
    with stack(root / "flow-sites", "--job-seconds", "1", two_sites=True,
               **_flow_settings(rate)) as s:  # fmt: skip
        assert s.other_site is not None
        s.start_workers(2)
        backlog = _backfill(s, "flow-sites-a", backfill, "bulk")
        start = time.time()
        b_ids = _backfill(s, "flow-sites-b", batch, "bulk", site_id=s.other_site.site_id)
        records = _registered(s, b_ids, timeout=120)
        done = max(r.submitted_at for r in records.values())
        a_done = sum(bool(r.submitted_at) for r in s.producer.records.get_many(backlog).values())
    return {"backfill": backfill, "batch": batch, "rate": rate,
            "all_registered_s": round(done - start, 3),
            "first_registered_s": round(min(r.submitted_at for r in records.values()) - start, 3),
            "backfill_registered_by_then": a_done}  # fmt: skip


def capped_live(
    root: Path, cap: int, backfill: int = 200, slots: int = 10, job_seconds: float = 30.0,
    rate: float = FLOW_RATE,
) -> dict[str, Any]:  # fmt: skip
    """The emulator works on ``slots`` jobs of the site at once, each ``job_seconds``; a
    ``backfill`` at ``bulk``, then one live request at ``normal``, with ``max_in_flight``
    ``cap`` (0: none). Followed until the live request completes, or (without a cap, where
    it waits in PallyCon's ``WM000`` queue) for 2 job times and a half; the emulator's slot
    use sampled every 0.25 s. The rest of the backlog is left when the stack is torn down."""
    name = f"flow-cap-{cap}"
    args = ("--job-seconds", str(job_seconds), "--slots", str(slots))
    with stack(root / name, *args, **_flow_settings(rate, max_in_flight=cap)) as s:
        site = s.settings.credentials().site_id
        s.start_workers(2)
        peaks = {"working": 0, "waiting": 0}
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.25):
                use = s.emulator.control("stats")["slots"][site]
                peaks["working"] = max(peaks["working"], use["working"])
                peaks["waiting"] = max(peaks["waiting"], use["waiting"])

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _backfill(s, f"{name}-backfill", backfill, "bulk")
        time.sleep(2.0)  # the backfill's first jobs are working
        start = time.time()
        live = s.producer.submit(s.body(f"{name}-live"), priority="normal")
        deadline = time.monotonic() + 2.5 * job_seconds + 10
        record = s.producer.records.get(live)
        while time.monotonic() < deadline:
            record = s.producer.records.get(live)
            if record is not None and record.state.final:
                break
            time.sleep(0.2)
        stop.set()
        watcher.join(5)
        assert record is not None
        use = s.emulator.control("stats")["slots"][site]
        ahead = None
        if record.job_id:  # the site's jobs registered before it (job ids count up from 1001)
            ahead = int(record.job_id) - 1001
    completed = record.state.value == "completed"
    return {"cap": cap, "backfill": backfill, "slots": slots, "job_seconds": job_seconds,
            "live_registered_s": round(record.submitted_at - start, 1) if record.submitted_at else None,
            "live_completed_s": round(record.finished_at - start, 1) if completed else None,
            "live_state": record.state.value, "live_status": record.status,
            "jobs_ahead_at_pallycon": ahead,
            "working_peak": max(use["working_peak"], peaks["working"]),
            "waiting_peak": peaks["waiting"]}  # fmt: skip


def bulk_share(
    root: Path, rate: float = 50.0, backlog: int = 3000, window: float = 20.0,
    warmup: float = 5.0,
) -> dict[str, Any]:  # fmt: skip
    """A ``backlog`` at ``bulk``, then a steady stream of ``high`` requests at 1.2 times the
    site's ``rate`` (alone they would take every registration): the share of the registrations
    in a ``window`` (after ``warmup``) that were bulk."""
    with stack(root / "flow-share", "--job-seconds", "1", **_flow_settings(rate)) as s:
        s.start_workers(2)
        bulk = _backfill(s, "flow-share-bulk", backlog, "bulk")
        high: list[str] = []
        stop = threading.Event()

        def stream() -> None:
            tick, per_tick, n = 0.1, max(1, round(1.2 * rate * 0.1)), 0
            next_at = time.monotonic()
            while not stop.is_set():
                bodies = [s.body(f"flow-share-high-{n + i}") for i in range(per_tick)]
                high.extend(s.producer.submit_many(bodies, priority="high"))
                n += per_tick
                next_at += tick
                stop.wait(max(0.0, next_at - time.monotonic()))

        streamer = threading.Thread(target=stream, daemon=True)
        streamer.start()
        start = time.time()
        time.sleep(warmup + window + 1.0)
        stop.set()
        streamer.join(5)
        records = s.producer.records.get_many(bulk + high)
    begin, end = start + warmup, start + warmup + window
    counts = {"high": 0, "bulk": 0}
    for r in records.values():
        if begin <= r.submitted_at < end:
            counts[r.priority or "normal"] = counts.get(r.priority or "normal", 0) + 1
    total = sum(counts.values())
    streamed = set(high)
    high_waiting = sum(not r.submitted_at for rid, r in records.items() if rid in streamed)
    return {"rate": rate, "backlog": backlog, "window_s": window,
            "high_submitted_per_s": round(len(high) / (warmup + window + 1.0), 1),
            "registrations": total, "high": counts["high"], "bulk": counts["bulk"],
            "registered_per_s": round(total / window, 1),
            "bulk_share": round(counts["bulk"] / total, 3) if total else 0.0,
            "high_left_waiting": high_waiting}  # fmt: skip


def flow(root: Path, quick: bool = False) -> dict[str, Any]:
    """Every flow-control case (``quick``: small sizes, to check the harness)."""
    backfill = 1_000 if quick else 10_000
    return {
        "live": [
            live_behind_backfill(root, prioritised, backfill=backfill, live=5 if quick else 20)
            for prioritised in (True, False)
        ],
        "sites": site_behind_backfill(root, backfill=backfill),
        "cap": [
            capped_live(root, cap, backfill=50 if quick else 200, job_seconds=10 if quick else 30)
            for cap in (10, 0)
        ],
        "share": bulk_share(root, window=10 if quick else 60),
    }


# --- 9. The HTTP API ----------------------------------------------------------------------

#: The two ways of submitting the HTTP API case compares, and whether each waits for the fsync
#: (``PALLYCON_REDIS_FSYNC_WAIT_MS``, 2000 by default; 0: no wait, what is left is each path's
#: own cost).
HTTP_MODES = (("fsync wait", 2000), ("no fsync wait", 0))


def http_submit(
    root: Path, count: int = 2000, durable_count: int = 300, clients: int = 8, runs: int = 3
) -> dict[str, Any]:
    """``POST /v1/requests`` (a real ``pallycon-pack http`` process, keep-alive connections)
    against ``Producer.submit`` in this process, in the same run, on the same Redis: each
    request a new one with its own id. One client sending one request after another (latency
    p50/p99, requests/s), then ``clients`` threads at once (requests/s); ``runs`` rounds, the
    two ways alternating; medians. With the fsync wait (the default: ``durable_count``
    requests a round, each waits for Redis's fsync), and without (``count``)."""
    found: dict[str, Any] = {"clients": clients, "runs": runs}
    for mode, fsync_ms in HTTP_MODES:
        size = durable_count if fsync_ms else count
        with _SubmitBench(root / mode.replace(" ", "-"), fsync_ms) as bench:
            found[mode] = {"count": size, **bench.compare(size, clients, runs)}
    return found


class _SubmitBench:
    """A Redis, an HTTP API process with a token, and a producer, for :func:`http_submit`."""

    def __init__(self, root: Path, fsync_ms: int) -> None:
        import itertools

        from pallycon_config import Settings
        from support.redis_server import RedisServer

        root.mkdir(parents=True)
        self.root = root
        self.redis = RedisServer(root / "redis")
        values: dict[str, Any] = {**BENCH, "redis_url": self.redis.url,
                                  "api_url": "http://127.0.0.1:9", "redis_fsync_wait_ms": fsync_ms}  # fmt: skip
        self.settings = Settings(_env_file=None, **values)
        self.numbers = itertools.count()
        self.local = threading.local()
        self.api: ServerProcess | None = None

    def __enter__(self) -> _SubmitBench:
        from pallycon_producers.api import Producer
        from pallycon_store.tokens import Tokens

        self.redis.start()
        self.producer = Producer.from_settings(self.settings)
        self.token, _ = Tokens(self.producer.redis, self.producer.keys).add("bench", time.time())
        env = clean_env(
            self.settings.environment(), PALLYCON_HTTP_RATE="100000", PALLYCON_HTTP_BURST="100000"
        )
        self.api = ServerProcess.start("http", "--port", "0", env=env, cwd=self.root)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.api is not None:
            self.api.stop()
        self.redis.stop()

    @staticmethod
    def body(n: int) -> dict[str, Any]:
        storage = {"input": {"storage_id": "bench", "contents_path": ["in/movie.mp4"]},
                   "output": {"storage_id": "bench", "path": "out"}}  # fmt: skip
        return {"job_name": f"http-{n}", "content_id": f"http-{n}", "storage": storage,
                "streaming_format": ["dash", "hls"], "protect_type": ["watermark"]}  # fmt: skip

    def by_http(self, n: int) -> float:
        import httpx

        assert self.api is not None
        if not hasattr(self.local, "http"):  # a connection per thread, kept alive
            self.local.http = httpx.Client(
                base_url=self.api.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
            )
        start = time.perf_counter()
        answer = self.local.http.post(
            "/v1/requests", json={"body": self.body(n)}, headers={"Idempotency-Key": f"h-{n}"}
        )
        took = time.perf_counter() - start
        if answer.status_code != 201:
            raise RuntimeError(f"POST /v1/requests: {answer.status_code} {answer.text[:300]}")
        return took

    def by_producer(self, n: int) -> float:
        start = time.perf_counter()
        self.producer.submit(self.body(n), f"p-{n}")
        return time.perf_counter() - start

    def one_by_one(self, submit: Any, count: int) -> dict[str, float]:
        start = time.perf_counter()
        took = [submit(next(self.numbers)) * 1000 for _ in range(count)]
        wall = time.perf_counter() - start
        return {"p50_ms": percentile(took, 0.5), "p99_ms": percentile(took, 0.99),
                "per_s": round(count / wall, 1)}  # fmt: skip

    def at_once(self, submit: Any, count: int, clients: int) -> float:
        import concurrent.futures

        todo = [next(self.numbers) for _ in range(count)]
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(submit, todo))
        return round(count / (time.perf_counter() - start), 1)

    def compare(self, count: int, clients: int, runs: int) -> dict[str, Any]:
        ways = {"producer": self.by_producer, "http": self.by_http}
        for submit in ways.values():  # warm up: connections made, scripts loaded
            for _ in range(20):
                submit(next(self.numbers))
        alone: dict[str, list[dict[str, float]]] = {name: [] for name in ways}
        together: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(runs):
            for name, submit in ways.items():
                alone[name].append(self.one_by_one(submit, count))
                together[name].append(self.at_once(submit, count, clients))
        return {
            name: {
                **{key: median([r[key] for r in alone[name]]) for key in alone[name][0]},
                "parallel_per_s": median(together[name]),
                "runs": alone[name],
                "parallel_runs": together[name],
            }
            for name in ways
        }


# --- 9. Webhook deliveries --------------------------------------------------------------------

#: The key the benchmark's endpoints' secrets are sealed with.
WEBHOOK_KEY = "benchmark-webhook-key-0123456789abcdef"
#: The event types an endpoint gets by default (the outcomes), and every type.
OUTCOMES = ("completed", "failed", "cancelled", "stopped", "rejected")
EVERY_TYPE = ("accepted", "submitted", "progress", *OUTCOMES)


def _delivered(receiver: Any, first: int, ids: list[str], timeout: float) -> list[Any]:
    """The arrivals (after the ``first``) of the requests ``ids``, once each request's
    ``completed`` has arrived (``timeout`` seconds at most)."""
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        arrivals = [a for a in receiver.since(first) if a.request_id in wanted]
        done = {a.request_id for a in arrivals if a.type == "completed"}
        if wanted <= done or time.monotonic() > deadline:
            return arrivals
        time.sleep(0.2)


def _figures(arrivals: list[Any], requests: int) -> dict[str, Any]:
    """Deliveries per second (first arrival to last) and the lag of each ``completed``: its
    event's ``ts`` to its arrival (one clock: the same machine)."""
    lags = [a.at - a.event_at for a in arrivals if a.type == "completed"]
    span = max(a.at for a in arrivals) - min(a.at for a in arrivals)
    return {"requests": requests, "deliveries": len(arrivals),
            "completed_delivered": len(lags), "all_verified": all(a.verified for a in arrivals),
            "deliveries_per_s": round(len(arrivals) / span, 1), "span_s": round(span, 2),
            "lag_p50_s": percentile(lags, 0.5), "lag_p99_s": percentile(lags, 0.99),
            "lag_max_s": round(max(lags), 3)}  # fmt: skip


def _steady(s: BenchStack, receiver: Any, name: str, rate: float, seconds: float) -> dict[str, Any]:
    """Requests submitted at ``rate`` per second for ``seconds`` (a batch every 0.1 s),
    followed until every one's ``completed`` webhook arrived."""
    first = len(receiver.since(0))
    ids: list[str] = []
    per_tick, n = max(1, round(rate * 0.1)), 0
    start = time.monotonic()
    next_at = start
    while time.monotonic() - start < seconds:
        ids += s.producer.submit_many([s.body(f"{name}-{n + i}") for i in range(per_tick)])
        n += per_tick
        next_at += 0.1
        time.sleep(max(0.0, next_at - time.monotonic()))
    s.follow_final(ids, timeout=600)
    return {"rate": rate, "seconds": seconds,
            **_figures(_delivered(receiver, first, ids, 300), len(ids))}  # fmt: skip


def _burst(s: BenchStack, receiver: Any, count: int) -> dict[str, Any]:
    """``count`` requests submitted at once, followed until every webhook arrived."""
    first = len(receiver.since(0))
    ids = s.producer.submit_many([s.body(f"wh-burst-{n}") for n in range(count)])
    s.follow_final(ids, timeout=600)
    return _figures(_delivered(receiver, first, ids, 600), count)


def webhooks(root: Path, quick: bool = False) -> dict[str, Any]:
    """Webhook deliveries by the workers (one worker of 2 processes beside the emulator, the
    default webhook settings) to a fast local receiver (:mod:`bench.webhook_receiver`):

    - a burst of requests, its endpoint receiving every event type: deliveries per second;
    - a steady load, the endpoint receiving the outcomes (the default): each ``completed``
      event's lag to its 2xx, and the deliveries per second, beside the pipeline;
    - the same steady load with a second endpoint, for the same events, that takes connections
      and never answers (each attempt times out after ``PALLYCON_WEBHOOK_TIMEOUT``, 15 s)."""
    from bench.webhook_receiver import FastReceiver
    from pallycon_store.webhooks.deliveries import Deliveries
    from pallycon_store.webhooks.sealing import Sealer
    from pallycon_store.webhooks.signing import Secret
    from support.webhook_receiver import Silent

    rate, seconds = (50.0, 5.0) if quick else (100.0, 30.0)
    burst = 300 if quick else 2000
    with stack(root / "webhooks", "--job-seconds", "0", webhook_key=WEBHOOK_KEY,
               **FAST_POLLS) as s:  # fmt: skip
        outbox = Deliveries(s.producer.redis, s.producer.keys)
        sealer = Sealer.of(WEBHOOK_KEY)
        secret = Secret.generate()
        receiver = FastReceiver(secret.text())
        silent = Silent()
        try:
            fast = outbox.endpoints.add(
                sealer, receiver.url, secret, time.time(), events=EVERY_TYPE, allow_private=True
            )
            s.start_workers(2)
            _steady(s, receiver, "wh-warm", rate, 2.0)  # connections and caches warm
            burst_run = _burst(s, receiver, burst)
            outbox.endpoints.remove(fast.id)
            outbox.endpoints.add(
                sealer, receiver.url, secret, time.time(), events=OUTCOMES, allow_private=True
            )
            alone = _steady(s, receiver, "wh-alone", rate, seconds)
            dead = outbox.endpoints.add(
                sealer, silent.url, Secret.generate(), time.time(), events=OUTCOMES,
                allow_private=True,
            )  # fmt: skip
            beside = _steady(s, receiver, "wh-dead", rate, seconds)
            read = outbox.overview(time.time())
            stuck = next(e for e in read.endpoints if e.endpoint_id == dead.id)
        finally:
            receiver.stop()
            silent.stop()
    return {"timeout_s": s.settings.webhook_timeout,
            "endpoint_concurrency": s.settings.webhook_endpoint_concurrency,
            "concurrency": s.settings.webhook_concurrency,
            "burst": burst_run, "alone": alone, "with_dead": beside,
            "dead_endpoint": {"pending": stuck.pending, "in_flight": stuck.in_flight,
                              "timeouts": read.counters.attempts.get("timeout", 0)}}  # fmt: skip
