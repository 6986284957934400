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
from support.env import clean_env
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
