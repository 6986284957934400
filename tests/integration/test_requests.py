"""``requests list``, ``requests show`` and ``retry`` as an operator runs them, against a real
Redis, worker and emulator (with a data directory, so that a missing input file fails a job).
One ``requests list`` and the first ``retry`` run in processes of their own (the family's
smoke); the other calls are checked in this process (:func:`support.cli.run_cli`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pallycon.errors import FieldError
from pallycon_pack.cli.main import main
from pallycon_producers.api import Producer
from pallycon_store.admission import refuse
from pallycon_store.events import FailStage, State
from pallycon_store.failures import FailureCode, explain
from support.cli import run_cli
from support.env import clean_env
from support.processes import cli
from support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("requests")
    data = root / "data"
    (data / "my-bucket").mkdir(parents=True)
    args = ("--data-dir", str(data), "--job-seconds", "0.5")
    with Stack.start(root / "stack", *args, emulator="thread") as running:
        running.start_workers(1)
        yield running


def _run(stack: Stack, *args: str, own_process: bool = False) -> tuple[int, str, str]:
    """``pallycon-pack ARGS`` on the stack's settings: in this process, or ``own_process``."""
    run = cli if own_process else run_cli
    result = run(*args, env=clean_env(stack.settings.environment()), cwd=stack.root)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def _input(stack: Stack, content_id: str) -> Path:
    return stack.root.parent / "data" / "my-bucket" / "in" / f"{content_id}.mp4"


def _body(stack: Stack, content_id: str) -> dict[str, Any]:
    body = stack.body(content_id)
    body["storage"]["input"]["contents_path"] = [f"in/{content_id}.mp4"]
    return body


def test_a_missing_input_fails_and_a_retry_after_the_fix_completes(stack: Stack):
    """The operator finds the failure by state, reads why, adds the file, retries: the request
    completes under the same id, on a second remote job, its history one timeline."""
    _input(stack, "present").parent.mkdir(parents=True, exist_ok=True)
    _input(stack, "present").write_bytes(b"video")
    ok = stack.producer.submit(_body(stack, "present"), "req-present", metadata={"cms": 1})
    broken = stack.producer.submit(_body(stack, "absent"), "req-absent")
    first = stack.wait_final([ok, broken], timeout=60)
    assert first[ok].state == State.COMPLETED
    assert first[broken].state == State.FAILED
    failed_job = first[broken].job_id

    code, out, _ = _run(stack, "requests", "list", "--state", "failed", "--json", own_process=True)
    assert code == 0
    listed = json.loads(out)
    assert [r["request_id"] for r in listed] == ["req-absent"]
    assert listed[0]["error_stage"] == "packaging"
    assert listed[0]["finished_at"].endswith("+00:00")  # ISO 8601, UTC
    code, out, _ = _run(stack, "requests", "list")
    assert code == 0
    assert "req-absent" in out
    assert "req-present" in out
    code, out, _ = _run(stack, "requests", "list", "--since", "not-a-time")
    assert (code, out) == (2, "")

    # Fix the cause, retry: a new job, the same request id, the events going on
    _input(stack, "absent").write_bytes(b"video")
    code, out, err = _run(stack, "retry", "req-absent", own_process=True)
    assert code == 0, err
    assert out.startswith("req-absent  resubmit")
    again = stack.wait_final([broken], timeout=60)[broken]
    assert again.state == State.COMPLETED
    assert again.retries == 1
    assert again.job_id != failed_job
    assert len(stack.remote_jobs("absent")) == 2  # the failed one and the new one

    code, out, _ = _run(stack, "requests", "show", "req-absent", "--json")
    assert code == 0
    shown = json.loads(out)
    types = [e["type"] for e in shown["events"]]
    assert types[0] == "accepted"
    assert types[-1] == "completed"
    assert "failed" in types
    assert types[types.index("failed") + 1] == "accepted"
    assert shown["events"][types.index("failed") + 1]["retry"] == 1
    assert [e["event_id"] for e in shown["events"]] == sorted(
        (e["event_id"] for e in shown["events"]), key=lambda i: int(i.split(":")[1])
    )
    code, out, _ = _run(stack, "requests", "show", "req-present")
    assert code == 0
    assert "completed" in out
    assert '"cms": 1' in out or "'cms': 1" in out  # its metadata
    code, out, _ = _run(stack, "requests", "show", "req-present", "--json")
    assert {e["type"]: e["metadata"] for e in json.loads(out)["events"]} == {
        "accepted": {"cms": 1},
        "submitted": {"cms": 1},
        "completed": {"cms": 1},
    }

    # Idempotent: a completed request is not retried again; unknown ids are named
    code, out, err = _run(stack, "retry", "req-absent", "nobody")
    assert code == 1
    assert "req-absent  skipped    it is completed: only a failed request is retried" in out
    assert "nobody  skipped    no such request" in out
    assert "2 of 2 requests not retried" in err
    assert len(stack.remote_jobs("absent")) == 2


def test_retry_by_state_selects_by_code_and_a_dry_run_changes_nothing(stack: Stack):
    ids = [stack.producer.submit(_body(stack, f"gone-{n}"), f"req-gone-{n}") for n in range(3)]
    stack.wait_final(ids, timeout=60)
    code, out, _ = _run(stack, "retry", "--state", "failed", "--code", "nope", "--dry-run")
    assert (code, out) == (0, "")
    code, out, _ = _run(
        stack, "retry", "--state", "failed", "--since", "10m", "--dry-run", "--json"
    )
    assert code == 0
    planned = {line["request_id"]: line["action"] for line in map(json.loads, out.splitlines())}
    assert planned == dict.fromkeys(ids, "resubmit")
    assert all(r.state == State.FAILED for r in stack.producer.records.get_many(ids).values())
    code, _, err = _run(stack, "retry", "req-gone-0", "--state", "failed")
    assert code == 2
    assert "not both" in err


def test_show_says_what_a_failures_code_means(stack: Stack):
    """``requests show`` says what a failed request's code means, right after its message, in
    text and in JSON: PallyCon's (a missing input file) and ours (an entry refused at intake)."""
    missing = stack.producer.submit(_body(stack, "never-there"), "req-meaning")
    failed = stack.wait_final([missing], timeout=60)[missing]
    assert (failed.state, failed.error_code) == (State.FAILED, "WM900013")
    wrong = [FieldError("request", "not JSON")]
    refuse(stack.producer.records, "req-refused", wrong, time.time(), entry_id="1-0")
    for request_id, meaning in [
        (missing, explain("WM900013", FailStage.PACKAGING)),
        ("req-refused", FailureCode.INVALID_REQUEST.meaning),
    ]:
        code, out, _ = _run(stack, "requests", "show", request_id)
        assert code == 0
        lines = out.splitlines()
        message = next(n for n, line in enumerate(lines) if line.startswith("error_message "))
        assert lines[message + 1] == f"{'error_meaning':17} {meaning}"
        code, out, _ = _run(stack, "requests", "show", request_id, "--json")
        record = json.loads(out)["record"]
        assert record["error_meaning"] == meaning
        assert list(record).index("error_meaning") == list(record).index("error_message") + 1
    assert "Download failed" in explain("WM900013", FailStage.PACKAGING)


def test_retry_help_names_our_codes():
    """``retry --code``'s help names each of our own codes (PallyCon's are in its guide)."""
    shown = CliRunner().invoke(main, ["retry", "--help"])
    assert shown.exit_code == 0
    assert "ours: " + ", ".join(FailureCode) + "." in " ".join(shown.output.split())


def test_requests_are_listed_and_retried_by_site(stack: Stack):
    """Requests of two sites (under a prefix of their own, which no worker reads: they stay
    accepted): ``--site`` lists one site's, a SITE column says whose each is."""
    settings = stack.settings.model_copy(update={"key_prefix": f"t{os.urandom(4).hex()}"})
    producer = Producer.from_settings(settings)
    default = settings.site_id
    assert default is not None
    announced = {"region": settings.region, "default": False}
    producer.redis.hset(  # as workers serving both sites announce them
        producer.keys.sites,
        mapping={
            default: json.dumps({**announced, "default": True}),
            "BRND": json.dumps(announced),
        },
    )
    producer.submit(_body(stack, "site-d"), "site-d")
    for n in range(2):
        producer.submit(_body(stack, f"site-b{n}"), f"site-b{n}", site_id="BRND")

    def run(*args: str) -> tuple[int, str, str]:
        result = run_cli(*args, env=clean_env(settings.environment()), cwd=stack.root)
        return result.returncode, result.stdout.decode(), result.stderr.decode()

    code, out, _ = run("requests", "list", "--site", "BRND", "--json")
    assert code == 0
    assert [(r["request_id"], r["site_id"]) for r in json.loads(out)] == [
        ("site-b1", "BRND"),
        ("site-b0", "BRND"),
    ]
    code, out, _ = run("requests", "list", "--site", default, "--json")
    assert [r["request_id"] for r in json.loads(out)] == ["site-d"]
    assert "site_id" not in json.loads(out)[0]  # as stored: it named no site
    code, out, _ = run("requests", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["request", "state", "site"]
    assert {line.split()[0]: line.split()[2] for line in lines[1:]} == {
        "site-b1": "BRND",
        "site-b0": "BRND",
        "site-d": default,
    }
    code, out, _ = run("requests", "show", "site-d")
    assert code == 0
    assert f"site_id           {default} (the default site)" in out.splitlines()
    code, out, err = run("requests", "list", "--site", "NOPE")
    assert (code, out) == (2, "")
    assert f"--site: unknown site 'NOPE' (sites served: {default}, BRND)" in err
    code, out, err = run("retry", "--state", "failed", "--site", "BRND", "--dry-run")
    assert (code, out) == (0, "")
    assert "no failed requests match" in err
    code, _, err = run("retry", "site-b0", "--site", "BRND")
    assert code == 2
    assert "select with --state failed" in err
