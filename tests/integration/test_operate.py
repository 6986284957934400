"""``health``, ``stats`` and ``metrics`` as an operator runs them, on one real stack: Redis, a
worker process, the emulator over HTTP and the exporter process scraped over HTTP. Known work
goes through, and the exposition (parsed with prometheus_client's parser) must say exactly that.
``health`` runs once in a process of its own; the other commands' output and exit codes are
checked in this process (:func:`support.cli.run_cli`).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pallycon_producers.api import Producer
from pallycon_store.events import State
from pallycon_store.sites import announce
from pallycon_store.wiring import Store
from pallycon_worker.ratelimit import FLUSH_EVERY
from support.cli import run_cli
from support.deployment import (
    DASHBOARD,
    RULES,
    dashboard_problems,
    rules,
    rules_problems,
    selectors,
)
from support.env import clean_env
from support.processes import ServerProcess, WorkerProcess, cli, start_server
from support.queue import announce_sites, make_settings
from support.redis_server import RedisServer, free_port
from support.samples import OTHER_SITE, REGION, body_for
from support.stack import Stack

pytestmark = pytest.mark.integration

COUNT = 3
STATES = tuple(state.value for state in State)
OTHER = OTHER_SITE


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("operate")
    with Stack.start(root / "stack", "--job-seconds", "0.3", emulator="thread") as running:
        running.start_workers(1)
        yield running


@pytest.fixture(scope="module")
def exporter(stack: Stack) -> Iterator[ServerProcess]:
    env = clean_env(stack.settings.environment())
    server = start_server("metrics", "--port", "0", env=env, cwd=stack.root)
    yield server
    server.stop()


def _run(stack: Stack, *args: str, **env: str) -> tuple[int, str, str]:
    """``pallycon-pack ARGS`` on the stack's settings (and ``env``), in this process."""
    result = run_cli(*args, env=clean_env({**stack.settings.environment(), **env}), cwd=stack.root)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def _until(stack: Stack, done: Any, *args: str, timeout: float) -> tuple[int, str, str]:
    """``_run(stack, ARGS)`` again until ``done(code, out)``, for ``timeout`` seconds at most."""
    deadline = time.monotonic() + timeout
    while True:
        code, out, err = _run(stack, *args)
        if done(code, out):
            return code, out, err
        assert time.monotonic() < deadline, f"{args}: not reached in {timeout} s: {code} {out}"
        time.sleep(0.2)


def _scrape(exporter: ServerProcess) -> dict[str, Any]:
    """Every sample of the exposition: (name, sorted labels) -> value; and the families."""
    text = httpx.get(f"{exporter.url}/metrics", timeout=10).text
    samples: dict[Any, float] = {}
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return {"samples": samples, "families": families, "names": {k[0] for k in samples}}


def _value(scrape: dict[str, Any], name: str, **labels: str) -> float:
    return float(scrape["samples"].get((name, tuple(sorted(labels.items()))), 0.0))


def _scrape_until(
    exporter: ServerProcess, done: Any, timeout: float = 5 * FLUSH_EVERY
) -> dict[str, Any]:
    """Scrape again until ``done(scrape)``: a worker's call counts reach Redis within
    :data:`~pallycon_worker.ratelimit.FLUSH_EVERY` of its last call."""
    deadline = time.monotonic() + timeout
    while True:
        scrape = _scrape(exporter)
        if done(scrape):
            return scrape
        assert time.monotonic() < deadline, f"not reached in {timeout} s: {scrape['samples']}"
        time.sleep(0.1)


def test_health_of_a_running_stack_passes_every_check(stack: Stack):
    """Every check passes on a running stack (in a process of its own: the fleet family's
    smoke); --check chooses and orders them; an unknown check is exit 2 naming it."""
    result = cli("health", env=clean_env(stack.settings.environment()), cwd=stack.root)
    code, out, err = result.returncode, result.stdout.decode(), result.stderr.decode()
    assert code == 0, out + err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["redis", "api", "workers", "schedules", "intake"]
    assert all(line.split()[1] == "ok" for line in lines)
    assert "AOF on" in lines[0]
    code, out, _ = _run(stack, "health", "--check", "workers,redis", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["healthy"] is True
    assert [c["check"] for c in report["checks"]] == ["redis", "workers"]
    code, _, err = _run(stack, "health", "--check", "redis,disk")
    assert code == 2
    assert "disk" in err


def test_the_exposition_and_stats_match_the_work_done(stack: Stack, exporter: ServerProcess):
    before = _scrape(exporter)
    assert _value(before, "pallycon_pack_up") == 1.0
    ids = [stack.producer.submit(stack.body(f"op-{n}"), f"op-{n}") for n in range(COUNT)]
    records = stack.wait_final(ids, timeout=60)
    assert {r.state.value for r in records.values()} == {"completed"}
    post = {"api": "pack", "method": "POST"}
    after = _scrape_until(  # then exactly: over-counting fails
        exporter,
        lambda s: (
            _value(s, "pallycon_pack_api_calls_total", code="0000", **post) >= COUNT
            and _value(s, "pallycon_pack_api_call_duration_seconds_count", **post) >= COUNT
            and _value(s, "pallycon_pack_api_calls_total", api="pack", method="GET", code="0000")
            >= 1
        ),
    )
    site = stack.settings.site_id
    assert site is not None
    assert _value(after, "pallycon_pack_requests", site=site, state="completed") == COUNT
    assert _value(after, "pallycon_pack_requests", site=site, state="submitted") == 0
    assert {labels for name, labels in after["samples"] if name == "pallycon_pack_requests"} == {
        (("site", site), ("state", state)) for state in STATES
    }  # one series per site and state
    for kind in ("accepted", "submitted", "completed"):
        assert _value(after, "pallycon_pack_transitions_total", type=kind) == COUNT, kind
    assert _value(after, "pallycon_pack_transitions_total", type="failed") == 0
    assert _value(after, "pallycon_pack_api_calls_total", code="0000", **post) == COUNT
    assert _value(after, "pallycon_pack_api_call_duration_seconds_count", **post) == COUNT
    assert _value(after, "pallycon_pack_api_call_duration_seconds_bucket", le="+Inf", **post) == (
        COUNT
    )
    assert 0 < _value(after, "pallycon_pack_api_call_duration_seconds_sum", **post) < 30
    gets = _value(after, "pallycon_pack_api_calls_total", api="pack", method="GET", code="0000")
    assert gets >= 1  # the polls
    assert _value(after, "pallycon_pack_workers") == 1
    assert _value(after, "pallycon_pack_worker_loops", health="healthy") >= 2
    assert _value(after, "pallycon_pack_longest_in_state_seconds") == 0
    assert _value(after, "pallycon_pack_schedule_depth", schedule="poll") == 0
    assert _value(after, "pallycon_pack_dead_letters") == 0

    # The dashboard's and the rules' metrics are all exposed
    exposed = after["names"] | after["families"] | {"up"}
    assert dashboard_problems(json.loads(DASHBOARD.read_text()), exposed) == []
    assert rules_problems(yaml.safe_load(RULES.read_text()), exposed) == []

    code, out, _ = _run(stack, "stats", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["requests"]["completed"] == COUNT
    assert report["api_calls"]["by_api"]["POST pack"] == {"0000": COUNT}
    assert report["counters"]["api POST pack"] == COUNT
    assert report["queues"] == {"submit": 0, "poll": 0}
    assert report["longest_in_state"] is None
    code, out, _ = _run(stack, "stats")
    assert code == 0
    assert f"completed={COUNT}" in out
    assert out.splitlines()[0].startswith("requests")
    assert "requests_by_site" not in report  # one site: no breakdown
    assert "  site " not in out


def test_health_fails_with_one_line_when_redis_is_down(stack: Stack):
    down = f"redis://127.0.0.1:{free_port()}/0"
    start = time.monotonic()
    code, out, err = _run(
        stack, "health", "--check", "redis,workers,schedules,intake", "--timeout", "2",
        PALLYCON_REDIS_URL=down,
    )  # fmt: skip
    assert time.monotonic() - start < 15
    assert code == 4, err
    assert len(out.splitlines()) == 1
    assert out.startswith("redis     FAIL  ")
    assert "Traceback" not in err


def test_this_host_judges_only_the_workers_of_this_host(stack: Stack):
    """A per-pod probe: ``--this-host`` neither passes on another host's worker nor fails on
    one; the fleet-wide check counts every worker."""
    here = socket.gethostname()
    command = [*WorkerProcess.command(concurrency=1), "--hostname", "pallycon@elsewhere.invalid"]
    env = clean_env(stack.settings.environment())
    elsewhere = WorkerProcess(command, env, stack.root / "worker-elsewhere.log").start()
    try:
        elsewhere.wait_ready()
        deadline = time.monotonic() + 10
        out = ""
        while "2 workers answering" not in out and time.monotonic() < deadline:
            time.sleep(0.2)
            _, out, _ = _run(stack, "health", "--check", "workers")
        assert out.startswith("workers   ok    2 workers answering"), out
        code, out, _ = _run(stack, "health", "--check", "workers", "--this-host")
        assert code == 0, out
        assert out.startswith(f"workers   ok    1 worker on {here} answering"), out

        for worker in stack.workers:  # this host's worker goes; the other host's stays
            worker.stop()  # a clean stop removes its loops' heartbeats (if they stop in time)
        # Else they stay behind: 7 s without a new one is this host's worker gone.
        stale = ("--worker-stale", "7")
        deadline = time.monotonic() + 20
        code = 0
        while code == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            code, out, _ = _run(
                stack, "health", "--check", "workers", *stale, "--this-host", "--json"
            )
        assert code == 4, out
        [check] = json.loads(out)["checks"]
        assert check["ok"] is False
        assert re.match(
            rf"no worker on {re.escape(here)} answering \(0 of [02] loops\)", check["detail"]
        )
        code, out, _ = _run(stack, "health", "--check", "workers", *stale)
        assert code == 0, out
        assert "1 worker answering" in out
    finally:
        elsewhere.stop()


def test_health_fails_the_worker_check_when_no_worker_answers(stack: Stack, tmp_path: Path):
    for worker in stack.workers:
        worker.stop()
    # Heartbeats a stop left behind are stale 2 s after their last beat.
    stale = ("health", "--check", "workers", "--worker-stale", "2")
    code, out, _ = _until(stack, lambda code, _: code != 0, *stale, timeout=2 + 5)
    assert code == 4
    assert out.startswith("workers   FAIL  no worker answering")
    code, out, _ = _run(stack, "health", "--check", "workers", PALLYCON_KEY_PREFIX="nobody")
    assert code == 4
    assert "no worker answering (0 of 0 loops)" in out


def test_health_wait_gives_up_at_its_deadline_with_one_line_per_change(stack: Stack):
    """``--wait`` runs the checks again until its deadline: one waiting line on stderr while
    nothing changes, then the last round's lines and exit 4 (the README test waits for a fleet
    that becomes healthy)."""
    args = ("health", "--check", "redis,workers", "--wait", "1.5", "--timeout", "1")
    code, out, err = _run(stack, *args, PALLYCON_KEY_PREFIX="nobody")
    assert code == 4
    assert err.splitlines() == ["waiting for workers (workers: no worker answering (0 of 0 loops))"]
    assert out.splitlines()[1].startswith("workers   FAIL  no worker answering")


def test_each_call_is_counted_by_outcome_with_the_next_token(stack: Stack):
    """Outcomes ride with the next token request; a quiet process sends them itself."""
    import os

    import redis

    from pallycon_store.api_calls import read_api_calls
    from pallycon_store.keys import Keys
    from pallycon_store.ratelimit import TokenBucket
    from pallycon_worker.ratelimit import RateLimitedTransport

    answers = iter(
        [
            httpx.Response(200, content=b'{"error_code": "A1002", "error_message": "clock"}'),
            httpx.Response(503, content=b"busy"),
            httpx.Response(200, content=b'{"data": [], ' + b" " * 9000 + b'"error_code":"0000"}'),
        ]
    )

    def answer(request: httpx.Request) -> httpx.Response:
        found = next(answers, None)
        if found is None:
            raise httpx.ConnectError("refused")
        return found

    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    keys = Keys(f"calls{os.getpid()}")
    bucket = TokenBucket(client, keys, rate=1000, burst=100, site_id="")
    transport = RateLimitedTransport(httpx.MockTransport(answer), bucket, background_flush=False)
    with httpx.Client(transport=transport, base_url="http://api") as http:
        for _ in range(3):
            http.post("/api/v2/pack/SITE").read()
        with pytest.raises(httpx.ConnectError):
            http.get("/api/v2/storage/SITE")
        before_close = read_api_calls(client, keys)
    # The first three went out with the later tokens; the refused one was still held
    assert before_close.calls[("POST", "pack", "A1002")] == 1
    assert before_close.calls[("POST", "pack", "http_5xx")] == 1
    assert before_close.calls[("POST", "pack", "0000")] == 1
    assert ("GET", "storage", "connect_error") not in before_close.calls
    after = read_api_calls(client, keys)  # the client closed the transport: held counts sent
    assert after.calls[("GET", "storage", "connect_error")] == 1
    post = after.buckets[("POST", "pack")]
    assert sum(n for bucket, n in post.items() if bucket.startswith("0")) == 3
    assert ("POST", "pack") in after.sum_ms


def test_stats_metrics_and_the_api_check_by_site(
    stack: Stack, tmp_path: Path, emulator_factory: Any
):
    """Requests of two sites under a prefix of their own (no worker reads it: they stay
    accepted): stats and the exposition break them down by site. The api check asks each site
    the settings serve, and names the one the API refuses (the emulator knows only one)."""
    settings = stack.settings.model_copy(update={"key_prefix": f"t{os.urandom(4).hex()}"})
    default = settings.site_id
    assert default is not None
    producer = Producer.from_settings(settings)
    announce_sites(producer, default, OTHER.site_id)  # as workers serving both sites do
    producer.submit(stack.body("by-site-d"), "by-site-d")
    for n in range(2):
        producer.submit(stack.body(f"by-site-b{n}"), f"by-site-b{n}", site_id=OTHER.site_id)
    env = clean_env(settings.environment())

    result = run_cli("stats", "--json", env=env, cwd=stack.root)
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["requests"]["accepted"] == 3
    assert {site: counts["accepted"] for site, counts in report["requests_by_site"].items()} == {
        default: 1,
        OTHER.site_id: 2,
    }
    result = run_cli("stats", env=env, cwd=stack.root)
    lines = result.stdout.decode().splitlines()
    assert lines[1].split()[:3] == ["site", default, "accepted=1"]
    assert lines[2].split()[:3] == ["site", OTHER.site_id, "accepted=2"]

    exporter = start_server("metrics", "--port", "0", env=env, cwd=stack.root)
    try:
        scrape = _scrape(exporter)
    finally:
        exporter.stop()
    assert _value(scrape, "pallycon_pack_requests", site=default, state="accepted") == 1
    assert _value(scrape, "pallycon_pack_requests", site=OTHER.site_id, state="accepted") == 2
    series = {labels for name, labels in scrape["samples"] if name == "pallycon_pack_requests"}
    assert len(series) == 2 * len(STATES)

    sites = tmp_path / "sites.toml"
    sites.write_text(
        f"[{OTHER.site_id}]\n"
        f'access_key = "{OTHER.access_key.get_secret_value()}"\n'
        f'site_key = "{OTHER.site_key.get_secret_value()}"\n'
        f'region = "{REGION}"\n'
    )
    code, out, err = _run(stack, "health", "--check", "api", PALLYCON_SITES=str(sites))
    assert code == 4, out + err
    [line] = out.splitlines()
    assert (
        line
        == f"api       FAIL  site {OTHER.site_id}: ApiError: A1003: Cannot find the site ID: BRND "
        "(is the site id right?)"
    )
    assert OTHER.site_key.get_secret_value() not in out + err
    code, out, _ = _run(stack, "health", "--check", "api")
    assert code == 0
    assert out.startswith("api       ok    answered a signed job list"), out
    # An API that knows both sites: one line for both
    both = emulator_factory("--site", ":".join(
        (OTHER.site_id, OTHER.access_key.get_secret_value(), OTHER.site_key.get_secret_value())
    ))  # fmt: skip
    code, out, err = _run(
        stack, "health", "--check", "api", PALLYCON_SITES=str(sites), PALLYCON_API_URL=both.url
    )
    assert code == 0, out + err
    assert re.fullmatch(
        rf"api       ok    answered a signed job list at each of 2 sites "
        rf"\({OTHER.site_id}: 0 jobs, {default}: 0 jobs\)\n",
        out,
    ), out


def test_flow_control_in_the_exposition(redis_server: RedisServer, tmp_path: Path):
    """Requests waiting by site and priority, a site's cap and a site paused two hours ago (no
    worker reads this prefix: they stay waiting), as a scrape of the exporter process shows
    them; the alert rules' exact label values (``label="value"``) select series it has."""
    settings = make_settings(redis_server.url, "http://127.0.0.1:9")
    default, other = settings.site_id, OTHER.site_id
    assert default is not None
    store = Store.of(settings)
    announce(store.redis, store.keys, {default: REGION, other: REGION}, default, {other: 3})
    producer = Producer.from_settings(settings)
    for n in range(2):
        producer.submit(body_for("st", f"h{n}"), f"flow-h{n}", priority="high")
    producer.submit(body_for("st", "b"), "flow-b", priority="bulk")
    producer.submit(body_for("st", "o"), "flow-o", site_id=other, priority="normal")
    store.flow.pause(other, "quota talks", time.time() - 7200)

    exporter = start_server(
        "metrics", "--port", "0", env=clean_env(settings.environment()), cwd=tmp_path
    )
    try:
        scrape = _scrape(exporter)
    finally:
        exporter.stop()
    waiting = {
        (dict(labels)["site"], dict(labels)["priority"]): value
        for (name, labels), value in scrape["samples"].items()
        if name == "pallycon_pack_waiting"
    }
    assert waiting == {
        (default, "high"): 2, (default, "normal"): 0, (default, "bulk"): 1,
        (other, "high"): 0, (other, "normal"): 1, (other, "bulk"): 0,
    }  # fmt: skip
    for site, cap, paused in ((default, 0, 0), (other, 3, 1)):
        assert _value(scrape, "pallycon_pack_max_in_flight", site=site) == cap
        assert _value(scrape, "pallycon_pack_paused", site=site) == paused
        assert _value(scrape, "pallycon_pack_in_flight", site=site) == 0
        assert ("pallycon_pack_dispatched", (("site", site),)) in scrape["samples"]
    assert 7200 <= _value(scrape, "pallycon_pack_paused_seconds", site=other) < 7200 + 60
    assert _value(scrape, "pallycon_pack_paused_seconds", site=default) == 0
    assert _value(scrape, "pallycon_pack_schedule_overdue", schedule="submit") == 4

    series: dict[str, list[dict[str, str]]] = {}
    for name, labels in scrape["samples"]:
        series.setdefault(name, []).append(dict(labels))
    for rule in rules():
        for name, exact in selectors(rule["expr"]):
            if name == "up" or not exact:  # Prometheus's own; names: the test above
                continue
            assert any(exact.items() <= found.items() for found in series.get(name, [])), (
                rule["alert"], name, exact,
            )  # fmt: skip
