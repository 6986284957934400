"""The ACL user of docs/CONFIGURATION.md is enough: a worker, a producer and the operators'
commands run as it against a real server, and the server logs no refusal."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from pallycon_producers.api import Producer
from support.env import clean_env, site_env
from support.processes import cli
from support.stack import Stack

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "CONFIGURATION.md"


def _documented_acl() -> tuple[list[str], str]:
    """The ``ACL SETUSER`` line of the docs (as arguments) and its password."""
    line = next(ln for ln in DOC.read_text().splitlines() if ln.startswith("ACL SETUSER "))
    words = shlex.split(line)
    password = next(w[1:] for w in words if w.startswith(">"))
    return words, password


def test_the_documented_acl_user_runs_everything(tmp_path):
    words, password = _documented_acl()
    assert words[2] == "pallycon"
    with Stack.start(tmp_path, "--job-seconds", "1", emulator="thread") as stack:
        admin = redis.Redis(port=stack.redis.port, decode_responses=True)
        admin.execute_command(*words)  # type: ignore[no-untyped-call]
        settings = stack.settings.model_copy(
            update={
                "redis_url": f"redis://pallycon@127.0.0.1:{stack.redis.port}/0",
                "redis_password": SecretStr(password),
                "key_prefix": "pp",  # the prefix the documented key patterns name
            }
        )
        stack.settings, stack.producer = settings, Producer.from_settings(settings)
        stack.start_workers(1)
        ids = [stack.producer.submit(stack.body(f"acl-{n}")) for n in range(3)]
        records = stack.wait_final(ids, timeout=60)
        assert {r.state.value for r in records.values()} == {"completed"}
        env = clean_env(settings.environment())
        checks = "redis,workers,schedules,intake"
        health = cli("health", "--check", checks, env=env, cwd=tmp_path)
        assert health.returncode == 0, health.stdout + health.stderr
        assert re.search(rb"^redis\s+ok", health.stdout, re.M)
        for command in (["stats"], ["requests", "list", "--limit", "2"], ["status", ids[0]]):
            done = cli(*command, env=env, cwd=tmp_path)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert admin.acl_log(count=20) == []  # nothing was refused on the way


def _user_without(redis_server, name: str, *rules: str) -> dict[str, str]:
    """The documented user as ``name``, with ``rules`` added: a worker's environment for it."""
    words, password = _documented_acl()
    admin = redis.Redis(port=redis_server.port, decode_responses=True)
    admin.execute_command(*words[:2], name, *words[3:], *rules)  # type: ignore[no-untyped-call]
    return site_env(
        PALLYCON_REDIS_URL=f"redis://{name}@127.0.0.1:{redis_server.port}/0",
        PALLYCON_REDIS_PASSWORD=password,
        PALLYCON_KEY_PREFIX="pp",
    )


@pytest.mark.parametrize(
    ("rules", "refused"),
    [
        (["-brpop"], "may not run: BRPOP"),
        (["-brpop", "-xautoclaim", "-evalsha"], "may not run: BRPOP, EVALSHA, XAUTOCLAIM"),
        (["resetkeys", "~pp:*", "~_kombu.*", "~unacked*", "~*.pidbox*"],
         "may not use keys like: pp.submit, pp.poll"),
    ],
    ids=["brpop", "three commands", "the queues' keys"],
)  # fmt: skip
def test_a_worker_whose_user_lacks_a_command_stops_with_one_line(
    redis_server, tmp_path, rules, refused
):
    """A user without a command the worker needs (or without its queues' keys) would have
    Celery reconnect for ever: the worker says what is missing in one line and exits 3."""
    env = _user_without(redis_server, f"lacking-{len(rules)}", *rules)
    run = cli("worker", "--concurrency", "1", env=env, cwd=tmp_path, timeout=60)
    err = run.stderr.decode()
    assert run.returncode == 3, err
    assert err.count("\n") == 1, err
    assert err.startswith(f"Error: Redis user 'lacking-{len(rules)}' {refused} ("), err
    assert err.endswith("(the worker needs them; see docs/CONFIGURATION.md#acl-users)\n"), err
    assert "Traceback" not in err + run.stdout.decode()
