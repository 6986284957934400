"""Figure 8: after a full run at debug level, no secret in logs, results or Redis; no pickle."""

from __future__ import annotations

import base64
import json
import time

import pytest

from support.env import clean_env
from support.processes import cli, start_server
from support.samples import SAMPLE_SITE

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYSECRETKEY"


def _dump(client) -> str:
    """Every key and value of the Redis database, as text (Celery message bodies decoded)."""
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = client.xrange(key)
        parts.append(f"{key} {value}")
    text = "\n".join(parts)
    decoded = []
    for chunk in text.split('"body": "')[1:]:
        with_padding = chunk.split('"', 1)[0]
        try:
            decoded.append(base64.b64decode(with_padding).decode("utf-8", "replace"))
        except ValueError:
            continue
    return text + "\n".join(decoded)


def test_figure_8_no_secret_anywhere_and_json_only(stack_factory, worker_factory, tmp_path, figure):
    """Site key, access key and an AWS secret appear 0 times; a pickle message is refused."""
    stack = stack_factory("--job-seconds", "1", log_level="DEBUG")
    settings = stack.settings
    env = clean_env(
        **settings.environment(), AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY=AWS_SECRET
    )
    receiver = start_server("callbacks", "--port", "0", env=env, cwd=tmp_path)
    try:
        worker = worker_factory(settings, concurrency=2)
        outputs = [
            cli(
                "storage",
                "register",
                "--name",
                "s",
                "--bucket",
                "secret-bucket",
                env=env,
                cwd=tmp_path,
            )
        ]
        ids = [stack.producer.submit(stack.body(f"secret-{n}")) for n in range(10)]
        stack.wait_final(ids, timeout=60)
        for args in (["storage", "list", "--json"], ["storage", "list"], ["status", ids[0], "--json"],
                     ["results", "--json"], ["submit", "-", "--wait"]):  # fmt: skip
            stdin = json.dumps(stack.body("secret-cli")).encode() if args[0] == "submit" else None
            outputs.append(cli(*args, env=env, cwd=tmp_path, stdin=stdin))
        # A pickled task message on the worker's own queue must be refused, not run.
        from pallycon_worker.tasks import create_app

        create_app(settings).send_task("pallycon.submit", args=[ids[0]], serializer="pickle")
        deadline = time.monotonic() + 10
        while (
            "pickle" not in worker.log.read_text(errors="replace") and time.monotonic() < deadline
        ):
            time.sleep(0.2)
    finally:
        receiver.stop()
    logs = worker.log.read_text(errors="replace")
    cli_text = "\n".join(
        o.stdout.decode(errors="replace") + o.stderr.decode(errors="replace") for o in outputs
    )
    results = json.dumps([e for _, e in stack.producer.events(count=100_000)])
    redis_text = _dump(stack.producer.redis)
    secrets = {
        "site key": SAMPLE_SITE.site_key.get_secret_value(),
        "access key": SAMPLE_SITE.access_key.get_secret_value(),
        "aws secret": AWS_SECRET,
    }
    found = {
        f"{name} in {place}": text.count(secret)
        for name, secret in secrets.items()
        for place, text in (
            ("logs", logs),
            ("cli output", cli_text),
            ("results", results),
            ("redis", redis_text),
        )
    }
    refused = "Refusing to deserialize untrusted content of type pickle" in logs
    figure("8 secrets", occurrences=sum(found.values()), log_bytes=len(logs), redis_bytes=len(redis_text),
           pickle_refused=refused)  # fmt: skip
    assert all(o.returncode == 0 for o in outputs), [o.stderr.decode()[-300:] for o in outputs]
    assert found == dict.fromkeys(found, 0)
    assert "DEBUG" in logs  # the run really was at debug level
    assert refused
