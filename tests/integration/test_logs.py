"""Logs of the real processes: the callback receiver and the emulator, each started as an
operator would (``--access-log``), their stderr read as JSON lines.

One receiver (with the placeholder token of .env.example) and one emulator whose callback URL
carries a wrong token: the emulator's callback is refused (404) and both sides say so.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from pallycon.client import PallyConClient
from pallycon.models import JobRegisterRequest, validate_request
from pallycon.options import ClientOptions
from pallycon_config.settings import PLACEHOLDER_TOKEN
from support.env import clean_env, site_env
from support.queue import make_settings, register_storage
from support.redis_server import RedisServer
from support.samples import SAMPLE_SITE, body_for

pytestmark = pytest.mark.integration

WRONG_TOKEN = "not-the-receivers-token-0123456789"
_LISTENING = re.compile(r"listening on (http://[\w.:-]+)")


@dataclass
class Logged:
    """A server process whose stderr is kept, line by line, as parsed JSON."""

    url: str
    process: subprocess.Popen[str]
    lines: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if match(line)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError("no such log line in:\n" + "".join(self.raw))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.reader is not None:
            self.reader.join(10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def _start(*args: str, env: dict[str, str], cwd: Path) -> Logged:
    process = subprocess.Popen(
        [sys.executable, "-m", "pallycon_pack", *args, "--port", "0", "--access-log"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
    )  # fmt: skip
    assert process.stdout is not None
    logged = Logged("", process)

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            logged.raw.append(line)
            logged.lines.append(json.loads(line))  # every line is JSON: else the test fails

    logged.reader = threading.Thread(target=read_stderr, daemon=True)
    logged.reader.start()
    for line in process.stdout:
        match = _LISTENING.search(line)
        if match:
            logged.url = match.group(1)
            return logged
    process.wait(10)
    raise RuntimeError(f"{args[0]} did not start:\n" + "".join(logged.raw))


@pytest.fixture(scope="module")
def servers(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Logged, Logged]]:
    """(receiver, emulator): the emulator's 0.3 s jobs call the receiver with a wrong token."""
    root = tmp_path_factory.mktemp("logs")
    settings = make_settings(
        redis_server.url, "http://127.0.0.1:9", callback_token=PLACEHOLDER_TOKEN
    )
    receiver = _start("callbacks", env=clean_env(settings.environment()), cwd=root)
    emulator = _start(
        "emulator", "--job-seconds", "0.3",
        "--callback-url", f"{receiver.url}/callback/{WRONG_TOKEN}",
        env=site_env(), cwd=root,
    )  # fmt: skip
    yield receiver, emulator
    emulator.stop()
    receiver.stop()


def _has(message: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    def match(line: dict[str, Any]) -> bool:
        return line["msg"].startswith(message) and all(line.get(k) == v for k, v in fields.items())

    return match


def test_each_server_logs_its_start_with_settings_masked(servers):
    receiver, emulator = servers
    start = receiver.wait_for(_has("start", process="callbacks"))
    assert start["level"] == "INFO"
    assert start["settings"]["PALLYCON_CALLBACK_TOKEN"] == "***"
    assert start["settings"]["PALLYCON_KEY_PREFIX"].startswith("t")  # the test's own prefix
    assert start["access_log"] is True
    warning = receiver.wait_for(_has("PALLYCON_CALLBACK_TOKEN is the placeholder"))
    assert warning["level"] == "WARNING"
    started = emulator.wait_for(_has("start", process="emulator"))
    assert started["settings"]["PALLYCON_EMULATOR_CALLBACK_URL"].endswith("/callback/***")
    assert started["settings"]["PALLYCON_EMULATOR_JOB_SECONDS"] == 0.3
    assert started["sites"] == [SAMPLE_SITE.site_id]
    for server in servers:
        text = "".join(server.raw)
        assert PLACEHOLDER_TOKEN not in text
        assert WRONG_TOKEN not in text
        assert SAMPLE_SITE.access_key.get_secret_value() not in text


def test_a_misspelt_setting_is_a_json_warning_in_a_servers_log(
    redis_server: RedisServer, tmp_path: Path
):
    """A server with a misspelt PALLYCON_* name: its start logs a JSON warning naming it and
    the nearest setting, and no plain line breaks its JSON log (every stderr line parses)."""
    settings = make_settings(redis_server.url, "http://127.0.0.1:9", callback_token=WRONG_TOKEN)
    env = clean_env(settings.environment(), PALLYCON_REDSI_URL="redis://elsewhere:6379/0")
    receiver = _start("callbacks", env=env, cwd=tmp_path)
    try:
        warning = receiver.wait_for(_has("PALLYCON_REDSI_URL, set in the environment"))
    finally:
        receiver.stop()
    assert warning["level"] == "WARNING"
    assert warning["msg"].endswith("did you mean PALLYCON_REDIS_URL?")


def test_a_refused_callback_is_logged_on_both_sides(servers):
    """The emulator's callback (wrong token) is refused: a warning from each, access lines."""
    receiver, emulator = servers
    storage_id = register_storage(emulator.url)
    body = validate_request(JobRegisterRequest, body_for(storage_id, "logs-1"))
    with PallyConClient(SAMPLE_SITE, ClientOptions(base_url=emulator.url)) as client:
        job_id = client.register_job(body).job_id
    assert job_id is not None
    sent = emulator.wait_for(_has("callback refused by the receiver", job_id=int(job_id)))
    assert (sent["level"], sent["status"], sent["error_code"]) == ("WARNING", 404, "0000")
    refused = receiver.wait_for(_has("callback refused", reason="wrong token"))
    assert refused["level"] == "WARNING"
    access = receiver.wait_for(_has("access", path="/callback/***", status=404))
    assert access["method"] == "POST"
    assert 0 <= access["duration_ms"] < 5000
    api = emulator.wait_for(_has("access", path=f"/api/v2/pack/{SAMPLE_SITE.site_id}"))
    assert (api["method"], api["status"]) == ("POST", 200)  # the path: no query string


def test_the_receiver_logs_what_each_callback_did(servers):
    receiver, _ = servers
    url = f"{receiver.url}/callback/{PLACEHOLDER_TOKEN}"
    answer = httpx.post(url, json={"job_id": 424242, "error_code": "0000"}, timeout=10)
    assert answer.status_code == 200
    line = receiver.wait_for(_has("callback", job_id="424242"))
    assert (line["outcome"], line["error_code"]) == ("unknown", "0000")
    bad = httpx.post(url, content=b"{not json", timeout=10)
    assert bad.status_code == 400
    refused = receiver.wait_for(_has("callback refused", reason="not a PallyCon callback body"))
    assert refused["size"] == len(b"{not json")
