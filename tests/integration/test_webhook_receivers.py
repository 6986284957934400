"""The receivers in examples/webhooks (Python and Node), each verifying deliveries with the
Standard Webhooks reference library of its language, run as written against what
pallycon-pack sends: ``webhooks test`` through a real endpoint in Redis, and signed messages
made here (a rotation's two signatures, a repeat, a forgery)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pallycon_store.webhooks import payload, signing
from pallycon_store.webhooks.signing import Secret
from support.browser import on_ci
from support.cli import run_cli
from support.env import clean_env
from support.queue import make_settings
from support.redis_server import RedisServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "webhooks"
KEY = "a-webhook-key-of-at-least-32-characters"
#: What a machine without Node is told (a CI run fails instead of skipping).
NO_NODE = "no node/npm on PATH: install Node.js 18 or newer (apt-get install nodejs npm, brew install node)"


@dataclass
class Running:
    """A receiver process: its URL and the lines it printed (stdout: verified events)."""

    process: subprocess.Popen[str]
    url: str
    lines: queue.Queue[str]
    pump: threading.Thread

    def next_event(self, timeout: float = 10.0) -> dict[str, object]:
        found: dict[str, object] = json.loads(self.lines.get(timeout=timeout))
        return found

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.pump.join(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def start(command: list[str], cwd: Path, secret: Secret) -> Running:
    """Start a receiver on a free port; wait for its `listening on URL` line."""
    env = {**os.environ, "WEBHOOK_SECRET": secret.text(), "PORT": "0"}
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    assert process.stdout is not None
    first = process.stderr.readline()
    assert first.startswith("listening on "), first + process.stderr.read()
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return Running(process, first.split()[-1], lines, thread)


def node_dir(root: Path) -> Path:
    """A copy of examples/webhooks with its npm package installed (`npm install`, as its
    package.json says)."""
    if not (shutil.which("node") and shutil.which("npm")):
        if on_ci(os.environ):
            pytest.fail(NO_NODE)
        pytest.skip(NO_NODE)
    for name in ("receive.mjs", "package.json"):
        shutil.copy(EXAMPLES / name, root / name)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent"],
        cwd=root,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return root


@pytest.fixture(scope="module", params=["python", "node"])
def receiver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Running, Secret]]:
    secret = Secret.generate()
    if request.param == "python":
        running = start([sys.executable, str(EXAMPLES / "receive.py")], ROOT, secret)
    else:
        running = start(["node", "receive.mjs"], node_dir(tmp_path_factory.mktemp("node")), secret)
    yield running, secret
    running.stop()


def post(
    url: str, webhook_id: str, body: bytes, secrets: list[Secret], at: float | None = None
) -> int:
    headers = signing.headers(webhook_id, int(at or time.time()), body, secrets)
    return httpx.post(
        url, content=body, headers=headers | {"content-type": "application/json"}
    ).status_code


def test_webhooks_test_is_verified(
    receiver: tuple[Running, Secret], redis_server: RedisServer, tmp_path: Path
):
    """An endpoint added with the receiver's secret: `webhooks test` gets a 2xx, and the
    receiver printed the verified test event."""
    running, secret = receiver
    settings = make_settings(redis_server.url, "http://127.0.0.1:9", webhook_key=KEY)
    env = clean_env(settings.environment())
    (tmp_path / "secret").write_text(secret.text() + "\n")
    added = run_cli(
        "webhooks",
        "add",
        running.url,
        "--secret-file",
        "secret",
        "--allow-private",
        env=env,
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr.decode()
    endpoint_id = added.stdout.decode().split()[0]
    tested = run_cli("webhooks", "test", endpoint_id, env=env, cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr.decode()
    event = running.next_event()
    assert event["type"] == payload.TEST_TYPE
    assert str(event["webhook_id"]).startswith(f"test_{endpoint_id}_")


def test_a_result_event_a_rotation_a_repeat_and_a_forgery(receiver: tuple[Running, Secret]):
    """A result event signed with a new secret and the receiver's (during a rotation) is
    verified and printed once however often it comes; a wrong secret, a stale timestamp and a
    changed body are refused with 400."""
    running, secret = receiver
    event = {
        "event_id": "req-1:7",
        "type": "completed",
        "request_id": "req-1",
        "ts": "2026-01-01T00:00:00.000+00:00",
    }
    body = payload.of_event(event)
    assert post(running.url, "req-1:7", body, [Secret.generate(), secret]) == 204
    assert running.next_event() == {
        "webhook_id": "req-1:7",
        "type": "request.completed",
        "request_id": "req-1",
    }
    assert post(running.url, "req-1:7", body, [secret]) == 204  # a repeat: acknowledged only
    assert post(running.url, "req-2:1", body, [Secret.generate()]) == 400
    assert post(running.url, "req-3:1", body, [secret], at=time.time() - 3600) == 400
    signed = signing.headers("req-4:1", int(time.time()), body, [secret])
    forged = httpx.post(running.url, content=body.replace(b"completed", b"failed"), headers=signed)
    assert forged.status_code == 400
    assert post(running.url, "req-5:1", body, [secret]) == 204
    assert running.next_event()["webhook_id"] == "req-5:1"  # nothing printed in between
