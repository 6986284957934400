"""``uv run python -m bench``: run every benchmark and write docs/BENCHMARKS.md.

``--only flow`` runs the flow-control cases alone and rewrites their section of the report;
``--only http`` the HTTP API's, ``--only webhooks`` the webhook deliveries', likewise.
``--quick`` runs each at a small size, to check the harness (its figures are not the published
ones). Every benchmark runs real processes on this machine: a valkey server, the emulator, Celery
workers, the callback receiver.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import cases
from bench.report import render, splice_flow, splice_http, splice_webhooks

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the harness")
    parser.add_argument(
        "--only",
        choices=["backfill", "flow", "http", "webhooks"],
        help="run just this case: backfill prints it; flow, http and webhooks write their "
        "section of the report (8, 9 or 10 and their goals; not with --quick) and keep their "
        "numbers in build/",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = parser.parse_args()
    quick = args.quick
    results: dict[str, Any] = {"machine": _machine(), "quick": quick}
    if args.only == "backfill":
        with tempfile.TemporaryDirectory(prefix="pallycon-bench-") as tmp:
            results["backfill"] = cases.backfill(Path(tmp), lines=1_000 if quick else 10_000)
        print(json.dumps(results, indent=2))  # noqa: T201 - the benchmark's own report
        return
    if args.only in ("flow", "webhooks"):
        run = cases.flow if args.only == "flow" else cases.webhooks
        splice = splice_flow if args.only == "flow" else splice_webhooks
        with tempfile.TemporaryDirectory(prefix="pallycon-bench-") as tmp:
            results[args.only] = run(Path(tmp), quick=quick)
        results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        (ROOT / "build").mkdir(exist_ok=True)
        (ROOT / "build" / f"benchmarks-{args.only}.json").write_text(json.dumps(results, indent=2))
        if not quick:
            args.output.write_text(splice(args.output.read_text(), results))
        print(json.dumps(results, indent=2))  # noqa: T201 - the benchmark's own report
        return
    if args.only == "http":
        with tempfile.TemporaryDirectory(prefix="pallycon-bench-") as tmp:
            results["http"] = _http(Path(tmp), quick)
        results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        (ROOT / "build").mkdir(exist_ok=True)
        (ROOT / "build" / "benchmarks-http.json").write_text(json.dumps(results, indent=2))
        if not quick:
            args.output.write_text(splice_http(args.output.read_text(), results))
        print(json.dumps(results, indent=2))  # noqa: T201 - the benchmark's own report
        return
    with tempfile.TemporaryDirectory(prefix="pallycon-bench-") as tmp:
        root = Path(tmp)
        _step("signing")
        results["signing"] = cases.signing(2_000 if quick else 20_000)
        _step("command-line start-up")
        results["startup"] = cases.cli_startup(runs=3 if quick else 5)
        _step("throughput")
        results["throughput"] = cases.throughput(
            root, count=300 if quick else 3000, runs=1 if quick else 3
        )
        results["calls"] = []
        for in_flight in (100, 300) if quick else (1_000, 10_000):
            for coalesce in (True, False):
                _step(f"api calls, {in_flight} in flight, coalesced={coalesce}")
                results["calls"].append(
                    cases.calls_per_job(root, in_flight, coalesce, job_seconds=20 if quick else 60)
                )
        results["latency"] = []
        for callbacks in (False, True):
            _step(f"latency, callbacks={callbacks}")
            results["latency"].append(cases.latency(root, callbacks, count=40 if quick else 200))
        _step("scale")
        results["scale"] = cases.scale(
            root, jobs=5_000 if quick else 100_000, runs=1 if quick else 3
        )
        _step("backfill")
        results["backfill"] = cases.backfill(root, lines=1_000 if quick else 10_000)
        _step("flow control")
        results["flow"] = cases.flow(root, quick=quick)
        _step("the HTTP API")
        results["http"] = _http(root, quick)
        _step("webhook deliveries")
        results["webhooks"] = cases.webhooks(root, quick=quick)
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "benchmarks.json").write_text(json.dumps(results, indent=2))
    if not quick:
        args.output.write_text(render(results))
    print(json.dumps(results, indent=2))  # noqa: T201 - the benchmark's own report


def _http(root: Path, quick: bool) -> dict[str, Any]:
    if quick:
        return cases.http_submit(root, count=300, durable_count=30, clients=4, runs=1)
    return cases.http_submit(root)


def _step(name: str) -> None:
    print(f"[bench] {name}", file=sys.stderr, flush=True)  # noqa: T201


def _machine() -> dict[str, Any]:
    from support.redis_server import server_binary

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "redis": Path(server_binary()).name}  # fmt: skip


if __name__ == "__main__":
    main()
